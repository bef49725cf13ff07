/**
 * TokenManager: keeps one user's session alive for a service that holds it (a gateway, a BFF): `getAccessToken()`
 * answers a valid access token, refreshing it `leadTimeMs` before it expires.
 *
 * - **Single flight.** However many callers ask at once, one Refresh is in flight; they all get its answer. Two
 *   concurrent Refreshes of one refresh token would otherwise be reuse (with the grace window off, all but one fail and
 *   the session is revoked).
 * - **Retries** UNAVAILABLE and DEADLINE_EXCEEDED with exponential backoff and full jitter, presenting the same refresh
 *   token with the same client (`device_id`, `user_agent`): when the first answer was lost on the way back (the server
 *   rotated, the response never arrived), the server's grace window (TESSERA_REFRESH_GRACE, default 10 s) recognises
 *   the repeat and answers the very same pair. Keep the retries' total time (the sum of `maxMs`-capped waits plus the
 *   per-try deadlines) under the grace window. When every try failed and the held access token has not yet expired,
 *   it is still answered (the next call tries again); once it has expired the error is thrown.
 * - **Ends** on UNAUTHENTICATED from Refresh (reuse detected, session revoked or ended, refresh token invalid) and when
 *   the refresh token itself has expired: the pair is dropped, the storage cleared, an `ended` event emitted, and every
 *   later call fails UNAUTHENTICATED. UNAUTHENTICATED about the *caller* (the service's API key or certificate, refused
 *   before the token is looked at; google.rpc.ErrorInfo reason CALLER_UNAUTHENTICATED) does not end the session: it
 *   is thrown as is, the pair kept, since the user did nothing wrong.
 * - **Storage** is pluggable (`load`, `save`, `clear`; memory by default): the pair is loaded on first use when none
 *   is given, saved after every refresh, cleared when the session ends.
 */
import { Code, ConnectError, type CallOptions } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { ClientInfo } from "../../gen/tessera/v1/common_pb.js";
import type { IssueResponse, RefreshResponse } from "../../gen/tessera/v1/token_pb.js";
import { sleep } from "../domain/clock.js";
import { ERROR_DOMAIN } from "../domain/errors.js";
import { backoffDelay, type RetryOptions, type TesseraClient } from "./client.js";

/** A session's tokens as the manager holds them; times in ms since the epoch. */
export interface Pair {
  accessToken: string;
  refreshToken: string;
  accessExpiresAt: number;
  refreshExpiresAt: number;
  sessionId?: string | undefined;
}

export interface TokenStorage {
  load(): Promise<Pair | undefined>;
  save(pair: Pair): Promise<void>;
  clear(): Promise<void>;
}

/** The default storage: in this process only. */
export class MemoryTokenStorage implements TokenStorage {
  private pair: Pair | undefined;
  constructor(initial?: Pair) {
    this.pair = initial && { ...initial };
  }
  async load(): Promise<Pair | undefined> {
    return this.pair && { ...this.pair };
  }
  async save(pair: Pair): Promise<void> {
    this.pair = { ...pair };
  }
  async clear(): Promise<void> {
    this.pair = undefined;
  }
}

/** Why a session ended at the manager. */
export type EndReason =
  /** Refresh said the refresh token was used twice (a copy of it is in other hands): the server revoked the session. */
  | "reuse_detected"
  /** Refresh said the session has ended (revoked, idle too long, past its lifetime, evicted). */
  | "session_ended"
  /** Refresh refused the refresh token itself (bad signature, expired, unknown key...). */
  | "invalid_refresh_token"
  /** Any other UNAUTHENTICATED from Refresh about the token. */
  | "unauthenticated"
  /** The refresh token had expired before it could be used. */
  | "refresh_expired"
  /** end() was called. */
  | "cleared";

export type TokenManagerEvent =
  | { type: "refreshed"; pair: Pair }
  | { type: "retrying"; attempt: number; delayMs: number; error: ConnectError }
  | { type: "refresh_failed"; error: ConnectError; usingHeldToken: boolean }
  | { type: "ended"; reason: EndReason; error?: ConnectError }
  /** The storage refused to save or clear the pair (the manager goes on with the pair it holds). */
  | { type: "storage_failed"; error: unknown };

type Listener<T extends TokenManagerEvent["type"]> = (e: Extract<TokenManagerEvent, { type: T }>) => void;

export interface TokenManagerOptions {
  /** A Tessera client (createTesseraClient) whose caller may Refresh. */
  client: Pick<TesseraClient, "tokens">;
  /** The session's tokens (pairFrom(issueResponse)); unset: loaded from `storage`. */
  pair?: Pair | undefined;
  /** The client the session was issued to: `device_id` and `user_agent` must be the Issue's for grace-window replays. */
  clientInfo: Partial<Pick<ClientInfo, "deviceId" | "userAgent" | "ip" | "platform">>;
  /** Refresh this long before the access token expires (default 30 s; at most half the token's lifetime). */
  leadTimeMs?: number | undefined;
  /** Retries of a Refresh that failed UNAVAILABLE or DEADLINE_EXCEEDED (default 5 tries, 100 ms to 2 s). */
  retry?: Partial<RetryOptions> | undefined;
  /** Deadline of each Refresh try (default: the client's). */
  refreshTimeoutMs?: number | undefined;
  storage?: TokenStorage | undefined;
  /** The time (ms since the epoch); default Date.now. */
  clock?: { now(): number } | undefined;
  /** Waiting between tries (tests with a manual clock); default a timer. */
  sleep?: ((ms: number) => Promise<void>) | undefined;
  /** Randomness of the jitter (tests). */
  random?: (() => number) | undefined;
}

export const DEFAULT_LEAD_TIME_MS = 30_000;
export const DEFAULT_REFRESH_RETRY: Readonly<RetryOptions> = Object.freeze({ attempts: 5, baseMs: 100, maxMs: 2_000 });

/** The tokens of an Issue or Refresh answer, as a Pair. */
export function pairFrom(res: IssueResponse | RefreshResponse): Pair {
  const t = res.tokens;
  if (!t?.accessExpiresAt || !t.refreshExpiresAt) throw new TypeError("the response carries no token pair");
  return {
    accessToken: t.accessToken,
    refreshToken: t.refreshToken,
    accessExpiresAt: timestampMs(t.accessExpiresAt),
    refreshExpiresAt: timestampMs(t.refreshExpiresAt),
    sessionId: res.sessionId,
  };
}

/** The ErrorInfo reasons of UNAUTHENTICATED (src/domain/errors.ts ERROR_REASONS), and what each means here. */
const REASONS: Record<string, EndReason | "caller"> = {
  CALLER_UNAUTHENTICATED: "caller", // about the calling service, not the token: the session goes on
  REFRESH_TOKEN_REUSED: "reuse_detected",
  SESSION_ENDED: "session_ended",
  REFRESH_TOKEN_INVALID: "invalid_refresh_token",
};

/** What an UNAUTHENTICATED answer of Refresh means: its ErrorInfo reason, else (an authority without one) its message. */
function unauthenticatedMeaning(error: ConnectError): EndReason | "caller" {
  const info = error.findDetails(ErrorInfoSchema).find((d) => d.domain === ERROR_DOMAIN);
  const known = info ? REASONS[info.reason] : undefined;
  if (known !== undefined) return known;
  if (/^(missing|invalid|conflicting) credentials$/.test(error.rawMessage)) return "caller";
  if (/reuse/i.test(error.rawMessage)) return "reuse_detected";
  if (/session has ended/i.test(error.rawMessage)) return "session_ended";
  if (/invalid refresh token/i.test(error.rawMessage)) return "invalid_refresh_token";
  return "unauthenticated";
}

export class TokenManager {
  private pair: Pair | undefined;
  /** When this process got the pair (for the lead-time cap); ms. */
  private obtainedAt = 0;
  private loaded: Promise<void> | undefined;
  private inflight: Promise<Pair> | undefined;
  private generation = 0;
  private ended: { reason: EndReason; error?: ConnectError } | undefined;
  private readonly listeners = new Map<string, Set<(e: TokenManagerEvent) => void>>();
  private readonly storage: TokenStorage;
  private readonly retry: RetryOptions;
  private readonly now: () => number;
  private readonly wait: (ms: number) => Promise<void>;
  private readonly random: () => number;

  constructor(private readonly opts: TokenManagerOptions) {
    this.storage = opts.storage ?? new MemoryTokenStorage();
    this.retry = { ...DEFAULT_REFRESH_RETRY, ...opts.retry };
    const clock = opts.clock;
    this.now = clock ? () => clock.now() : Date.now;
    this.wait = opts.sleep ?? ((ms) => sleep(ms));
    this.random = opts.random ?? Math.random;
    if (opts.pair) {
      this.take(opts.pair);
      // The pair given is the truth; a storage that cannot save it is told again after the next refresh.
      this.loaded = this.storage.save(opts.pair).catch((error: unknown) => this.emit({ type: "storage_failed", error }));
    }
  }

  /** Listens to `refreshed`, `retrying`, `refresh_failed`, `ended` or `storage_failed`; returns the unsubscribe function. */
  on<T extends TokenManagerEvent["type"]>(type: T, listener: Listener<T>): () => void {
    let set = this.listeners.get(type);
    if (!set) this.listeners.set(type, (set = new Set()));
    const fn = listener as (e: TokenManagerEvent) => void;
    set.add(fn);
    return () => set.delete(fn);
  }

  /** Why the session ended, once it has. */
  get endReason(): EndReason | undefined {
    return this.ended?.reason;
  }

  /** The pair held now (loading it from storage first), without refreshing. */
  async current(): Promise<Pair | undefined> {
    await this.load();
    return this.pair && { ...this.pair };
  }

  /** A valid access token: the held one, or a fresh one once within the lead time of its expiry. */
  async getAccessToken(): Promise<string> {
    await this.load();
    const pair = this.requirePair();
    if (this.now() < pair.accessExpiresAt - this.leadMs(pair)) return pair.accessToken;
    return (await this.refresh()).accessToken;
  }

  /** Refreshes now (joining a Refresh already in flight). */
  refresh(): Promise<Pair> {
    this.inflight ??= this.refreshOnce().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** Replaces the pair (a new login); the session ended before is forgotten. */
  async setPair(pair: Pair): Promise<void> {
    this.ended = undefined;
    this.generation++;
    this.take(pair);
    this.loaded = Promise.resolve();
    await this.storage.save(pair);
  }

  /** Drops the pair and clears the storage (a logout; revoke the session at Tessera separately). Emits `ended`. */
  async end(): Promise<void> {
    await this.finish({ reason: "cleared" });
  }

  private requirePair(): Pair {
    if (this.pair) return this.pair;
    const why = this.ended?.reason;
    throw new ConnectError(why ? `session ended (${why})` : "no session: no token pair given or stored", Code.Unauthenticated, undefined, undefined, this.ended?.error);
  }

  private leadMs(pair: Pair): number {
    const lead = this.opts.leadTimeMs ?? DEFAULT_LEAD_TIME_MS;
    const lifetime = pair.accessExpiresAt - this.obtainedAt;
    return lifetime > 0 ? Math.min(lead, lifetime / 2) : lead;
  }

  private take(pair: Pair): void {
    this.pair = { ...pair };
    this.obtainedAt = this.now();
  }

  private load(): Promise<void> {
    this.loaded ??= this.storage.load().then(
      (p) => {
        if (p && !this.pair && !this.ended) this.take(p);
      },
      (err: unknown) => {
        this.loaded = undefined; // the next call asks the storage again
        throw err;
      },
    );
    return this.loaded;
  }

  private async refreshOnce(): Promise<Pair> {
    await this.load();
    const held = this.requirePair();
    const generation = this.generation;
    if (this.now() >= held.refreshExpiresAt) {
      await this.finish({ reason: "refresh_expired" });
      throw this.requirePairError();
    }
    const client = {
      deviceId: this.opts.clientInfo.deviceId ?? "",
      userAgent: this.opts.clientInfo.userAgent ?? "",
      ip: this.opts.clientInfo.ip ?? "",
      platform: this.opts.clientInfo.platform ?? "",
    };
    const callOptions: CallOptions = this.opts.refreshTimeoutMs === undefined ? {} : { timeoutMs: this.opts.refreshTimeoutMs };
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.opts.client.tokens.refresh({ refreshToken: held.refreshToken, client }, callOptions);
        const next = pairFrom(res);
        if (generation !== this.generation) return this.requirePair(); // replaced (setPair, end) meanwhile: theirs wins
        this.take(next);
        // Rotated: the new pair is the only valid one now, whatever the storage says.
        await this.storage.save(next).catch((error: unknown) => this.emit({ type: "storage_failed", error }));
        this.emit({ type: "refreshed", pair: { ...next } });
        return { ...next };
      } catch (e) {
        const error = ConnectError.from(e);
        if (generation !== this.generation) return this.requirePair();
        const meaning = error.code === Code.Unauthenticated ? unauthenticatedMeaning(error) : undefined;
        if (meaning !== undefined && meaning !== "caller") {
          await this.finish({ reason: meaning, error });
          throw this.requirePairError();
        }
        const transient = error.code === Code.Unavailable || error.code === Code.DeadlineExceeded;
        if (transient && attempt + 1 < this.retry.attempts) {
          const delayMs = backoffDelay(attempt, this.retry, this.random);
          this.emit({ type: "retrying", attempt: attempt + 1, delayMs, error });
          await this.wait(delayMs);
          if (generation !== this.generation) return this.requirePair();
          continue;
        }
        // Out of tries (or an error a retry would not cure): the held access token while it lasts.
        const usingHeldToken = this.now() < held.accessExpiresAt;
        this.emit({ type: "refresh_failed", error, usingHeldToken });
        if (usingHeldToken) return { ...held };
        throw error;
      }
    }
  }

  private requirePairError(): ConnectError {
    try {
      this.requirePair();
    } catch (e) {
      return e as ConnectError;
    }
    return new ConnectError("session ended", Code.Unauthenticated);
  }

  private async finish(ended: { reason: EndReason; error?: ConnectError }): Promise<void> {
    this.generation++;
    this.pair = undefined;
    this.ended = ended;
    this.loaded = Promise.resolve();
    await this.storage.clear().catch((error: unknown) => this.emit({ type: "storage_failed", error }));
    this.emit({ type: "ended", ...ended });
  }

  private emit(e: TokenManagerEvent): void {
    for (const fn of this.listeners.get(e.type) ?? []) {
      try {
        fn(e);
      } catch {
        // a listener's failure is its own
      }
    }
  }
}
