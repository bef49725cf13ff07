/**
 * The memory store's sessions and revocations (SessionStore). Every operation is one synchronous step, which makes it
 * atomic. The rules (liveness, rotation, grace window, eviction and listing order) are domain/sessions.ts's; every
 * revocation is appended to the feed part.
 */
import {
  evictionOrder,
  excessSessions,
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
import type { Horizon } from "./shared.js";

interface SessionEntry extends SessionRow {
  /** Instant this entry may be forgotten. */
  dropAt: number;
  /** The last rotation, with the pair it handed out, for the grace window. */
  previous?: GraceEntry & { pair: IssuedPair };
}

export class MemorySessionStore implements SessionStore {
  private sessions = new Map<string, SessionEntry>();
  private bySubject = new Map<string, Set<string>>();
  private revokedJti = new Map<string, number>();
  private opened = 0;

  constructor(
    private readonly horizon: Horizon,
    private readonly feed: MemoryRevocationFeed,
    /** The subject's risk observations as held (not a copy: tokenState's readers only read them). */
    private readonly riskOf: (subject: string) => Readonly<RiskObservations> | null,
  ) {}

  async createSession(
    session: SessionRecord,
    opts: { maxSessions: number; now: number; retentionMs: number },
  ): Promise<{ evicted: string[] }> {
    assertSessionIdOf(session);
    this.horizon.tick(opts.now);
    const live = this.liveSessions(session.subject, opts.now);
    const excess = excessSessions(live.length, opts.maxSessions);
    const evicted: string[] = [];
    for (const entry of live.sort(evictionOrder).slice(0, Math.max(0, excess))) {
      // Not appended again by a retry: a retried Issue opens another session, it does not evict this one again.
      this.tombstone(entry, opts.now, opts.retentionMs, "evicted: session limit");
      evicted.push(entry.record.id);
    }
    this.sessions.set(session.id, { record: { ...session }, status: "active", order: ++this.opened, dropAt: liveUntil(session) });
    let ids = this.bySubject.get(session.subject);
    if (!ids) this.bySubject.set(session.subject, (ids = new Set()));
    ids.add(session.id);
    return { evicted };
  }

  async rotateRefresh(input: RotateInput): Promise<RotateResult> {
    const now = input.now;
    this.horizon.tick(now);
    const entry = this.sessions.get(input.sessionId) ?? null;
    const judged = judgeRotation(entry, entry?.previous, input);
    switch (judged.step) {
      case "ended":
        // A revoked session presented again: its entry again, in case the revocation's append was lost.
        if (judged.why === "revoked") this.appendSession(entry!, now, input.retentionMs, REVOKED_PRESENTED);
        return { outcome: "ended", why: judged.why };
      case "rotate": {
        const e = entry!;
        e.previous = { jti: e.record.currentJti, pair: input.nextPair, at: now, fingerprint: input.clientFingerprint };
        e.record = rotated(e.record, input);
        e.dropAt = liveUntil(e.record);
        return { outcome: "rotated", session: { ...e.record } };
      }
      case "replay":
        return { outcome: "replayed", pair: entry!.previous!.pair, session: { ...entry!.record } };
      case "reuse":
        this.tombstone(entry!, now, input.retentionMs, "refresh token reuse");
        return { outcome: "reused" };
    }
  }

  async tokenState(q: { subject: string; sessionId: string; jti: string }): Promise<TokenState> {
    const until = this.revokedJti.get(jtiKey(q.subject, q.jti));
    const session = tokenSession(this.sessions.get(q.sessionId), q.subject);
    const risk = this.riskOf(q.subject);
    return { jtiRevoked: until !== undefined, session, ...(risk ? { risk } : {}) };
  }

  async revokeToken(q: { subject: string; jti: string; expiresAt: number; now: number; reason: string }) {
    this.horizon.tick(q.now);
    if (q.expiresAt <= q.now) return false;
    const key = jtiKey(q.subject, q.jti);
    const held = this.revokedJti.get(key);
    // Revoked already (and still held, as Redis holds it until its expiry): no change, but the entry again.
    const fresh = held === undefined || held <= q.now;
    if (fresh) this.revokedJti.set(key, q.expiresAt);
    this.append("token", q.subject, q.jti, [], q.now, q.expiresAt, q.reason);
    return fresh;
  }

  async revokeSession(q: { sessionId: string; subject?: string; now: number; retentionMs: number; reason: string }) {
    this.horizon.tick(q.now);
    const entry = this.sessions.get(q.sessionId);
    if (!entry || (q.subject !== undefined && entry.record.subject !== q.subject)) return false;
    if (liveAt(entry, q.now)) {
      this.tombstone(entry, q.now, q.retentionMs, q.reason);
      return true;
    }
    // Revoked already and still retained: the entry again (a retry may follow a lost append), but no change.
    if (entry.status === "revoked" && entry.dropAt > q.now) this.appendSession(entry, q.now, q.retentionMs, q.reason);
    return false;
  }

  async revokeSubject(q: { subject: string; now: number; retentionMs: number; reason: string }) {
    this.horizon.tick(q.now);
    // In the Redis index's order (least recently used first, then by id), so both stores list them alike.
    const live = this.liveSessions(q.subject, q.now).sort(indexOrder);
    for (const entry of live) markRevoked(entry, q.now, q.retentionMs);
    const ended = live.map((e) => e.record.id);
    this.append("subject", q.subject, "", ended, q.now, q.now + q.retentionMs, q.reason); // one entry for all of them
    return live.length;
  }

  async listSessions(subject: string, now: number): Promise<SessionRecord[]> {
    return this.liveSessions(subject, now)
      .sort(listingOrder)
      .map((e) => ({ ...e.record }));
  }

  async getSession(sessionId: string, now: number): Promise<SessionRecord | null> {
    const entry = this.sessions.get(sessionId);
    return entry && liveAt(entry, now) ? { ...entry.record } : null;
  }

  /** Drops what has expired. */
  sweep(now: number): void {
    for (const [id, entry] of this.sessions) {
      if (entry.dropAt <= now) {
        this.sessions.delete(id);
        const ids = this.bySubject.get(entry.record.subject);
        ids?.delete(id);
        if (ids?.size === 0) this.bySubject.delete(entry.record.subject);
      }
    }
    for (const [jti, until] of this.revokedJti) if (until <= now) this.revokedJti.delete(jti);
  }

  size(): { sessions: number; revokedJti: number } {
    return { sessions: this.sessions.size, revokedJti: this.revokedJti.size };
  }

  private liveSessions(subject: string, now: number): SessionEntry[] {
    const out: SessionEntry[] = [];
    for (const id of this.bySubject.get(subject) ?? []) {
      const entry = this.sessions.get(id);
      if (entry && liveAt(entry, now)) out.push(entry);
    }
    return out;
  }

  private tombstone(entry: SessionEntry, now: number, retentionMs: number, reason: string): void {
    markRevoked(entry, now, retentionMs);
    this.appendSession(entry, now, retentionMs, reason);
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

/** The order of the Redis index (a zset scored by lastUsedAt): least recently used first, then by id. */
function indexOrder(a: SessionEntry, b: SessionEntry): number {
  const [x, y] = [a.record, b.record];
  return x.lastUsedAt - y.lastUsedAt || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
}

/** Revoked: remembered as such for `retentionMs`, its grace pair dropped (as Redis deletes the `g:` key). */
function markRevoked(entry: SessionEntry, now: number, retentionMs: number): void {
  entry.status = "revoked";
  entry.previous = undefined;
  entry.dropAt = now + retentionMs;
}

/** Revoked token ids are the subject's, as Redis keys them under the subject's tag. */
function jtiKey(subject: string, jti: string): string {
  return `${subject}\0${jti}`;
}

function liveAt(entry: SessionEntry, now: number): boolean {
  return isLive(entry.status, entry.record, now);
}
