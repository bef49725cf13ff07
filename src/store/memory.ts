/**
 * The embedded store: one process, no dependencies. Every operation is one synchronous step, which makes it atomic.
 * Entries carry their own expiry and a sweep drops them, so memory stays bounded by what is live.
 */
import {
  AUDIT_SCAN_LIMIT,
  auditMatches,
  compareAuditIds,
  emptyRisk,
  isAuditId,
  mergeRisk,
  nextAuditId,
  riskSignalsBySubject,
  type AuditBounds,
  type AuditEvent,
  type AuditPage,
  type AuditQuery,
  type RiskObservations,
  type StoredAuditEvent,
} from "../domain/audit.js";
import {
  assertSessionIdOf,
  type IssuedPair,
  type RevocationEvent,
  type RevocationKind,
  type RotateInput,
  type RotateResult,
  type SessionRecord,
  type Store,
  type StoredKey,
  type TokenState,
} from "../domain/store.js";

interface SessionEntry {
  record: SessionRecord;
  status: "active" | "revoked";
  /** Instant this entry may be forgotten. */
  dropAt: number;
  previous?: { jti: string; pair: IssuedPair; at: number; fingerprint: string };
}

const FEED_MAX = 100_000;
const SWEEP_EVERY_MS = 30_000;

export class MemoryStore implements Store {
  readonly kind = "memory" as const;
  private keys: StoredKey[] = [];
  private sessions = new Map<string, SessionEntry>();
  private bySubject = new Map<string, Set<string>>();
  private revokedJti = new Map<string, number>();
  private feed: RevocationEvent[] = [];
  private feedSeq = 0;
  /** The audit trail, oldest first. */
  private audit: StoredAuditEvent[] = [];
  /** The newest id ever given, so ids keep growing even after trimming emptied the trail. */
  private lastAuditId: string | null = null;
  /** Subject -> risk observations and the instant they may be forgotten. */
  private risk = new Map<string, { obs: RiskObservations; dropAt: number }>();
  /** Latest instant any caller has told us; the sweep uses it so it agrees with the callers' clock. */
  private latest = 0;
  private sweeper: NodeJS.Timeout;

  constructor() {
    this.sweeper = setInterval(() => this.sweep(), SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  async listKeys(): Promise<StoredKey[]> {
    return [...this.keys];
  }

  async addKey(key: StoredKey, onlyIfAlgAbsent: boolean): Promise<StoredKey[]> {
    const blocked = onlyIfAlgAbsent && this.keys.some((k) => k.alg === key.alg);
    if (!blocked && !this.keys.some((k) => k.kid === key.kid)) this.keys.push(key);
    return [...this.keys];
  }

  async createSession(
    session: SessionRecord,
    opts: { maxSessions: number; now: number; retentionMs: number },
  ): Promise<{ evicted: string[] }> {
    assertSessionIdOf(session);
    this.tick(opts.now);
    const live = this.liveSessions(session.subject, opts.now);
    const excess = live.length + 1 - opts.maxSessions;
    const evicted: string[] = [];
    if (excess > 0) {
      live.sort((a, b) => a.record.lastUsedAt - b.record.lastUsedAt || a.record.createdAt - b.record.createdAt);
      for (const entry of live.slice(0, excess)) {
        this.tombstone(entry, opts.now, opts.retentionMs, "evicted: session limit");
        evicted.push(entry.record.id);
      }
    }
    this.sessions.set(session.id, { record: { ...session }, status: "active", dropAt: liveUntil(session) });
    let ids = this.bySubject.get(session.subject);
    if (!ids) this.bySubject.set(session.subject, (ids = new Set()));
    ids.add(session.id);
    return { evicted };
  }

  async rotateRefresh(input: RotateInput): Promise<RotateResult> {
    const now = input.now;
    this.tick(now);
    const entry = this.sessions.get(input.sessionId);
    if (!entry || entry.record.subject !== input.subject) return { outcome: "ended", why: "missing" };
    if (entry.status === "revoked") return { outcome: "ended", why: "revoked" };
    if (now >= liveUntil(entry.record)) return { outcome: "ended", why: "expired" };
    const s = entry.record;
    if (input.presentedJti === s.currentJti) {
      entry.previous = { jti: s.currentJti, pair: input.nextPair, at: now, fingerprint: input.clientFingerprint };
      s.currentJti = input.nextJti;
      s.lastUsedAt = now;
      s.idleExpiresAt = Math.min(now + input.idleTtlMs, s.expiresAt);
      entry.dropAt = liveUntil(s);
      return { outcome: "rotated", session: { ...s } };
    }
    const prev = entry.previous;
    if (
      prev &&
      input.graceMs > 0 &&
      input.presentedJti === prev.jti &&
      now - prev.at < input.graceMs &&
      input.clientFingerprint === prev.fingerprint
    ) {
      return { outcome: "replayed", pair: prev.pair, session: { ...s } };
    }
    this.tombstone(entry, now, input.retentionMs, "refresh token reuse");
    return { outcome: "reused" };
  }

  async tokenState(q: { subject: string; sessionId: string; jti: string }): Promise<TokenState> {
    const until = this.revokedJti.get(q.jti);
    const entry = this.sessions.get(q.sessionId);
    const session =
      entry && entry.record.subject === q.subject
        ? {
            status: entry.status,
            createdAt: entry.record.createdAt,
            idleExpiresAt: entry.record.idleExpiresAt,
            expiresAt: entry.record.expiresAt,
            currentJti: entry.record.currentJti,
          }
        : null;
    const held = this.heldRisk(q.subject);
    const risk = held && structuredClone(held);
    return { jtiRevoked: until !== undefined, session, ...(risk ? { risk } : {}) };
  }

  async revokeToken(q: { subject: string; jti: string; expiresAt: number; now: number; reason: string }) {
    this.tick(q.now);
    if (this.revokedJti.has(q.jti) || q.expiresAt <= q.now) return false;
    this.revokedJti.set(q.jti, q.expiresAt);
    this.append("token", q.subject, q.jti, q.now, q.reason);
    return true;
  }

  async revokeSession(q: { sessionId: string; subject?: string; now: number; retentionMs: number; reason: string }) {
    this.tick(q.now);
    const entry = this.sessions.get(q.sessionId);
    if (!entry || (q.subject !== undefined && entry.record.subject !== q.subject) || !isLive(entry, q.now)) {
      return false;
    }
    this.tombstone(entry, q.now, q.retentionMs, q.reason);
    return true;
  }

  async revokeSubject(q: { subject: string; now: number; retentionMs: number; reason: string }) {
    this.tick(q.now);
    const live = this.liveSessions(q.subject, q.now);
    for (const entry of live) entry.status = "revoked";
    for (const entry of live) entry.dropAt = q.now + q.retentionMs;
    this.append("subject", q.subject, "", q.now, q.reason);
    return live.length;
  }

  async listSessions(subject: string, now: number): Promise<SessionRecord[]> {
    return this.liveSessions(subject, now)
      .map((e) => ({ ...e.record }))
      .sort((a, b) => b.lastUsedAt - a.lastUsedAt);
  }

  async getSession(sessionId: string, now: number): Promise<SessionRecord | null> {
    const entry = this.sessions.get(sessionId);
    return entry && isLive(entry, now) ? { ...entry.record } : null;
  }

  async revocations(cursor: string | null, limit: number): Promise<RevocationEvent[]> {
    const after = cursor === null ? 0 : Number(cursor);
    if (!Number.isSafeInteger(after) || after < 0 || limit <= 0) return [];
    // Feed ids are consecutive, so the first entry after the cursor is found by arithmetic.
    const first = this.feed.length === 0 ? 0 : Number(this.feed[0]!.id);
    const start = Math.max(0, after + 1 - first);
    return this.feed.slice(start, start + limit).map((e) => ({ ...e }));
  }

  async appendAudit(events: readonly AuditEvent[], b: AuditBounds): Promise<{ subject: string; risk: RiskObservations }[]> {
    this.tick(b.now);
    for (const e of events) {
      this.lastAuditId = nextAuditId(this.lastAuditId, e.at);
      this.audit.push({ ...e, detail: { ...e.detail }, id: this.lastAuditId });
    }
    const minId = `${b.now - b.maxAgeMs}-0`;
    let drop = Math.max(0, this.audit.length - b.maxEvents);
    while (drop < this.audit.length && compareAuditIds(this.audit[drop]!.id, minId) < 0) drop++;
    if (drop > 0) this.audit.splice(0, drop);
    const out: { subject: string; risk: RiskObservations }[] = [];
    for (const [subject, list] of riskSignalsBySubject(events)) {
      const obs = mergeRisk(this.heldRisk(subject), list, b.now, b.riskWindowMs);
      this.risk.set(subject, { obs, dropAt: b.now + b.riskWindowMs });
      out.push({ subject, risk: structuredClone(obs) });
    }
    return out;
  }

  async listAudit(q: AuditQuery): Promise<AuditPage> {
    const limit = Math.floor(q.limit);
    if (!(limit > 0) || (q.cursor && !isAuditId(q.cursor))) return { events: [], next: null };
    // Newest first: the first event older than the cursor, found by binary search (ids only grow).
    let lo = q.cursor ? 0 : this.audit.length;
    let hi = this.audit.length;
    if (q.cursor) {
      const cursor = q.cursor;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (compareAuditIds(this.audit[mid]!.id, cursor) < 0) lo = mid + 1;
        else hi = mid;
      }
    }
    // Ids are never below their event's time, so nothing older than `${from}-0` can match.
    const floor = q.from === undefined ? null : `${q.from}-0`;
    const events: StoredAuditEvent[] = [];
    let i = lo - 1;
    for (let scanned = 0; i >= 0 && events.length < limit && scanned < AUDIT_SCAN_LIMIT; i--, scanned++) {
      const e = this.audit[i]!;
      if (floor !== null && compareAuditIds(e.id, floor) < 0) {
        i = -1;
        break;
      }
      if (auditMatches(e, q)) events.push({ ...e, detail: { ...e.detail } });
    }
    // The cursor is the last event examined: the next page starts just below it.
    return { events, next: i >= 0 ? this.audit[i + 1]!.id : null };
  }

  async riskOf(subject: string): Promise<RiskObservations | null> {
    const held = this.heldRisk(subject);
    return held && structuredClone(held);
  }

  async claimRiskAlert(q: { subject: string; now: number; windowMs: number }): Promise<boolean> {
    this.tick(q.now);
    const held = this.heldRisk(q.subject);
    if (held && held.alertedAt > 0 && held.alertedAt > q.now - q.windowMs) return false;
    const obs = { ...(held ?? emptyRisk()), alertedAt: q.now };
    const dropAt = Math.max(this.risk.get(q.subject)?.dropAt ?? 0, q.now + q.windowMs);
    this.risk.set(q.subject, { obs, dropAt });
    return true;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  /** Drops what has expired. Runs on a timer; exposed for tests. */
  sweep(now = this.latest): void {
    for (const [id, entry] of this.sessions) {
      if (entry.dropAt <= now) {
        this.sessions.delete(id);
        const ids = this.bySubject.get(entry.record.subject);
        ids?.delete(id);
        if (ids?.size === 0) this.bySubject.delete(entry.record.subject);
      }
    }
    for (const [jti, until] of this.revokedJti) if (until <= now) this.revokedJti.delete(jti);
    for (const [subject, r] of this.risk) if (r.dropAt <= now) this.risk.delete(subject);
  }

  /** Number of entries held, for tests of boundedness. */
  size(): { sessions: number; revokedJti: number; feed: number; audit: number; risk: number } {
    const { sessions, revokedJti, feed, audit, risk } = this;
    return { sessions: sessions.size, revokedJti: revokedJti.size, feed: feed.length, audit: audit.length, risk: risk.size };
  }

  /** A subject's risk observations unless expired (by the latest instant a caller told us). */
  private heldRisk(subject: string): RiskObservations | null {
    const r = this.risk.get(subject);
    return r && r.dropAt > this.latest ? r.obs : null;
  }

  private tick(now: number): void {
    if (now > this.latest) this.latest = now;
  }

  private liveSessions(subject: string, now: number): SessionEntry[] {
    const out: SessionEntry[] = [];
    for (const id of this.bySubject.get(subject) ?? []) {
      const entry = this.sessions.get(id);
      if (entry && isLive(entry, now)) out.push(entry);
    }
    return out;
  }

  private tombstone(entry: SessionEntry, now: number, retentionMs: number, reason: string): void {
    entry.status = "revoked";
    entry.previous = undefined;
    entry.dropAt = now + retentionMs;
    this.append("session", entry.record.subject, entry.record.id, now, reason);
  }

  private append(kind: RevocationKind, subject: string, target: string, at: number, reason: string): void {
    this.feed.push({ id: String(++this.feedSeq), kind, subject, target, at, reason });
    if (this.feed.length > FEED_MAX) this.feed.splice(0, this.feed.length - FEED_MAX);
  }
}

function liveUntil(s: SessionRecord): number {
  return Math.min(s.idleExpiresAt, s.expiresAt);
}

function isLive(entry: SessionEntry, now: number): boolean {
  return entry.status === "active" && now < liveUntil(entry.record);
}
