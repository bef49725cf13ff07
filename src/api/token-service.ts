/** tessera.v1.TokenService: validates at the edge, calls the authority, converts the answer. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import {
  IntrospectResponseSchema,
  IssueResponseSchema,
  RefreshResponseSchema,
  RevokeResponseSchema,
  TokenService,
} from "../../gen/tessera/v1/token_pb.js";
import type { Authority, RevokeResult } from "../domain/authority.js";
import { auditContext } from "./audit-context.js";
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
        client: v.client("client", req.client),
        accessTtlMs: v.ttl("access_ttl", req.accessTtl),
        refreshTtlMs: v.ttl("refresh_ttl", req.refreshTtl),
      };
      await limits.issue(input.subject, input.client.ip);
      const result = await authority.issue(input, auditContext(ctx.values, input.client));
      return create(IssueResponseSchema, { tokens: tokenPair(result.pair), sessionId: result.sessionId });
    },

    async refresh(req, ctx) {
      const token = v.token("refresh_token", req.refreshToken, maxTokenLength);
      const client = v.client("client", req.client);
      const audit = auditContext(ctx.values, client);
      const result = await limits.refresh((admit) => authority.refresh(token, client, { admit }, audit));
      return create(RefreshResponseSchema, { tokens: tokenPair(result.pair), sessionId: result.sessionId });
    },

    async revoke(req, ctx) {
      const reason = v.text("reason", req.reason, v.LIMITS.reason);
      const audit = auditContext(ctx.values);
      let result: RevokeResult;
      switch (req.target.case) {
        case "token":
          result = await authority.revokeToken(v.token("token", req.target.value, maxTokenLength), reason, audit);
          break;
        case "sessionId":
          result = await authority.revokeSession(v.sessionId("session_id", req.target.value), reason, audit);
          break;
        case "subject":
          result = await authority.revokeSubject(v.subject("subject", req.target.value), reason, audit);
          break;
        default:
          throw invalidArgument("target", "set one of token, session_id or subject");
      }
      return create(RevokeResponseSchema, result);
    },

    async introspect(req, ctx) {
      const token = v.token("token", req.token, maxTokenLength);
      const audience = v.text("audience", req.audience, v.LIMITS.audience);
      let kind: "access" | "refresh";
      if (req.expectedType === TokenType.UNSPECIFIED || req.expectedType === TokenType.ACCESS) kind = "access";
      else if (req.expectedType === TokenType.REFRESH) kind = "refresh";
      else throw invalidArgument("expected_type", "unknown token type");
      const r = await authority.introspect(token, kind, audience, auditContext(ctx.values));
      onIntrospect?.(r.active ? "active" : r.reason);
      if (!r.active) return create(IntrospectResponseSchema, { active: false, inactiveReason: INACTIVE_REASON[r.reason] });
      const t = r.token;
      return create(IntrospectResponseSchema, {
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
      });
    },
  };
}
