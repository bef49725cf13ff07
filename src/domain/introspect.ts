/**
 * Introspect's rules, in one place: the token's signature, type, issuer, audience and time claims, then what the
 * revocation state says of it (its jti, its session, the session's end and, for a refresh token, whether it is still
 * the session's current one), then the subject's risk score. The authority asks its store for the state; a sidecar
 * asks its copy of the revocation feed (src/sidecar/revocations.ts). Both answer through this class, so they agree.
 */
import { NO_CONTEXT, riskFacts, riskScore, type AuditContext } from "./audit.js";
import type { AuditSink } from "./audit-trail.js";
import type { Clock } from "./clock.js";
import { isLive } from "./sessions.js";
import type { SessionReader } from "./store.js";
import type { RejectReason, TokenKind, TokenVerifier, VerifiedToken } from "./tokens.js";

export type InactiveReason = RejectReason | "revoked" | "session_ended" | "rotated";

export type Introspection =
  /** riskScore: the subject's suspicious-activity score (audit.ts), from the same state read. */
  | { active: true; token: VerifiedToken; riskScore: number }
  | { active: false; reason: InactiveReason };

export interface IntrospectorDeps {
  verifier: TokenVerifier;
  state: Pick<SessionReader, "tokenState">;
  clock: Clock;
  /** The window of the risk score (TESSERA_RISK_WINDOW); default 15 minutes. */
  riskWindowMs?: number | undefined;
  /** Where a revoked token presented is recorded. */
  audit?: AuditSink | undefined;
}

const DEFAULT_RISK_WINDOW_MS = 15 * 60_000;

export class Introspector {
  private readonly riskWindowMs: number;
  private readonly audit: AuditSink;

  constructor(private readonly deps: IntrospectorDeps) {
    this.riskWindowMs = deps.riskWindowMs ?? DEFAULT_RISK_WINDOW_MS;
    this.audit = deps.audit ?? { record: () => {} };
  }

  /**
   * `ctx` may be given as a function: it is needed only when a revoked token is presented, so the hot path need not
   * build it.
   */
  async introspect(
    token: string,
    expected: TokenKind,
    audience?: string,
    ctx: AuditContext | (() => AuditContext) = NO_CONTEXT,
  ): Promise<Introspection> {
    const now = this.deps.clock.now();
    const v = await this.deps.verifier.verify(token, expected, now, audience);
    if (!v.ok) return { active: false, reason: v.reason };
    const t = v.token;
    const state = await this.deps.state.tokenState({ subject: t.subject, sessionId: t.sessionId, jti: t.jti });
    const s = state.session;
    if (state.jtiRevoked || s?.status === "revoked") {
      this.audit.record({
        type: "revoked_token_presented",
        context: typeof ctx === "function" ? ctx() : ctx,
        subject: t.subject,
        sessionId: t.sessionId,
        detail: { rpc: "Introspect", token_type: t.kind, jti: t.jti },
      });
      return { active: false, reason: "revoked" };
    }
    if (!s || !isLive(s.status, s, now)) return { active: false, reason: "session_ended" };
    if (expected === "refresh" && s.currentJti !== t.jti) return { active: false, reason: "rotated" };
    // No observations (always so at a sidecar, and for most subjects): a score of 0 without assessing anything.
    const score = state.risk === undefined ? 0 : riskScore(riskFacts(state.risk, now, this.riskWindowMs));
    return { active: true, token: t, riskScore: score };
  }
}
