/**
 * tessera.v1.TokenService: validates at the edge, calls the authority, converts the answer. A caller with `subjects`
 * (src/api/auth.ts requireSubject) may Issue, Refresh and Revoke only for its subjects; Introspect is not scoped.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import {
  IntrospectResponseSchema,
  IssueResponseSchema,
  RefreshResponseSchema,
  RevokeResponseSchema,
  TokenService,
  type IntrospectRequest,
  type IntrospectResponse,
} from "../../gen/tessera/v1/token_pb.js";
import type { AuditContext } from "../domain/audit.js";
import type { Authority, RevokeResult } from "../domain/authority.js";
import type { Introspection } from "../domain/introspect.js";
import type { TokenKind, VerifiedToken } from "../domain/tokens.js";
import { TesseraError } from "../domain/errors.js";
import { auditContext } from "./audit-context.js";
import { callerHolds, requireSubject, scopeOf } from "./auth.js";
import { INACTIVE_REASON, TOKEN_TYPE, jsonObject, tokenPair } from "./convert.js";
import { invalidArgument } from "./errors.js";
import { NO_LIMITS, type RequestLimits } from "./rate-limit.js";
import * as v from "./validate.js";

export interface TokenServiceDeps {
  authority: Authority;
  maxTokenLength: number;
  onIntrospect?: (result: string) => void;
  /** Per-subject and per-IP limits and the refresh lockout (src/api/rate-limit.ts); absent: none. */
  limits?: RequestLimits;
}

export function tokenService({
  authority,
  maxTokenLength,
  onIntrospect,
  limits = NO_LIMITS,
}: TokenServiceDeps): ServiceImpl<typeof TokenService> {
  return {
    async issue(req, ctx) {
      const input = {
        subject: v.subject("subject", req.subject),
        audience: v.audience("audience", req.audience),
        scopes: v.scopes("scopes", req.scopes),
        claims: v.claims("extra_claims", req.extraClaims),
        sensitiveClaims: v.claims("sensitive_claims", req.sensitiveClaims),
        client: v.client("client", req.client),
        accessTtlMs: v.ttl("access_ttl", req.accessTtl),
        refreshTtlMs: v.ttl("refresh_ttl", req.refreshTtl),
      };
      requireSubject(ctx, input.subject, input.client); // before the limits: no budget of another tenant's subject spent
      await limits.issue(input.subject, input.client.ip);
      const result = await authority.issue(input, auditContext(ctx.values, input.client));
      return create(IssueResponseSchema, { tokens: tokenPair(result.pair), sessionId: result.sessionId });
    },

    async refresh(req, ctx) {
      const token = v.token("refresh_token", req.refreshToken, maxTokenLength);
      const client = v.client("client", req.client);
      const audit = auditContext(ctx.values, client);
      // The token's subject is known once its signature checked out (admit), before anything changes; a token of a
      // subject outside the caller's is refused there, before the lockout counters are read or counted.
      const scoped = scopeOf(ctx) !== undefined;
      const result = await limits.refresh((admit) =>
        authority.refresh(
          token,
          client,
          {
            admit: scoped
              ? (holder) => {
                  requireSubject(ctx, holder.subject, client);
                  return admit(holder);
                }
              : admit,
          },
          audit,
        ),
      );
      return create(RefreshResponseSchema, { tokens: tokenPair(result.pair), sessionId: result.sessionId });
    },

    async revoke(req, ctx) {
      const reason = v.text("reason", req.reason, v.LIMITS.reason);
      const audit = auditContext(ctx.values);
      const scope = scopeOf(ctx);
      let result: RevokeResult;
      switch (req.target.case) {
        case "token": {
          const token = v.token("token", req.target.value, maxTokenLength);
          // Scoped: the verified token's subject, checked before anything changes.
          const opts = scope && { admit: async (holder: { subject: string }) => requireSubject(ctx, holder.subject) };
          result = await authority.revokeToken(token, reason, audit, opts);
          break;
        }
        case "sessionId": {
          const sessionId = v.sessionId("session_id", req.target.value);
          // Scoped: the session's subject, looked up; an unknown (or ended) session is refused just like another
          // tenant's, so the answer does not say whether it exists. Unscoped: unknown is OK with 0, as ever.
          if (scope) {
            const subject = await sessionSubject(authority, sessionId);
            if (subject === null) throw scope.refuse(ctx, { why: "no such live session" });
            requireSubject(ctx, subject);
          }
          result = await authority.revokeSession(sessionId, reason, audit);
          break;
        }
        case "subject": {
          const subject = v.subject("subject", req.target.value);
          requireSubject(ctx, subject);
          result = await authority.revokeSubject(subject, reason, audit);
          break;
        }
        default:
          throw invalidArgument("target", "set one of token, session_id or subject");
      }
      return create(RevokeResponseSchema, result);
    },

    introspect: introspectHandler({
      introspect: (token, kind, audience, audit) => authority.introspect(token, kind, audience, audit),
      sensitiveClaims: (token) => authority.sensitiveClaims(token),
      maxTokenLength,
      onIntrospect,
    }),
  };
}

/** The subject of a live session, or null if there is none by that id (GetSession's NOT_FOUND). */
async function sessionSubject(authority: Authority, sessionId: string): Promise<string | null> {
  try {
    return (await authority.getSession(sessionId)).subject;
  } catch (err) {
    if (err instanceof TesseraError && err.code === "not_found") return null;
    throw err;
  }
}

export interface IntrospectDeps {
  /** The answer for a token: the authority's (its store), or a sidecar's (its copy of the revocation feed). */
  /** `ctx`: the call's audit context, built only if the answer needs it (a revoked token presented). */
  introspect(token: string, kind: TokenKind, audience: string, ctx: () => AuditContext): Promise<Introspection>;
  /**
   * An active access token's sensitive claims, decrypted, for a caller holding `introspect.sensitive`: the
   * authority's (it holds the claims key). Absent (a sidecar): never in the answer, whoever asks.
   */
  sensitiveClaims?: ((token: VerifiedToken) => Promise<Record<string, unknown> | undefined>) | undefined;
  maxTokenLength: number;
  onIntrospect?: ((result: string) => void) | undefined;
}

/** Introspect's edge: the request checked, the answer converted. The authority and the sidecar serve it alike. */
export function introspectHandler(deps: IntrospectDeps): (req: IntrospectRequest, ctx: HandlerContext) => Promise<IntrospectResponse> {
  const { maxTokenLength, onIntrospect } = deps;
  // The answer for an active token is the same on every call while its risk score is 0 and no sensitive claims go with
  // it: built once per verified token (the verifier hands out one frozen object per token), frozen, and reused.
  const answers = new WeakMap<VerifiedToken, IntrospectResponse>();
  const inactive = new Map<InactiveReasonName, IntrospectResponse>();
  return async (req, ctx) => {
    const token = v.token("token", req.token, maxTokenLength);
    const audience = v.text("audience", req.audience, v.LIMITS.audience);
    const r = await deps.introspect(token, tokenKind(req.expectedType), audience, () => auditContext(ctx.values));
    onIntrospect?.(r.active ? "active" : r.reason);
    if (!r.active) {
      let answer = inactive.get(r.reason);
      if (answer === undefined) {
        const reason = INACTIVE_REASON[r.reason];
        answer = Object.freeze(create(IntrospectResponseSchema, { active: false, inactiveReason: reason }));
        inactive.set(r.reason, answer);
      }
      return answer;
    }
    const t = r.token;
    const reusable = r.riskScore === 0 && t.sealed === undefined;
    const known = reusable ? answers.get(t) : undefined;
    if (known !== undefined) return known;
    // Only to a caller holding introspect.sensitive; to others the same answer without them. Never in `claims`: the
    // JWE's claim is reserved (tokens.ts RESERVED_CLAIMS), so the verifier leaves it out of them.
    const sensitive =
      t.sealed !== undefined && deps.sensitiveClaims !== undefined && callerHolds(ctx, "introspect.sensitive")
        ? await deps.sensitiveClaims(t)
        : undefined;
    const answer = create(IntrospectResponseSchema, {
      active: true,
      subject: t.subject,
      scopes: t.scopes,
      audience: t.audience,
      issuer: t.issuer,
      expiresAt: timestampFromMs(t.expiresAt),
      issuedAt: timestampFromMs(t.issuedAt),
      notBefore: timestampFromMs(t.notBefore),
      jti: t.jti,
      sessionId: t.sessionId,
      tokenType: TOKEN_TYPE[t.kind],
      claims: jsonObject(t.claims),
      riskScore: r.riskScore,
      sensitiveClaims: sensitive === undefined ? undefined : jsonObject(sensitive),
    });
    if (!reusable) return answer;
    // Frozen: handed out again and again, so nobody may change it (and the lean path encodes it once).
    answers.set(t, Object.freeze(answer));
    return answer;
  };
}

type InactiveReasonName = Extract<Introspection, { active: false }>["reason"];

/** The token type Introspect expects: unset means ACCESS. */
export function tokenKind(expected: TokenType): TokenKind {
  if (expected === TokenType.UNSPECIFIED || expected === TokenType.ACCESS) return "access";
  if (expected === TokenType.REFRESH) return "refresh";
  throw invalidArgument("expected_type", "unknown token type");
}
