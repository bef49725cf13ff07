/**
 * The token authority: issue, refresh (rotation, reuse detection, grace window), revoke, introspect, sessions.
 * Pure TypeScript and jose; state goes through the SessionStore interface, time through the Clock.
 */
import { NO_CONTEXT, type AuditContext, type AuditType } from "./audit.js";
import type { AuditInput, AuditSink } from "./audit-trail.js";
import type { Clock } from "./clock.js";
import { TesseraError } from "./errors.js";
import { digest, newSessionId, randomId } from "./ids.js";
import { Introspector, type Introspection } from "./introspect.js";
import type { ClaimsCipher } from "./sealed-claims.js";
import type { ClientInfo, IssuedPair, SessionRecord, SessionStore } from "./store.js";
import {
  RESERVED_CLAIMS,
  TYP,
  type Grant,
  type PreparedToken,
  type SignInput,
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
  /** The window of the risk score Introspect reports (TESSERA_RISK_WINDOW); default 15 minutes. */
  riskWindowMs?: number;
}

export interface IssueInput {
  subject: string;
  audience: string[];
  scopes: string[];
  claims: Record<string, unknown>;
  /** Claims only Tessera may read: sealed into the tokens (sealed-claims.ts). Absent or empty: none. */
  sensitiveClaims?: Record<string, unknown>;
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

export type { InactiveReason, Introspection } from "./introspect.js";

export interface RevokeResult {
  sessionsRevoked: number;
  tokenRevoked: boolean;
}

export interface RefreshOptions {
  /**
   * Called once the refresh token's signature, type, issuer and times check out, before anything is signed or the
   * store is touched, with the subject and session the token names. Throwing refuses the refresh with that error (the
   * API layer uses it for lockout and per-subject limits).
   */
  admit?: (holder: { subject: string; sessionId: string }) => Promise<void>;
}

/** Things worth telling operators about; the composition root wires them to logs and metrics. */
export type AuthorityEvent =
  | { type: "refresh_reuse"; subject: string; sessionId: string }
  | { type: "session_evicted"; subject: string; sessionId: string };

export interface AuthorityDeps {
  store: SessionStore;
  codec: TokenCodec;
  clock: Clock;
  config: AuthorityConfig;
  onEvent?: (event: AuthorityEvent) => void;
  /** The security audit trail; every state change and refusal is recorded there (never blocking). */
  audit?: AuditSink;
  /** Seals and opens sensitive claims (TESSERA_CLAIMS_KEY); absent: Issue refuses sensitive claims. */
  claims?: ClaimsCipher | undefined;
}

export class Authority {
  private readonly store: SessionStore;
  private readonly codec: TokenCodec;
  private readonly clock: Clock;
  private readonly cfg: AuthorityConfig;
  private readonly emit: (event: AuthorityEvent) => void;
  private readonly audit: AuditSink;
  private readonly introspector: Introspector;
  private readonly claims: ClaimsCipher | undefined;

  constructor(deps: AuthorityDeps) {
    this.store = deps.store;
    this.codec = deps.codec;
    this.clock = deps.clock;
    this.cfg = deps.config;
    this.emit = deps.onEvent ?? (() => {});
    this.audit = deps.audit ?? { record: () => {} };
    this.claims = deps.claims;
    this.introspector = new Introspector({
      verifier: deps.codec,
      state: deps.store,
      clock: deps.clock,
      riskWindowMs: deps.config.riskWindowMs,
      audit: this.audit,
    });
  }

  /** How long a revoked session is remembered, so that its access tokens read as revoked until they expire. */
  private get retentionMs(): number {
    return this.cfg.accessTtlMaxMs + this.cfg.clockSkewMs;
  }

  async issue(input: IssueInput, ctx: AuditContext = NO_CONTEXT): Promise<IssueResult> {
    const accessTtlMs = ttl(input.accessTtlMs, this.cfg.accessTtlMs, this.cfg.accessTtlMaxMs, "access_ttl");
    const refreshTtlMs = ttl(input.refreshTtlMs, this.cfg.refreshTtlMs, this.cfg.refreshTtlMaxMs, "refresh_ttl");
    for (const name of Object.keys(input.claims)) {
      if (RESERVED_CLAIMS.has(name)) {
        throw new TesseraError("invalid_argument", `extra claim "${name}" is reserved`, { field: "extra_claims" });
      }
    }
    const sensitive = input.sensitiveClaims ?? {};
    for (const name of Object.keys(sensitive)) {
      if (RESERVED_CLAIMS.has(name)) {
        throw new TesseraError("invalid_argument", `sensitive claim "${name}" is reserved`, { field: "sensitive_claims" });
      }
      if (Object.hasOwn(input.claims, name)) {
        throw new TesseraError("invalid_argument", `sensitive claim "${name}" is also an extra claim`, { field: "sensitive_claims" });
      }
    }
    const sealed = Object.keys(sensitive).length > 0 ? this.cipher("sensitive_claims need").seal(sensitive) : undefined;
    const now = this.clock.now();
    const sessionId = newSessionId(input.subject);
    const refreshJti = randomId();
    const expiresAt = floorToSecond(now + refreshTtlMs);
    const grant: Grant = {
      audience: input.audience.length > 0 ? [...input.audience] : [...this.cfg.defaultAudience],
      scopes: [...input.scopes],
      claims: input.claims,
      accessTtlMs,
    };
    if (sealed !== undefined) grant.sealed = sealed;
    const plan = this.planPair(input.subject, sessionId, refreshJti, grant, now, expiresAt);
    const parts = sealed === undefined ? "scopes, audiences or extra claims" : "scopes, audiences, extra claims or sensitive claims";
    const tooLong = (length: number, max: number) =>
      new TesseraError(
        "invalid_argument",
        `the tokens would be ${length} characters, over TESSERA_MAX_TOKEN_LENGTH (${max}): fewer or shorter ${parts}`,
        { field: largestPart(input.subject, grant) },
      );
    this.checkLength(plan, tooLong);
    // Signing (on the signing thread) and opening the session (in the store) overlap: neither needs the other, and
    // one-subject Issue answers about 5 % more calls a second so (docs/performance.md). checkLength is exact for every
    // key Tessera makes, so a signature then fails only when signing itself breaks; for a key of a type it does not
    // know, the tokens are signed (and their lengths checked) before the store is touched.
    const signing = this.signPlanned(plan, tooLong);
    if (!plan.access.token.exact || !plan.refresh.token.exact) await signing;
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
    const opening = this.store.createSession(session, {
      maxSessions: this.cfg.maxSessions,
      now,
      retentionMs: this.retentionMs,
    });
    const [signed, opened] = await Promise.allSettled([signing, opening]);
    if (opened.status === "rejected") throw opened.reason;
    const { evicted } = opened.value;
    const subject = input.subject;
    const recordEvictions = () => {
      for (const id of evicted) {
        this.emit({ type: "session_evicted", subject, sessionId: id });
        this.audit.record({ type: "session_evicted", context: ctx, subject, sessionId: id, detail: { new_session: sessionId } });
      }
    };
    if (signed.status === "rejected") {
      // The session was opened for tokens that were never made: ended again (what it evicted stays evicted, and is
      // recorded so), and the caller hears why signing failed. If the store fails to end it too, it holds no token
      // anyone has and ends by itself at its idle expiry: the signing failure is still what the caller hears.
      recordEvictions();
      await this.endSession(sessionId, subject, "signing_failed", ctx, "issue").catch(() => undefined);
      throw signed.reason;
    }
    const pair = signed.value;
    // platform and expiries feed the usage statistics (domain/stats.ts): the live-session index. Member by member: a
    // spread and then members is V8's slow path (tokens.ts ownMembers).
    const detail: Record<string, string> = {};
    if (grant.scopes.length > 0) detail.scopes = grant.scopes.join(" ");
    detail.platform = session.client.platform;
    detail.expires_at = String(session.expiresAt);
    detail.idle_expires_at = String(session.idleExpiresAt);
    this.audit.record({ type: "token_issued", context: ctx, subject, sessionId, detail });
    recordEvictions();
    return { pair, sessionId, evicted };
  }

  async refresh(
    refreshToken: string,
    client: ClientInfo,
    opts: RefreshOptions = {},
    ctx: AuditContext = NO_CONTEXT,
  ): Promise<{ pair: IssuedPair; sessionId: string }> {
    const now = this.clock.now();
    const v = await this.codec.verify(refreshToken, "refresh", now);
    if (!v.ok) {
      this.audit.record({ type: "refresh_failed", context: ctx, detail: { reason: v.reason } });
      throw new TesseraError("unauthenticated", "invalid refresh token", { cause: v.reason, reason: "REFRESH_TOKEN_INVALID" });
    }
    const t = v.token;
    const about = { context: ctx, subject: t.subject, sessionId: t.sessionId };
    const nextJti = randomId();
    // Sensitive claims go on sealed: the same JWE under the current claims key, sealed again when the previous key
    // sealed it. No configured key opens it: FAILED_PRECONDITION, before admit and before anything is rotated (the
    // token refreshes once the key is back).
    const grant = this.successorGrant(t.grant!, about);
    const plan = this.planPair(t.subject, t.sessionId, nextJti, grant, now, t.expiresAt);
    // The successor carries the same grant, but not necessarily in the same length: TESSERA_MAX_TOKEN_LENGTH may have
    // been lowered, or TESSERA_SIGNING_ALG changed, since the session began. Refused before admit (no budget spent,
    // no failure counted: the holder did nothing wrong) and before anything is signed or rotated.
    const tooLong = (length: number, max: number) =>
      new TesseraError(
        "invalid_argument",
        `the successor tokens would be ${length} characters, over TESSERA_MAX_TOKEN_LENGTH (${max}): ` +
          "this session cannot be refreshed; issue a new one with fewer or shorter scopes, audiences or extra claims",
        { field: "refresh_token" },
      );
    this.checkLength(plan, tooLong);
    await opts.admit?.({ subject: t.subject, sessionId: t.sessionId });
    const nextPair = await this.signPlanned(plan, tooLong);
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
    // Written out rather than `{ type, ...about, detail }` (a little cheaper: 140 against 180 ns, measured alone).
    const record = (type: AuditType, detail: NonNullable<AuditInput["detail"]>) =>
      this.audit.record({ type, context: ctx, subject: t.subject, sessionId: t.sessionId, detail });
    switch (result.outcome) {
      case "rotated":
        record("token_refreshed", { idle_expires_at: result.session.idleExpiresAt });
        return { pair: nextPair, sessionId: t.sessionId };
      case "replayed":
        record("token_refreshed", { grace_replay: true });
        return { pair: result.pair, sessionId: t.sessionId };
      case "reused":
        this.emit({ type: "refresh_reuse", subject: t.subject, sessionId: t.sessionId });
        record("refresh_reuse_detected", { jti: t.jti, action: "session revoked" });
        throw new TesseraError("unauthenticated", "refresh token reuse detected; session revoked", { reason: "REFRESH_TOKEN_REUSED" });
      case "ended":
        if (result.why === "revoked") record("revoked_token_presented", { rpc: "Refresh", token_type: "refresh", jti: t.jti });
        else record("refresh_failed", { reason: `session_${result.why}` });
        throw new TesseraError("unauthenticated", "session has ended", { cause: result.why, reason: "SESSION_ENDED" });
    }
  }

  introspect(
    token: string,
    expected: TokenKind,
    audience?: string,
    ctx: AuditContext | (() => AuditContext) = NO_CONTEXT,
  ): Promise<Introspection> {
    return this.introspector.introspect(token, expected, audience, ctx);
  }

  /**
   * An access token's sensitive claims, decrypted (for Introspect, to a caller holding `introspect.sensitive`);
   * undefined when it carries none. FAILED_PRECONDITION when no configured claims key sealed them.
   */
  async sensitiveClaims(token: VerifiedToken): Promise<Record<string, unknown> | undefined> {
    if (token.sealed === undefined) return undefined;
    return this.cipher("the token's sensitive claims need").open(token.sealed);
  }

  /** The grant a successor is signed from: the refresh token's, its sensitive claims resealed under the current key. */
  private successorGrant(grant: Grant, about: Pick<AuditInput, "context" | "subject" | "sessionId">): Grant {
    if (grant.sealed === undefined) return grant;
    try {
      return { ...grant, sealed: this.cipher("this session's sensitive claims need").reseal(grant.sealed) };
    } catch (err) {
      if (err instanceof TesseraError) {
        this.audit.record({ type: "refresh_failed", ...about, detail: { reason: "sensitive_claims_unreadable" } });
      }
      throw err;
    }
  }

  /** The claims cipher, or FAILED_PRECONDITION naming the variable to set. */
  private cipher(what: string): ClaimsCipher {
    if (this.claims === undefined) {
      throw new TesseraError("failed_precondition", `${what} a claims key: set TESSERA_CLAIMS_KEY (or TESSERA_CLAIMS_KEY_FILE)`);
    }
    return this.claims;
  }

  /**
   * Revokes a token: an access token until its own expiry, a refresh token by ending its session. A token that is
   * already expired needs nothing; one that is not ours (bad signature, malformed, unknown key) is INVALID_ARGUMENT.
   * `opts.admit`, as Refresh's: called once the token verified, before anything changes; throwing refuses the revocation.
   */
  async revokeToken(token: string, reason: string, ctx: AuditContext = NO_CONTEXT, opts: RefreshOptions = {}): Promise<RevokeResult> {
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
    await opts.admit?.({ subject: t.subject, sessionId: t.sessionId });
    if (kind === "refresh") return this.endSession(t.sessionId, t.subject, reason, ctx, "refresh_token");
    const tokenRevoked = await this.store.revokeToken({
      subject: t.subject,
      jti: t.jti,
      expiresAt: t.expiresAt + this.cfg.clockSkewMs,
      now,
      reason,
    });
    this.audit.record({
      type: "token_revoked",
      context: ctx,
      subject: t.subject,
      sessionId: t.sessionId,
      detail: { jti: t.jti, reason, revoked: tokenRevoked ? 1 : 0 },
    });
    return { sessionsRevoked: 0, tokenRevoked };
  }

  /**
   * Ends a session. Unknown or already ended sessions are not an error: revocation is idempotent. The session is
   * looked up first so the audit event names its subject.
   */
  async revokeSession(sessionId: string, reason: string, ctx: AuditContext = NO_CONTEXT): Promise<RevokeResult> {
    const live = await this.store.getSession(sessionId, this.clock.now());
    return this.endSession(sessionId, live?.subject ?? null, reason, ctx, "session_id");
  }

  /** Logout everywhere: every session and every token of the subject issued so far. */
  async revokeSubject(subject: string, reason: string, ctx: AuditContext = NO_CONTEXT): Promise<RevokeResult> {
    const ended = await this.store.revokeSubject({ subject, now: this.clock.now(), retentionMs: this.retentionMs, reason });
    // The ids go to the statistics (which end exactly these sessions), not into the logged or stored event.
    this.audit.record({ type: "subject_revoked", context: ctx, subject, detail: { reason, sessions: ended.length }, endedSessions: ended });
    return { sessionsRevoked: ended.length, tokenRevoked: false };
  }

  /** Revokes one session of a known subject (null: none is live, nothing to do) and records it. */
  private async endSession(
    sessionId: string,
    subject: string | null,
    reason: string,
    ctx: AuditContext,
    via: "session_id" | "refresh_token" | "issue",
  ): Promise<RevokeResult> {
    const now = this.clock.now();
    const done =
      subject !== null &&
      (await this.store.revokeSession({ sessionId, subject, now, retentionMs: this.retentionMs, reason }));
    const event: AuditInput = { type: "session_revoked", context: ctx, sessionId, detail: { reason, via, sessions: done ? 1 : 0 } };
    this.audit.record(subject === null ? event : { ...event, subject });
    return { sessionsRevoked: done ? 1 : 0, tokenRevoked: false };
  }

  listSessions(subject: string): Promise<SessionRecord[]> {
    return this.store.listSessions(subject, this.clock.now());
  }

  async getSession(sessionId: string): Promise<SessionRecord> {
    const s = await this.store.getSession(sessionId, this.clock.now());
    if (!s) throw new TesseraError("not_found", "session not found");
    return s;
  }

  /** What a new pair will be signed from: the access and refresh token's inputs for one grant. */
  private planPair(
    subject: string,
    sessionId: string,
    refreshJti: string,
    grant: Grant,
    now: number,
    refreshExpiresAt: number,
  ): PairPlan {
    // Never past the session's end as it stands after this call (its idle expiry counts from now): a session that
    // ends by itself then never makes one of its access tokens dead before the token's own expiry, so a verifier
    // that knows only revocations (a sidecar) judges it as the authority does.
    const sessionEnd = Math.min(now + this.cfg.refreshIdleTtlMs, refreshExpiresAt);
    const accessExpiresAt = floorToSecond(Math.min(now + grant.accessTtlMs, sessionEnd));
    const access: SignInput = { subject, sessionId, jti: randomId(), grant, now, expiresAt: accessExpiresAt };
    const refresh: SignInput = { subject, sessionId, jti: refreshJti, grant, now, expiresAt: refreshExpiresAt };
    return {
      access: { token: this.codec.prepare("access", access), expiresAt: accessExpiresAt },
      refresh: { token: this.codec.prepare("refresh", refresh), expiresAt: refreshExpiresAt },
    };
  }

  /**
   * Refuses, before anything is signed or stored, a pair whose longer token would exceed TESSERA_MAX_TOKEN_LENGTH:
   * Introspect, Refresh and Revoke refuse such a token, so it must never be issued. (The refresh token carries the
   * grant as well, so it is usually the longer one.)
   */
  private checkLength(plan: PairPlan, tooLong: (length: number, max: number) => TesseraError): void {
    const max = this.codec.maxTokenLength;
    const length = Math.max(plan.access.token.length, plan.refresh.token.length);
    if (length > max) throw tooLong(length, max);
  }

  private async signPlanned(plan: PairPlan, tooLong: (length: number, max: number) => TesseraError): Promise<IssuedPair> {
    const [accessToken, refreshToken] = await Promise.all([plan.access.token.sign(), plan.refresh.token.sign()]);
    // checkLength is exact for every key Tessera makes; this holds the rule for any other (whose tokens Issue and
    // Refresh sign before they touch the store).
    const length = Math.max(accessToken.length, refreshToken.length);
    if (length > this.codec.maxTokenLength) throw tooLong(length, this.codec.maxTokenLength);
    return { accessToken, refreshToken, accessExpiresAt: plan.access.expiresAt, refreshExpiresAt: plan.refresh.expiresAt };
  }
}

/** Both tokens of a pair, each serialised once: checkLength reads their lengths, signPlanned signs them. */
interface PairPlan {
  access: { token: PreparedToken; expiresAt: number };
  refresh: { token: PreparedToken; expiresAt: number };
}

/**
 * The request field that takes the most room in the tokens (by its JSON bytes): what a BadRequest names when an Issue
 * would make tokens that are too long. The audience may be TESSERA_AUDIENCE's default.
 */
function largestPart(subject: string, grant: Grant): string {
  const parts: [string, unknown][] = [
    ["extra_claims", grant.claims],
    ["sensitive_claims", grant.sealed ?? ""],
    ["scopes", grant.scopes.join(" ")],
    ["audience", grant.audience],
    ["subject", subject],
  ];
  let best = parts[0]!;
  let bestBytes = -1;
  for (const part of parts) {
    const bytes = Buffer.byteLength(JSON.stringify(part[1]), "utf8");
    if (bytes > bestBytes) [best, bestBytes] = [part, bytes];
  }
  return best[0];
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
