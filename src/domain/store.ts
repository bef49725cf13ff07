/**
 * The state behind the token authority. The domain owns these interfaces, one per concern (keys, sessions, the
 * revocation feed, the audit trail, lifecycle); `src/store/memory.ts` and `src/store/redis.ts` implement them, and
 * `test/contract/` holds both to the same behaviour, one suite per interface.
 *
 * All times are milliseconds since the epoch and are passed in by the caller (the domain's clock), so a store never
 * reads a clock of its own for decisions, except for how long what it keeps lives: an entry written by a call at `now`
 * with deadline `d` is kept for `d - now` of the store's own clock (Redis: PX on the server's clock; the memory store:
 * the clock it is given) and is gone from then on at every read. Every operation that changes more than one thing is atomic. Everything a
 * store keeps expires by itself. A store that cannot answer throws `StoreUnavailableError`.
 */
import type { JWK } from "jose";
import type { AuditBounds, AuditEvent, AuditPage, AuditQuery, RiskObservations } from "./audit.js";
import { isSessionIdOf } from "./ids.js";
import type { StoredPrivateKey } from "./key-encryption.js";
import type { StatsStore } from "./stats.js";

export interface ClientInfo {
  deviceId: string;
  userAgent: string;
  ip: string;
  platform: string;
}

/** A live session: one device login, one refresh-token family. */
export interface SessionRecord {
  id: string;
  subject: string;
  client: ClientInfo;
  createdAt: number;
  lastUsedAt: number;
  /** The session ends if not refreshed before this instant. */
  idleExpiresAt: number;
  /** The session ends at this instant whatever happens (absolute lifetime). */
  expiresAt: number;
  /** jti of the refresh token that is valid now. */
  currentJti: string;
}

/** A token pair as handed to a client; kept for the grace window so a retried refresh gets the same answer. */
export interface IssuedPair {
  accessToken: string;
  refreshToken: string;
  accessExpiresAt: number;
  refreshExpiresAt: number;
}

export interface RotateInput {
  subject: string;
  sessionId: string;
  /** jti of the refresh token the client presented. */
  presentedJti: string;
  /** The successor, signed beforehand; stored only if this call wins the rotation. */
  nextJti: string;
  nextPair: IssuedPair;
  /** Identifies the presenting client (device id + user agent); a grace replay must come from the same one. */
  clientFingerprint: string;
  now: number;
  /** How long after a rotation a repeat of the same refresh from the same client gets the same successor. 0: never. */
  graceMs: number;
  /** The new idle expiry is now + idleTtlMs (never beyond the absolute expiry). */
  idleTtlMs: number;
  /** How long a revoked session is remembered as revoked (so its access tokens read as REVOKED). */
  retentionMs: number;
}

export type RotateResult =
  /** This call rotated the session: nextPair is now the valid pair. */
  | { outcome: "rotated"; session: SessionRecord }
  /** A retry inside the grace window: the pair the winning call stored. */
  | { outcome: "replayed"; pair: IssuedPair; session: SessionRecord }
  /** A rotated-out token came back: this call revoked the session. */
  | { outcome: "reused" }
  /** The session is gone or unusable; nothing changed. */
  | { outcome: "ended"; why: "revoked" | "expired" | "missing" };

/** What the store knows about one token; the domain decides what it means. One round trip. */
export interface TokenState {
  jtiRevoked: boolean;
  /** The token's session, if it is the subject's; null otherwise (unknown, ended long ago, or another subject's). */
  session: TokenSession | null;
  /** The subject's risk observations (see audit.ts), read in the same round trip; absent when none are kept. */
  risk?: Readonly<RiskObservations>;
}

/** What Introspect needs of a token's session (domain/sessions.ts tokenSession builds it). */
export interface TokenSession {
  status: "active" | "revoked";
  idleExpiresAt: number;
  expiresAt: number;
  currentJti: string;
}

export type RevocationKind = "token" | "session" | "subject" | "key";

/** One entry of the revocation feed, in order; `id` is the cursor to continue after. */
export interface RevocationEvent {
  id: string;
  kind: RevocationKind;
  subject: string;
  /** For kind "session": the session; for kind "token": the jti; for kind "key": the kid. For "subject": empty. */
  target: string;
  /** For kind "subject": the sessions that logout ended (a session opened after it lives on). Empty otherwise. */
  sessions: string[];
  at: number;
  /**
   * Until when a verifier must remember the entry: no token it concerns is accepted after this instant. A token:
   * its expiry plus the clock skew (the `expiresAt` given to revokeToken); a session or a subject: `at` plus the
   * `retentionMs` given. The feed drops entries after it.
   */
  until: number;
  reason: string;
}

/** A page of the revocation feed. */
export interface FeedPage {
  entries: RevocationEvent[];
  /**
   * Where to continue: the last entry's id; when nothing follows the cursor, the newest id the feed has ever handed
   * out (even if that entry is gone), so a consumer that is up to date never falls behind the feed's trimming.
   */
  next: string;
}

/**
 * Every form a revocation feed hands out, or handed out before: the memory feed's `<epoch>-<id>`, the Redis feed's
 * `<epoch>.<ms>-<seq>` (its epoch `0` or 12 lowercase hex digits), and a bare stream id, `ms-seq` or `ms` (what the
 * Redis feed handed out before its cursors carried an epoch). At most 52 characters. A feed answers a cursor of this
 * shape that is not of its own form "expired" (another feed's, or an older version's: the consumer takes a new
 * snapshot once, and never skips an entry), anything else "invalid"; the API refuses anything else before it reads.
 */
export const FEED_CURSOR_SHAPE = /^(?:(?:0|[0-9a-f]{12})\.\d{1,19}-\d{1,19}|\d{1,19}(?:-\d{1,19})?)$/;

/**
 * A cursor the feed cannot continue from: "invalid" (not of FEED_CURSOR_SHAPE) or "expired" (entries after it may
 * have been dropped, it lies beyond anything this feed ever handed out, or it is another feed's: another store, an
 * earlier process of a memory store, an earlier incarnation of a Redis feed, as after Redis lost it).
 * A consumer of an expired cursor must start again from a snapshot (a read without a cursor).
 */
export class FeedCursorError extends Error {
  override readonly name = "FeedCursorError";
  constructor(readonly why: "invalid" | "expired") {
    super(why === "invalid" ? "not a revocation feed cursor" : "revocation feed cursor expired");
  }
}

/** A signing key as the store keeps it, so that every authority process on one store shares it. */
export interface StoredKey {
  kid: string;
  alg: string;
  createdAt: number;
  /** When it starts signing (domain/keys.ts keyStates decides the rest); absent in keys stored before: createdAt. */
  activateAt?: number;
  /** When it was revoked (KeyService.RevokeKey): from then on it is neither published nor accepted. */
  revokedAt?: number;
  /**
   * The private key: sealed under the key-encryption key (domain/key-encryption.ts) when one is configured, else a
   * plain JWK. Absent from a record whose private part is never stored: an HS256 key (its secret comes from the
   * configuration), a key of TESSERA_SIGNING_KEYS_FILE recorded only to carry its revocation mark.
   */
  privateJwk?: StoredPrivateKey;
  publicJwk: JWK;
}

// ---------------------------------------------------------------------------------------------------------------
// The store, by concern. Each consumer depends on the part it uses: KeyRing on KeyStore, Authority on SessionStore,
// Audit on AuditStore, Readiness on StoreLifecycle's ping. `Store` is all of them together, what a backend provides
// (src/store/memory.ts, src/store/redis.ts, each a composite of one part per concern).

/** The signing keys, shared by every authority process on one store. */
export interface KeyStore {
  /** Every signing key, in the order they were added, with `revokedAt` where one was revoked. */
  listKeys(): Promise<StoredKey[]>;
  /**
   * Adds a key only if the last key added is `expectNewest` (null: only into a store without keys), so that of several
   * processes rotating (or starting on an empty store) at once exactly one adds; and drops the keys named in `drop`
   * (keys no token can need any more). Atomic. Returns whether it added, and the keys after the call.
   */
  addKey(key: StoredKey, opts: { expectNewest: string | null; drop?: readonly string[] }): Promise<{ added: boolean; keys: StoredKey[] }>;
  /**
   * Marks a key revoked at `at` and appends a "key" entry to the revocation feed, kept until `until` (a retry of the
   * same revocation appends again, as for tokens). Returns false if no such key is kept or it was revoked already.
   */
  revokeKey(q: { kid: string; at: number; until: number; reason: string }): Promise<boolean>;
  /**
   * Replaces the private part of a kept key (a key sealed again under a new key-encryption key, or sealed for the first
   * time) only if it is still `from` (compared as JSON values, `samePrivateKey`), so that of several processes doing it
   * at once none undoes another's work. Atomic; nothing else of the key changes (its order, fields, revocation mark).
   * Returns whether it replaced.
   */
  replacePrivateKey(q: { kid: string; from: StoredPrivateKey; to: StoredPrivateKey }): Promise<boolean>;
}

/** Whether two private parts are the same JSON value (members in any order). */
export function samePrivateKey(a: StoredPrivateKey | undefined, b: StoredPrivateKey | undefined): boolean {
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : typeof v === "object" && v !== null
        ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]))
        : v;
  return a !== undefined && b !== undefined && JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

/** Reading sessions and revocation state. Liveness is judged by domain/sessions.ts (`isLive`). */
export interface SessionReader {
  /**
   * Revocation and session facts for one token, in one round trip (the subject's risk observations too). Answers from
   * the state of the subject whose tag the session id carries; a string that is not a session id has no state.
   */
  tokenState(q: { subject: string; sessionId: string; jti: string }): Promise<TokenState>;
  /** Live sessions of a subject, most recently used first. */
  listSessions(subject: string, now: number): Promise<SessionRecord[]>;
  /** One live session, or null. */
  getSession(sessionId: string, now: number): Promise<SessionRecord | null>;
}

/** Changing sessions and revoking. Every revocation is also appended to the revocation feed. */
export interface SessionWriter {
  /**
   * Opens a session. If the subject then has more than `maxSessions` live sessions, the least recently used ones
   * (domain/sessions.ts `evictionOrder`) are revoked (kept as revoked for `retentionMs`) and their ids returned.
   * Atomic. The session id must have been minted for the subject (ids.newSessionId): a store finds a session from its
   * id alone through the subject tag it carries. Throws (a programming error, not a store outage) if it was not.
   */
  createSession(
    session: SessionRecord,
    opts: { maxSessions: number; now: number; retentionMs: number },
  ): Promise<{ evicted: string[] }>;

  /**
   * Rotates a session's refresh token, detects reuse, replays inside the grace window (domain/sessions.ts
   * `judgeRotation`). Atomic.
   */
  rotateRefresh(input: RotateInput): Promise<RotateResult>;

  /** Revokes one token id until `expiresAt`. Returns false if it was revoked already. */
  revokeToken(q: { subject: string; jti: string; expiresAt: number; now: number; reason: string }): Promise<boolean>;

  /**
   * Revokes one session (subject may be omitted: the id carries the subject's tag). Returns false if there is no live
   * session of that id (of that subject, if given). Atomic.
   */
  revokeSession(q: {
    sessionId: string;
    subject?: string;
    now: number;
    retentionMs: number;
    reason: string;
  }): Promise<boolean>;

  /**
   * Revokes every live session of the subject (logout everywhere) in one atomic step, so every token issued so far
   * is dead and a session opened after the call lives. Appends one "subject" entry to the feed (`at` = now, `until` =
   * now + retentionMs) whose `sessions` lists the ids of the sessions this call ended, least recently used first (then
   * by id); it is appended even if that list is empty. Returns the ids of the sessions revoked: that list.
   */
  revokeSubject(q: { subject: string; now: number; retentionMs: number; reason: string }): Promise<string[]>;
}

export interface SessionStore extends SessionReader, SessionWriter {}

/**
 * What was revoked, in order, for verifiers that check tokens locally (sidecars). Written by SessionWriter: every
 * revocation appends an entry (a retried revocation appends again, so an append lost to a failure is made good by the
 * retry). Entries stay until their `until` has passed, then the feed drops them (oldest first); nothing else trims it.
 */
export interface RevocationFeed {
  /**
   * The entries after `cursor` (null: from the oldest kept), at most `limit` (at least 1), and where to continue.
   * Throws FeedCursorError for a cursor it cannot continue from, StoreUnavailableError when unreachable.
   */
  revocations(cursor: string | null, limit: number): Promise<FeedPage>;
  /**
   * Calls `listener` (without arguments, possibly more than once per change) whenever the feed may have grown, from
   * this process or any other on the same store; returns the function that unsubscribes. A listener is a hint to read
   * again, never the data itself.
   */
  subscribe(listener: () => void): () => void;
}

/**
 * The stored audit trail and the per-subject risk observations derived from it. A backend's appendAudit also feeds its
 * StatsStore (domain/stats.ts) from the events, in the same round trip.
 */
export interface AuditStore {
  /**
   * Appends audit events (in this order) to the audit trail and records the risk signals they carry (domain
   * `riskSignal`) into each subject's risk observations (domain `mergeRisk`; the state expires `riskWindowMs` after its
   * last update). Trims the trail to about `maxEvents` (at least the newest `maxEvents` stay) and drops events older
   * than `now - maxAgeMs`. One round trip; not atomic as a whole. Returns each signalled subject's observations after
   * the update.
   */
  appendAudit(events: readonly AuditEvent[], bounds: AuditBounds): Promise<{ subject: string; risk: RiskObservations }[]>;

  /** Stored events matching the query, newest first, at most `limit` (see AUDIT_SCAN_LIMIT), and the next cursor. */
  listAudit(query: AuditQuery): Promise<AuditPage>;

  /** The subject's risk observations, or null if none are kept. */
  riskOf(subject: string): Promise<RiskObservations | null>;

  /**
   * Marks that a suspicious_activity event is raised for the subject now, unless one was within `windowMs` (domain
   * `alertedWithin`): true if this call made the mark (so of several processes exactly one raises the event). Atomic.
   */
  claimRiskAlert(q: { subject: string; now: number; windowMs: number }): Promise<boolean>;
}

export interface StoreLifecycle {
  /** Resolves when the store answers; throws StoreUnavailableError otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Every part together: what a backend provides and the composition root hands out. */
export interface Store extends KeyStore, SessionStore, RevocationFeed, AuditStore, StatsStore, StoreLifecycle {}

/** SessionWriter.createSession's precondition: the session id was minted for the session's subject (ids.newSessionId). */
export function assertSessionIdOf(s: Pick<SessionRecord, "id" | "subject">): void {
  if (!isSessionIdOf(s.id, s.subject)) throw new Error("session id was not minted for its subject (newSessionId)");
}

/**
 * Fixed-window counters that every process on the store shares: the API's rate limits and refresh lockout
 * (src/api/rate-limit.ts). A store that cannot answer throws StoreUnavailableError; a counter over its limit is an
 * answer, not an error. Keys never hold a token or an API key.
 */
export interface CounterStore {
  /** The counters named `name`, one per key: at most `points` within each window of `windowMs` (whole seconds). */
  counters(name: string, points: number, windowMs: number): Counters;
  /** The counts of several counters (of any families) in one round trip; 0 for a counter with nothing counted. */
  countMany(reads: ReadonlyArray<readonly [Counters, string]>): Promise<number[]>;
}

export interface Counters {
  /** Counts one against the key: whether it was within the limit, and how long until the key's window ends. */
  consume(key: string): Promise<{ allowed: boolean; retryAfterMs: number }>;
  /** What the key has counted in its window, and how long until the window (or a block) ends; null if nothing. */
  get(key: string): Promise<{ count: number; retryAfterMs: number } | null>;
  /** Counts one against the key without a limit check; the count after. */
  add(key: string): Promise<number>;
  /** Holds the key over its limit for `ms`. */
  block(key: string, ms: number): Promise<void>;
  /** Forgets the key's count. */
  delete(key: string): Promise<void>;
}
