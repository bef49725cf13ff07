/**
 * tessera.v1.RevocationService: the revocation feed as a server stream, for verifiers that check tokens locally
 * (src/sidecar/). A watch without a cursor starts with a snapshot (the feed from its oldest entry: it keeps every entry
 * until its `until` has passed, so that is everything a verifier must know), then follows the feed. Every message that
 * leaves the consumer up to date is a fresh read of the store: a heartbeat proves the store answered, so an authority
 * that has lost its store stops sending them (the stream ends UNAVAILABLE) instead of vouching for a feed it cannot see.
 * A caller with `subjects` (one tenant's sidecar) receives only the entries of its subjects, and every key entry (a
 * revoked signing key concerns every subject); its cursor still moves past the others, and heartbeats come as ever.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs, type Duration } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  RevocationKind,
  RevocationSchema,
  RevocationService,
  WatchRevocationsResponseSchema,
  type Revocation,
  type WatchRevocationsResponse,
} from "../../gen/tessera/v1/revocation_pb.js";
import type { Clock } from "../domain/clock.js";
import {
  FEED_CURSOR_SHAPE,
  FeedCursorError,
  type FeedPage,
  type RevocationEvent,
  type RevocationFeed,
} from "../domain/store.js";
import { scopeOf } from "./auth.js";
import { invalidArgument as domainInvalid, toConnectError } from "./errors.js";

/**
 * INVALID_ARGUMENT as a ConnectError: a stream's body runs after the pipeline has returned (it only sees the call's
 * start), so errors raised here must already be ConnectErrors, or connect-node reports INTERNAL.
 */
function invalidArgument(field: string, problem: string): ConnectError {
  return toConnectError(domainInvalid(field, problem));
}

export interface RevocationServiceDeps {
  feed: RevocationFeed;
  clock: Clock;
  /** Aborted when the server begins to shut down: every watch ends UNAVAILABLE, so consumers reconnect elsewhere. */
  closing: AbortSignal;
}

/** Entries per message (and per store read). */
export const FEED_PAGE = 500;
const HEARTBEAT_DEFAULT_MS = 1_000;
const HEARTBEAT_MIN_MS = 100;
const HEARTBEAT_MAX_MS = 60_000;

const KIND: Record<RevocationEvent["kind"], RevocationKind> = {
  token: RevocationKind.TOKEN,
  session: RevocationKind.SESSION,
  subject: RevocationKind.SUBJECT,
  key: RevocationKind.KEY,
};

export function revocationService({ feed, clock, closing }: RevocationServiceDeps): ServiceImpl<typeof RevocationService> {
  return {
    async *watchRevocations(req, ctx) {
      const heartbeatMs = heartbeatInterval(req.heartbeatInterval);
      // Refused before anything is read: what no feed ever handed out. The feed tells which cursor it can continue from
      // (another feed's, or an older version's, is OUT_OF_RANGE: a new snapshot).
      if (req.cursor !== "" && !FEED_CURSOR_SHAPE.test(req.cursor)) {
        throw invalidArgument("cursor", "not a cursor of this feed");
      }
      let cursor: string | null = req.cursor === "" ? null : req.cursor;
      let snapshot = cursor === null;
      const scope = scopeOf(ctx);
      const keep =
        scope === undefined
          ? (e: RevocationEvent, now: number) => e.until > now
          : (e: RevocationEvent, now: number) => e.until > now && (e.kind === "key" || scope.allows(e.subject));
      const wake = new Wake([ctx.signal, closing]);
      const unsubscribe = feed.subscribe(wake.ring);
      try {
        let lastSent = -Infinity;
        for (;;) {
          wake.reset(); // before the read: a change during it rings again
          // Drain: full pages first, then the last (short) page, which leaves the consumer current.
          for (;;) {
            const page = await read(feed, cursor);
            const now = clock.now();
            cursor = page.next;
            const full = page.entries.length >= FEED_PAGE;
            const entries = page.entries.filter((e) => keep(e, now));
            // A read that found nothing new is only worth a message as a heartbeat (or as the end of a snapshot).
            if (entries.length > 0 || snapshot || (!full && now - lastSent >= heartbeatMs)) {
              yield message(entries, cursor, snapshot, !full, now);
              lastSent = now;
            }
            if (!full) break;
          }
          snapshot = false;
          await wake.wait(Math.max(0, lastSent + heartbeatMs - clock.now()));
          if (ctx.signal.aborted) return;
          if (closing.aborted) throw new ConnectError("server is shutting down", Code.Unavailable);
        }
      } catch (err) {
        throw toConnectError(err); // a store outage is UNAVAILABLE here as on every other RPC
      } finally {
        unsubscribe();
        wake.dispose();
      }
    },
  };
}

async function read(feed: RevocationFeed, cursor: string | null): Promise<FeedPage> {
  try {
    return await feed.revocations(cursor, FEED_PAGE);
  } catch (err) {
    if (!(err instanceof FeedCursorError)) throw err;
    if (err.why === "invalid") throw invalidArgument("cursor", "not a cursor of this feed");
    throw new ConnectError(
      "cursor: the feed can no longer continue from this cursor; watch without a cursor to take a new snapshot",
      Code.OutOfRange,
    );
  }
}

function message(entries: RevocationEvent[], cursor: string, snapshot: boolean, current: boolean, now: number): WatchRevocationsResponse {
  return create(WatchRevocationsResponseSchema, {
    revocations: entries.map(revocation),
    cursor,
    snapshot,
    current,
    serverTime: timestampFromMs(now),
  });
}

function revocation(e: RevocationEvent): Revocation {
  return create(RevocationSchema, {
    kind: KIND[e.kind],
    subject: e.subject,
    target: e.target,
    sessionIds: e.sessions,
    revokedAt: timestampFromMs(e.at),
    expiresAt: timestampFromMs(e.until),
    reason: e.reason,
  });
}

function heartbeatInterval(d: Duration | undefined): number {
  if (d === undefined) return HEARTBEAT_DEFAULT_MS;
  const ms = Number(d.seconds) * 1000 + d.nanos / 1e6;
  if (!Number.isFinite(ms) || ms < HEARTBEAT_MIN_MS || ms > HEARTBEAT_MAX_MS) {
    throw invalidArgument("heartbeat_interval", `must be between ${HEARTBEAT_MIN_MS}ms and ${HEARTBEAT_MAX_MS / 1000}s`);
  }
  return ms;
}

/** A doorbell: `ring` (the feed may have grown) or an abort ends the current `wait`, as does its timeout. */
class Wake {
  private rung = false;
  private resolve: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly onAbort = () => this.ring();

  constructor(private readonly signals: AbortSignal[]) {
    for (const s of signals) s.addEventListener("abort", this.onAbort);
  }

  readonly ring = (): void => {
    this.rung = true;
    this.resolve?.();
  };

  reset(): void {
    this.rung = false;
  }

  wait(ms: number): Promise<void> {
    if (this.rung || this.signals.some((s) => s.aborted)) return Promise.resolve();
    return new Promise((resolve) => {
      this.resolve = () => {
        clearTimeout(this.timer);
        this.resolve = undefined;
        resolve();
      };
      this.timer = setTimeout(this.resolve, ms);
    });
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const s of this.signals) s.removeEventListener("abort", this.onAbort);
  }
}
