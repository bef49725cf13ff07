/**
 * Follows the authority's revocation feed (tessera.v1.RevocationService.WatchRevocations) into the sidecar's
 * RevocationIndex: a snapshot first, then every change, resuming from its cursor after a break, and starting over
 * from a new snapshot when the authority says the cursor is too old (the old entries stay meanwhile: a revocation is
 * never undone, so merging the new snapshot in is exact).
 *
 * Freshness is what makes the sidecar safe: the authority sends a message that leaves the follower current (a change
 * or a heartbeat) at least every `heartbeatMs`; `fresh()` is false until the first snapshot is in and whenever no such
 * message came for `maxStalenessMs`. A connection that goes quiet for that long is dropped and made again, with
 * exponential backoff and jitter.
 */
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { RevocationKind, RevocationService, type WatchRevocationsResponse } from "../../gen/tessera/v1/revocation_pb.js";
import { sleep } from "../domain/clock.js";
import type { FeedEntry, FeedKind, RevocationIndex } from "./revocations.js";

export interface FeedFollowerOptions {
  index: RevocationIndex;
  /** The authority's revocation service client (authorityClients below). */
  client: Client<typeof RevocationService>;
  maxStalenessMs: number;
  /** Local clock (ms); the feed's own times come from the authority. */
  now?: () => number;
  /** Told of every state change worth a log line. */
  onEvent?: (e: FollowerEvent) => void;
}

export type FollowerEvent =
  | { type: "connected" }
  | { type: "current"; first: boolean }
  | { type: "snapshot_restart" }
  | { type: "disconnected"; err: ConnectError; retryInMs: number };

const KINDS: Partial<Record<RevocationKind, FeedKind>> = {
  [RevocationKind.TOKEN]: "token",
  [RevocationKind.SESSION]: "session",
  [RevocationKind.SUBJECT]: "subject",
  [RevocationKind.KEY]: "key",
};
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;

export class FeedFollower {
  private cursor = "";
  private currentAt = -Infinity;
  private lastEventAt = -Infinity;
  private lagMs = 0;
  private stopped = false;
  private readonly abort = new AbortController();
  private readonly now: () => number;
  private running: Promise<void> | undefined;
  /** Resolved each time the follower becomes current (tests and start-up wait on it). */
  private currentWaiters: Array<() => void> = [];

  constructor(private readonly opts: FeedFollowerOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** How often the authority is asked for a heartbeat: a third of the staleness bound (within the API's 100ms..60s). */
  get heartbeatMs(): number {
    return Math.min(60_000, Math.max(100, Math.floor(this.opts.maxStalenessMs / 3)));
  }

  /** The snapshot is in and the feed spoke within the staleness bound: answers may be given. */
  fresh(): boolean {
    return this.now() - this.currentAt <= this.opts.maxStalenessMs; // -Infinity until the first snapshot is in
  }

  /** For metrics: ms since the feed last left us current (Infinity before the first time). */
  get sinceCurrentMs(): number {
    return this.now() - this.currentAt;
  }

  /** For metrics: ms since the last revocation arrived. */
  get sinceEventMs(): number {
    return this.now() - this.lastEventAt;
  }

  /** For metrics: the local receive time minus the authority's server_time of the last message (clock offset included). */
  get feedLagMs(): number {
    return this.lagMs;
  }

  start(): void {
    this.running ??= this.loop();
  }

  /** Resolves once the follower is current (first snapshot in, or the next heartbeat after now). */
  whenCurrent(): Promise<void> {
    return new Promise((r) => this.currentWaiters.push(r));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      const attempt = new AbortController();
      const onStop = () => attempt.abort();
      this.abort.signal.addEventListener("abort", onStop);
      // A connection that delivers nothing for the staleness bound is as good as cut: drop it and dial again.
      let watchdog = setTimeout(() => attempt.abort(), this.opts.maxStalenessMs);
      try {
        const stream = this.opts.client.watchRevocations(
          { cursor: this.cursor, heartbeatInterval: durationFromMs(this.heartbeatMs) },
          { signal: attempt.signal },
        );
        this.opts.onEvent?.({ type: "connected" });
        for await (const m of stream) {
          clearTimeout(watchdog);
          watchdog = setTimeout(() => attempt.abort(), this.opts.maxStalenessMs);
          this.take(m);
          if (m.current) failures = 0;
        }
        throw new ConnectError("the authority ended the revocation feed", Code.Unavailable);
      } catch (e) {
        if (this.stopped) break;
        const err = ConnectError.from(e);
        if (err.code === Code.OutOfRange) {
          // The authority can no longer continue from our cursor: a new snapshot, merged into what we hold.
          this.cursor = "";
          this.opts.onEvent?.({ type: "snapshot_restart" });
          continue;
        }
        const retryInMs = backoff(failures++);
        this.opts.onEvent?.({ type: "disconnected", err, retryInMs });
        await sleep(retryInMs, this.abort.signal);
      } finally {
        clearTimeout(watchdog);
        this.abort.signal.removeEventListener("abort", onStop);
      }
    }
  }

  private take(m: WatchRevocationsResponse): void {
    const now = this.now();
    if (m.revocations.length > 0) {
      const entries: FeedEntry[] = [];
      for (const r of m.revocations) {
        const kind = KINDS[r.kind];
        if (kind === undefined || r.expiresAt === undefined) continue; // a kind this sidecar does not know yet
        entries.push({ kind, subject: r.subject, target: r.target, sessionIds: r.sessionIds, expiresAt: timestampMs(r.expiresAt) });
      }
      this.opts.index.apply(entries);
      this.lastEventAt = now;
    }
    if (m.cursor !== "") this.cursor = m.cursor;
    if (m.serverTime) this.lagMs = now - timestampMs(m.serverTime);
    if (m.current) {
      const first = this.currentAt === -Infinity;
      this.currentAt = now;
      if (first) this.opts.onEvent?.({ type: "current", first });
      for (const w of this.currentWaiters.splice(0)) w();
    }
  }
}

/** Clients of the authority's services over gRPC (HTTP/2), with the sidecar's credentials. */
export function authorityTransport(opts: {
  url: URL;
  apiKey: string | undefined;
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}): ReturnType<typeof createGrpcTransport> {
  const credentials: Interceptor = (next) => (req) => {
    if (opts.apiKey !== undefined) req.header.set("authorization", `Bearer ${opts.apiKey}`);
    return next(req);
  };
  return createGrpcTransport({
    baseUrl: opts.url.href,
    nodeOptions: opts.url.protocol === "https:" ? opts.tls : {},
    interceptors: [credentials],
    pingIntervalMs: 10_000,
  });
}

/** 100ms doubling to 5s, with full jitter on the upper half so a fleet of sidecars does not reconnect in step. */
function backoff(failures: number): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(failures, 16));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}
