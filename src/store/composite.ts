/**
 * A Store made of one part per concern. MemoryStore and RedisStore extend it with their parts and their lifecycle
 * (ping, close); the domain never sees it, only the narrow interface each consumer needs.
 */
import type { AuditBounds, AuditEvent, AuditPage, AuditQuery, RiskObservations } from "../domain/audit.js";
import type {
  AuditStore,
  FeedPage,
  KeyStore,
  RevocationFeed,
  RotateInput,
  RotateResult,
  SessionRecord,
  SessionStore,
  Store,
  StoredKey,
  TokenState,
} from "../domain/store.js";
import type { StoredPrivateKey } from "../domain/key-encryption.js";
import type { StatsSnapshot, StatsStore } from "../domain/stats.js";

export interface StoreParts {
  keys: KeyStore;
  sessions: SessionStore;
  feed: RevocationFeed;
  audit: AuditStore;
  /** Fed by the audit part's appendAudit; read here. */
  stats: StatsStore;
}

/** Delegates every operation to its part (plain methods, so wrappers and test doubles can replace any of them). */
export abstract class CompositeStore implements Store {
  constructor(private readonly part: StoreParts) {}

  abstract ping(): Promise<void>;
  abstract close(): Promise<void>;

  listKeys(): Promise<StoredKey[]> {
    return this.part.keys.listKeys();
  }
  addKey(key: StoredKey, opts: { expectNewest: string | null; drop?: readonly string[] }): Promise<{ added: boolean; keys: StoredKey[] }> {
    return this.part.keys.addKey(key, opts);
  }

  revokeKey(q: { kid: string; at: number; until: number; reason: string }): Promise<boolean> {
    return this.part.keys.revokeKey(q);
  }
  replacePrivateKey(q: { kid: string; from: StoredPrivateKey; to: StoredPrivateKey }): Promise<boolean> {
    return this.part.keys.replacePrivateKey(q);
  }

  createSession(
    session: SessionRecord,
    opts: { maxSessions: number; now: number; retentionMs: number },
  ): Promise<{ evicted: string[] }> {
    return this.part.sessions.createSession(session, opts);
  }
  rotateRefresh(input: RotateInput): Promise<RotateResult> {
    return this.part.sessions.rotateRefresh(input);
  }
  tokenState(q: { subject: string; sessionId: string; jti: string }): Promise<TokenState> {
    return this.part.sessions.tokenState(q);
  }
  revokeToken(q: { subject: string; jti: string; expiresAt: number; now: number; reason: string }): Promise<boolean> {
    return this.part.sessions.revokeToken(q);
  }
  revokeSession(q: { sessionId: string; subject?: string; now: number; retentionMs: number; reason: string }): Promise<boolean> {
    return this.part.sessions.revokeSession(q);
  }
  revokeSubject(q: { subject: string; now: number; retentionMs: number; reason: string }): Promise<string[]> {
    return this.part.sessions.revokeSubject(q);
  }
  listSessions(subject: string, now: number): Promise<SessionRecord[]> {
    return this.part.sessions.listSessions(subject, now);
  }
  getSession(sessionId: string, now: number): Promise<SessionRecord | null> {
    return this.part.sessions.getSession(sessionId, now);
  }

  revocations(cursor: string | null, limit: number): Promise<FeedPage> {
    return this.part.feed.revocations(cursor, limit);
  }
  subscribe(listener: () => void): () => void {
    return this.part.feed.subscribe(listener);
  }

  appendAudit(events: readonly AuditEvent[], bounds: AuditBounds): Promise<{ subject: string; risk: RiskObservations }[]> {
    return this.part.audit.appendAudit(events, bounds);
  }
  listAudit(query: AuditQuery): Promise<AuditPage> {
    return this.part.audit.listAudit(query);
  }
  riskOf(subject: string): Promise<RiskObservations | null> {
    return this.part.audit.riskOf(subject);
  }
  claimRiskAlert(q: { subject: string; now: number; windowMs: number }): Promise<boolean> {
    return this.part.audit.claimRiskAlert(q);
  }

  readStats(q: { fromHour: number; toHour: number; now: number }): Promise<StatsSnapshot> {
    return this.part.stats.readStats(q);
  }
}
