/**
 * The token authority: issue, refresh (rotation, reuse detection, grace window), revoke, introspect, sessions.
 * Pure TypeScript and jose; state goes through the Store interface, time through the Clock.
 */
import type { Clock } from "./clock.js";
import { TesseraError } from "./errors.js";
import { digest, randomId } from "./ids.js";
import type { ClientInfo, IssuedPair, SessionRecord, Store } from "./store.js";
import {
  RESERVED_CLAIMS,
  TYP,
  type Grant,
  type RejectReason,
  type TokenCodec,
  type TokenKind,
  type VerifiedToken,
} from "./tokens.js";

export interface AuthorityConfig {
  defaultAudience: string[];
  accessTtlMs: number;
  accessTtlMaxMs: number;
  refreshTtlMs: number;
  refreshTtlMaxMs: number;
  refreshIdleTtlMs: number;
  refreshGraceMs: number;
  maxSessions: number;
  clockSkewMs: number;
}

export interface IssueInput {
  subject: string;
  audience: string[];
  scopes: string[];
  claims: Record<string, unknown>;
  client: ClientInfo;
  accessTtlMs?: number;
  refreshTtlMs?: number;
}

export interface IssueResult {
  pair: IssuedPair;
  sessionId: string;
  /** Sessions revoked to stay within the per-subject limit. */
  evicted: string[];
}

export type InactiveReason = RejectReason | "revoked" | "session_ended" | "rotated";

export type Introspection = { active: true; token: VerifiedToken } | { active: false; reason: InactiveReason };

export interface RevokeResult {
  sessionsRevoked: number;
  tokenRevoked: boolean;
}

/** Things worth telling operators about; the composition root wires them to logs and metrics. */
export type AuthorityEvent =
  | { type: "refresh_reuse"; subject: string; sessionId: string }
  | { type: "session_evicted"; subject: string; sessionId: string };

export interface AuthorityDeps {
  store: Store;
  codec: TokenCodec;
  clock: Clock;
  config: AuthorityConfig;
  onEvent?: (event: AuthorityEvent) => void;
}

export class Authority {
  private readonly store: Store;
  private readonly codec: TokenCodec;
  private readonly clock: Clock;
  private readonly cfg: AuthorityConfig;
  private readonly emit: (event: AuthorityEvent) => void;

  constructor(deps: AuthorityDeps) {
    this.store = deps.store;
    this.codec = deps.codec;
    this.clock = deps.clock;
    this.cfg = deps.config;
    this.emit = deps.onEvent ?? (() => {});
  }

  /** How long a revoked session is remembered, so that its access tokens read as revoked until they expire. */
  private get retentionMs(): number {
    return this.cfg.accessTtlMaxMs + this.cfg.clockSkewMs;
  }

  async issue(input: IssueInput): Promise<IssueResult> {
    const accessTtlMs = ttl(input.accessTtlMs, this.cfg.accessTtlMs, this.cfg.accessTtlMaxMs, "access_ttl");
    const refreshTtlMs = ttl(input.refreshTtlMs, this.cfg.refreshTtlMs, this.cfg.refreshTtlMaxMs, "refresh_ttl");
    for (const name of Object.keys(input.claims)) {
      if (RESERVED_CLAIMS.has(name)) {
        throw new TesseraError("invalid_argument", `extra claim "${name}" is reserved`, { field: "extra_claims" });
      }
    }
    const now = this.clock.now();
    const sessionId = randomId();
    const refreshJti = randomId();
    const expiresAt = floorToSecond(now + refreshTtlMs);
    const grant: Grant = {
      audience: input.audience.length > 0 ? [...input.audience] : [...this.cfg.defaultAudience],
      scopes: [...input.scopes],
      claims: input.claims,
      accessTtlMs,
    };
    const pair = await this.signPair(input.subject, sessionId, refreshJti, grant, now, expiresAt);
    const session: SessionRecord = {
      id: sessionId,
      subject: input.subject,
      client: { ...input.client },
      createdAt: now,
      lastUsedAt: now,
      idleExpiresAt: Math.min(now + this.cfg.refreshIdleTtlMs, expiresAt),
      expiresAt,
      currentJti: refreshJti,
    };
    const { evicted } = await this.store.createSession(session, {
      maxSessions: this.cfg.maxSessions,
      now,
      retentionMs: this.retentionMs,
    });
    for (const id of evicted) this.emit({ type: "session_evicted", subject: input.subject, sessionId: id });
    return { pair, sessionId, evicted };
  }

  async refresh(refreshToken: string, client: ClientInfo): Promise<{ pair: IssuedPair; sessionId: string }> {
    const now = this.clock.now();
    const v = await this.codec.verify(refreshToken, "refresh", now);
    if (!v.ok) throw new TesseraError("unauthenticated", "invalid refresh token", { cause: v.reason });
    const t = v.token;
    const nextJti = randomId();
    const nextPair = await this.signPair(t.subject, t.sessionId, nextJti, t.grant!, now, t.expiresAt);
    const result = await this.store.rotateRefresh({
      subject: t.subject,
      sessionId: t.sessionId,
      presentedJti: t.jti,
      nextJti,
      nextPair,
      clientFingerprint: fingerprint(client),
      now,
      graceMs: this.cfg.refreshGraceMs,
      idleTtlMs: this.cfg.refreshIdleTtlMs,
      retentionMs: this.retentionMs,
    });
    switch (result.outcome) {
      case "rotated":
        return { pair: nextPair, sessionId: t.sessionId };
      case "replayed":
        return { pair: result.pair, sessionId: t.sessionId };
      case "reused":
        this.emit({ type: "refresh_reuse", subject: t.subject, sessionId: t.sessionId });
        throw new TesseraError("unauthenticated", "refresh token reuse detected; session revoked");
      case "ended":
        throw new TesseraError("unauthenticated", "session has ended", { cause: result.why });
    }
  }

  async introspect(token: string, expected: TokenKind, audience?: string): Promise<Introspection> {
    const now = this.clock.now();
    const v = await this.codec.verify(token, expected, now, audience);
    if (!v.ok) return { active: false, reason: v.reason };
    const t = v.token;
    const state = await this.store.tokenState({ subject: t.subject, sessionId: t.sessionId, jti: t.jti });
    const s = state.session;
    if (state.jtiRevoked) return { active: false, reason: "revoked" };
    if (!s) return { active: false, reason: "session_ended" };
    if (s.status === "revoked") return { active: false, reason: "revoked" };
    if (now >= Math.min(s.idleExpiresAt, s.expiresAt)) return { active: false, reason: "session_ended" };
    if (expected === "refresh" && s.currentJti !== t.jti) return { active: false, reason: "rotated" };
    return { active: true, token: t };
  }

  /**
   * Revokes a token: an access token until its own expiry, a refresh token by ending its session. A token that is
   * already expired needs nothing; one that is not ours (bad signature, malformed, unknown key) is INVALID_ARGUMENT.
   */
  async revokeToken(token: string, reason: string): Promise<RevokeResult> {
    const now = this.clock.now();
    const kind = tokenKindOf(token);
    const v = await this.codec.verify(token, kind, now);
    if (!v.ok) {
      if (v.reason === "expired") return { sessionsRevoked: 0, tokenRevoked: false };
      throw new TesseraError("invalid_argument", "token is not a valid Tessera token", {
        cause: v.reason,
        field: "token",
      });
    }
    const t = v.token;
    if (kind === "refresh") return this.revokeSession(t.sessionId, reason, t.subject);
    const tokenRevoked = await this.store.revokeToken({
      subject: t.subject,
      jti: t.jti,
      expiresAt: t.expiresAt + this.cfg.clockSkewMs,
      now,
      reason,
    });
    return { sessionsRevoked: 0, tokenRevoked };
  }

  /** Ends a session. Unknown or already ended sessions are not an error: revocation is idempotent. */
  async revokeSession(sessionId: string, reason: string, subject?: string): Promise<RevokeResult> {
    const done = await this.store.revokeSession({
      sessionId,
      now: this.clock.now(),
      retentionMs: this.retentionMs,
      reason,
      ...(subject === undefined ? {} : { subject }),
    });
    return { sessionsRevoked: done ? 1 : 0, tokenRevoked: false };
  }

  /** Logout everywhere: every session and every token of the subject issued so far. */
  async revokeSubject(subject: string, reason: string): Promise<RevokeResult> {
    const n = await this.store.revokeSubject({ subject, now: this.clock.now(), retentionMs: this.retentionMs, reason });
    return { sessionsRevoked: n, tokenRevoked: false };
  }

  listSessions(subject: string): Promise<SessionRecord[]> {
    return this.store.listSessions(subject, this.clock.now());
  }

  async getSession(sessionId: string): Promise<SessionRecord> {
    const s = await this.store.getSession(sessionId, this.clock.now());
    if (!s) throw new TesseraError("not_found", "session not found");
    return s;
  }

  private async signPair(
    subject: string,
    sessionId: string,
    refreshJti: string,
    grant: Grant,
    now: number,
    refreshExpiresAt: number,
  ): Promise<IssuedPair> {
    const accessExpiresAt = floorToSecond(Math.min(now + grant.accessTtlMs, refreshExpiresAt));
    const [accessToken, refreshToken] = await Promise.all([
      this.codec.signAccess({ subject, sessionId, jti: randomId(), grant, now, expiresAt: accessExpiresAt }),
      this.codec.signRefresh({ subject, sessionId, jti: refreshJti, grant, now, expiresAt: refreshExpiresAt }),
    ]);
    return { accessToken, refreshToken, accessExpiresAt, refreshExpiresAt };
  }
}

/** Same device and same user agent: what tells a client's own retry from someone else's use of its token. */
export function fingerprint(client: ClientInfo): string {
  return digest(client.deviceId, client.userAgent);
}

function ttl(requested: number | undefined, fallback: number, max: number, field: string): number {
  if (requested === undefined) return fallback;
  if (!Number.isFinite(requested) || requested < 1000) {
    throw new TesseraError("invalid_argument", `${field} must be at least 1s`, { field });
  }
  if (requested > max) throw new TesseraError("invalid_argument", `${field} exceeds the maximum of ${max / 1000}s`, { field });
  return requested;
}

function floorToSecond(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

/** Which type a token claims to be (from its header), for Revoke; verification then holds it to that type. */
function tokenKindOf(token: string): TokenKind {
  try {
    const header = JSON.parse(Buffer.from(token.split(".", 1)[0] ?? "", "base64url").toString("utf8"));
    return header?.typ === TYP.refresh ? "refresh" : "access";
  } catch {
    return "access";
  }
}
