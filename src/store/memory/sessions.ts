/**
 * The memory store's sessions and revocations (SessionStore). Every operation is one synchronous step, which makes it
 * atomic. The rules (liveness, rotation, grace window, eviction and listing order) are domain/sessions.ts's; every
 * revocation is appended to the feed part.
 *
 * What it holds, it holds as long as Redis holds its keys (src/store/redis/sessions.ts), so that both answer alike: a
 * session until liveUntil while active, and for the retention once revoked (the `s:` key's PX); a rotation's grace
 * entry until domain graceKeptUntil (the `g:` key's PX); a revoked token id until its expiry (the `j:` key's PX).
 * Each is gone from that instant on, by the store's clock (shared.ts Lifetimes), at every read: the sweep only frees
 * the memory. And it finds a subject's revoked token ids and risk observations by the subject's tag, as Redis keys
 * them, so that tokenState answers from the session id alone (the state of the subject the session id names).
 */
import { TesseraError } from "../../domain/errors.js";
import { sessionTag, subjectTag } from "../../domain/ids.js";
import {
  evictionOrder,
  excessSessions,
  graceKeptUntil,
  isLive,
  judgeRotation,
  listingOrder,
  liveUntil,
  rotated,
  tokenSession,
  type GraceEntry,
  type SessionRow,
} from "../../domain/sessions.js";
import {
  assertSessionIdOf,
  type IssuedPair,
  type RevocationKind,
  type RotateInput,
  type RotateResult,
  type SessionRecord,
  type SessionStore,
  type TokenState,
} from "../../domain/store.js";
import type { RiskObservations } from "../../domain/audit.js";
import type { MemoryRevocationFeed } from "./feed.js";
import type { Lifetimes } from "./shared.js";

interface SessionEntry extends SessionRow {
  /** When this entry is gone, on the store's clock (shared.ts Lifetimes; Redis: the `s:` key's expiry). */
  expiry: number;
  /** The last rotation, with the pair it handed out, for the grace window, until its expiry (domain graceKeptUntil). */
  previous?: GraceEntry & { pair: IssuedPair; expiry: number };
}

export class MemorySessionStore implements SessionStore {
  private sessions = new Map<string, SessionEntry>();
  /** Per subject, its active sessions (the Redis index `P{t}:idx`); a revoked one leaves it at once. */
  private bySubject = new Map<string, Set<string>>();
  /** `<subject tag>\0<jti>` -> when it is forgotten, on the store's clock (the token's expiry). */
  private revokedJti = new Map<string, number>();

  constructor(
    private readonly lifetimes: Lifetimes,
    private readonly feed: MemoryRevocationFeed,
    /** The risk observations of the subject with this tag, as held (not a copy: tokenState's readers only read them). */
    private readonly riskOf: (tag: string) => Readonly<RiskObservations> | null,
    /** Sessions held at most, live or revoked (makeRoom). */
    private readonly capacity = Infinity,
  ) {}

  /** When a full store last swept (makeRoom), on the store's clock. */
  private sweptWhenFull = -Infinity;

  /**
   * Refuses to open a session once `capacity` sessions are held (live, or revoked and kept for the retention): the
   * store's memory is bounded whoever calls Issue, and nothing held is dropped to make room (a revoked session must
   * stay revoked). What has expired is freed first, by a sweep at most once a second while the store is full, so that
   * a flood of refused calls costs no more than that.
   */
  private makeRoom(): void {
    if (this.sessions.size < this.capacity) return;
    const now = this.lifetimes.now();
    if (now - this.sweptWhenFull >= 1_000) {
      this.sweptWhenFull = now;
      this.sweep();
    }
    if (this.sessions.size >= this.capacity) {
      throw new TesseraError(
        "resource_exhausted",
        `the in-memory store holds its most sessions (${this.capacity}, TESSERA_MEMORY_MAX_SESSIONS): no session opens until some end`,
      );
    }
  }

  async createSession(
    session: SessionRecord,
    opts: { maxSessions: number; now: number; retentionMs: number },
  ): Promise<{ evicted: string[] }> {
    assertSessionIdOf(session);
    this.makeRoom();
    const live = this.liveSessions(session.subject, opts.now);
    const excess = excessSessions(live.length, opts.maxSessions);
    const evicted: string[] = [];
    for (const entry of live.sort(evictionOrder).slice(0, Math.max(0, excess))) {
      // Not appended again by a retry: a retried Issue opens another session, it does not evict this one again.
      this.tombstone(entry, opts.now, opts.retentionMs, "evicted: session limit");
      evicted.push(entry.record.id);
    }
    const expiry = this.lifetimes.expiry(liveUntil(session), opts.now);
    this.sessions.set(session.id, { record: { ...session }, status: "active", expiry });
    let ids = this.bySubject.get(session.subject);
    if (!ids) this.bySubject.set(session.subject, (ids = new Set()));
    ids.add(session.id);
    return { evicted };
  }

  async rotateRefresh(input: RotateInput): Promise<RotateResult> {
    const now = input.now;
    const entry = this.held(input.sessionId) ?? null;
    const previous = entry?.previous && this.lifetimes.held(entry.previous.expiry) ? entry.previous : null;
    const judged = judgeRotation(entry, previous, input);
    switch (judged.step) {
      case "ended":
        // A revoked session presented again: its entry again, in case the revocation's append was lost.
        if (judged.why === "revoked") this.appendSession(entry!, now, input.retentionMs, REVOKED_PRESENTED);
        return { outcome: "ended", why: judged.why };
      case "rotate": {
        const e = entry!;
        const presented = e.record.currentJti;
        e.record = rotated(e.record, input);
        e.expiry = this.lifetimes.expiry(liveUntil(e.record), now);
        const keptUntil = graceKeptUntil(now, input.graceMs, e.record.idleExpiresAt);
        e.previous =
          keptUntil === null
            ? undefined
            : {
                jti: presented,
                pair: input.nextPair,
                at: now,
                fingerprint: input.clientFingerprint,
                expiry: this.lifetimes.expiry(keptUntil, now),
              };
        return { outcome: "rotated", session: { ...e.record } };
      }
      case "replay":
        return { outcome: "replayed", pair: previous!.pair, session: { ...entry!.record } };
      case "reuse":
        this.tombstone(entry!, now, input.retentionMs, "refresh token reuse");
        return { outcome: "reused" };
    }
  }

  /**
   * Answers from the state of the subject whose tag the session id carries, as Redis's one MGET does: its revoked
   * jti, the session (only if it is q.subject's: domain tokenSession), its risk observations. A string that is no
   * session id has no state at all. What has expired (by the store's clock) is not there.
   */
  async tokenState(q: { subject: string; sessionId: string; jti: string }): Promise<TokenState> {
    const tag = sessionTag(q.sessionId);
    if (tag === null) return { jtiRevoked: false, session: null };
    const jtiRevoked = this.lifetimes.held(this.revokedJti.get(jtiKey(tag, q.jti)) ?? -Infinity);
    const session = tokenSession(this.held(q.sessionId), q.subject);
    const risk = this.riskOf(tag);
    return { jtiRevoked, session, ...(risk ? { risk } : {}) };
  }

  async revokeToken(q: { subject: string; jti: string; expiresAt: number; now: number; reason: string }) {
    if (q.expiresAt <= q.now) return false;
    const key = jtiKey(subjectTag(q.subject), q.jti);
    // Revoked already (still held, as Redis holds it until its expiry): no change, but the entry again.
    const fresh = !this.lifetimes.held(this.revokedJti.get(key) ?? -Infinity);
    if (fresh) this.revokedJti.set(key, this.lifetimes.expiry(q.expiresAt, q.now));
    this.append("token", q.subject, q.jti, [], q.now, q.expiresAt, q.reason);
    return fresh;
  }

  async revokeSession(q: { sessionId: string; subject?: string; now: number; retentionMs: number; reason: string }) {
    const entry = this.held(q.sessionId);
    if (!entry || (q.subject !== undefined && entry.record.subject !== q.subject)) return false;
    if (liveAt(entry, q.now)) {
      this.tombstone(entry, q.now, q.retentionMs, q.reason);
      return true;
    }
    // Revoked already and still retained: the entry again (a retry may follow a lost append), but no change.
    if (entry.status === "revoked") this.appendSession(entry, q.now, q.retentionMs, q.reason);
    return false;
  }

  async revokeSubject(q: { subject: string; now: number; retentionMs: number; reason: string }) {
    // In the Redis index's order (evictionOrder: least recently used first, then by id): both stores list them alike.
    const live = this.liveSessions(q.subject, q.now).sort(evictionOrder);
    for (const entry of live) this.markRevoked(entry, q.now, q.retentionMs);
    const ended = live.map((e) => e.record.id);
    this.append("subject", q.subject, "", ended, q.now, q.now + q.retentionMs, q.reason); // one entry for all of them
    return [...ended];
  }

  async listSessions(subject: string, now: number): Promise<SessionRecord[]> {
    return this.liveSessions(subject, now)
      .sort(listingOrder)
      .map((e) => ({ ...e.record }));
  }

  async getSession(sessionId: string, now: number): Promise<SessionRecord | null> {
    const entry = this.held(sessionId);
    return entry && liveAt(entry, now) ? { ...entry.record } : null;
  }

  /** Frees what has expired (reads ignore it already). */
  sweep(): void {
    const held = (expiry: number) => this.lifetimes.held(expiry);
    for (const [id, entry] of this.sessions) {
      if (!held(entry.expiry)) this.forget(id, entry);
      else if (entry.previous && !held(entry.previous.expiry)) entry.previous = undefined;
    }
    for (const [jti, expiry] of this.revokedJti) if (!held(expiry)) this.revokedJti.delete(jti);
  }

  size(): { sessions: number; revokedJti: number } {
    return { sessions: this.sessions.size, revokedJti: this.revokedJti.size };
  }

  /** The session, unless it has expired (then it is forgotten now). */
  private held(id: string): SessionEntry | undefined {
    const entry = this.sessions.get(id);
    if (entry === undefined || this.lifetimes.held(entry.expiry)) return entry;
    this.forget(id, entry);
    return undefined;
  }

  private forget(id: string, entry: SessionEntry): void {
    this.sessions.delete(id);
    this.unindex(entry);
  }

  private unindex(entry: SessionEntry): void {
    const ids = this.bySubject.get(entry.record.subject);
    ids?.delete(entry.record.id);
    if (ids?.size === 0) this.bySubject.delete(entry.record.subject);
  }

  /** The subject's sessions still held and live at `now`. */
  private liveSessions(subject: string, now: number): SessionEntry[] {
    const out: SessionEntry[] = [];
    for (const id of [...(this.bySubject.get(subject) ?? [])]) {
      const entry = this.held(id);
      if (entry && liveAt(entry, now)) out.push(entry);
    }
    return out;
  }

  private tombstone(entry: SessionEntry, now: number, retentionMs: number, reason: string): void {
    this.markRevoked(entry, now, retentionMs);
    this.appendSession(entry, now, retentionMs, reason);
  }

  /**
   * Revoked: remembered as such for `retentionMs`, its grace pair dropped (never read again: Redis deletes the `g:` key
   * or lets it expire), and out of its subject's index (as Redis ZREMs it), so that a subject's revoked sessions,
   * however many its retention keeps, never make its Issue walk them.
   */
  private markRevoked(entry: SessionEntry, now: number, retentionMs: number): void {
    entry.status = "revoked";
    entry.previous = undefined;
    entry.expiry = this.lifetimes.expiry(now + retentionMs, now);
    this.unindex(entry);
  }

  private appendSession(entry: SessionEntry, now: number, retentionMs: number, reason: string): void {
    this.append("session", entry.record.subject, entry.record.id, [], now, now + retentionMs, reason);
  }

  private append(
    kind: RevocationKind,
    subject: string,
    target: string,
    sessions: string[],
    now: number,
    until: number,
    reason: string,
  ): void {
    this.feed.append({ kind, subject, target, sessions, at: now, until, reason }, now);
  }
}

/** The reason of the entry appended again when a refresh presents a token of a revoked session (Redis: the same). */
const REVOKED_PRESENTED = "revoked session presented";

/** Revoked token ids are the subject's, found by its tag (ids.subjectTag), as Redis keys them (`P{t}:j:<jti>`). */
function jtiKey(tag: string, jti: string): string {
  return `${tag}\0${jti}`;
}

function liveAt(entry: SessionEntry, now: number): boolean {
  return isLive(entry.status, entry.record, now);
}
