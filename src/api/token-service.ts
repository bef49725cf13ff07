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
import { INACTIVE_REASON, TOKEN_TYPE, jsonObject, tokenPair } from "./convert.js";
import { invalidArgument } from "./errors.js";
import * as v from "./validate.js";

export interface TokenServiceDeps {
  authority: Authority;
  maxTokenLength: number;
  onIntrospect?: (result: string) => void;
}

export function tokenService({ authority, maxTokenLength, onIntrospect }: TokenServiceDeps): ServiceImpl<typeof TokenService> {
  return {
    async issue(req) {
      const result = await authority.issue({
        subject: v.subject("subject", req.subject),
        audience: v.audience("audience", req.audience),
        scopes: v.scopes("scopes", req.scopes),
        claims: v.claims("extra_claims", req.extraClaims),
        client: v.client("client", req.client),
        accessTtlMs: v.ttl("access_ttl", req.accessTtl),
        refreshTtlMs: v.ttl("refresh_ttl", req.refreshTtl),
      });
      return create(IssueResponseSchema, { tokens: tokenPair(result.pair), sessionId: result.sessionId });
    },

    async refresh(req) {
      const result = await authority.refresh(
        v.token("refresh_token", req.refreshToken, maxTokenLength),
        v.client("client", req.client),
      );
      return create(RefreshResponseSchema, { tokens: tokenPair(result.pair), sessionId: result.sessionId });
    },

    async revoke(req) {
      const reason = v.text("reason", req.reason, v.LIMITS.reason);
      let result: RevokeResult;
      switch (req.target.case) {
        case "token":
          result = await authority.revokeToken(v.token("token", req.target.value, maxTokenLength), reason);
          break;
        case "sessionId":
          result = await authority.revokeSession(v.sessionId("session_id", req.target.value), reason);
          break;
        case "subject":
          result = await authority.revokeSubject(v.subject("subject", req.target.value), reason);
          break;
        default:
          throw invalidArgument("target", "set one of token, session_id or subject");
      }
      return create(RevokeResponseSchema, result);
    },

    async introspect(req) {
      const token = v.token("token", req.token, maxTokenLength);
      const audience = v.text("audience", req.audience, v.LIMITS.audience);
      let kind: "access" | "refresh";
      if (req.expectedType === TokenType.UNSPECIFIED || req.expectedType === TokenType.ACCESS) kind = "access";
      else if (req.expectedType === TokenType.REFRESH) kind = "refresh";
      else throw invalidArgument("expected_type", "unknown token type");
      const r = await authority.introspect(token, kind, audience);
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
      });
    },
  };
}
