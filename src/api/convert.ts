/** protobuf <-> domain shapes. */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ClientInfoSchema, TokenPairSchema, TokenType, type ClientInfo as ClientInfoMsg, type TokenPair } from "../../gen/tessera/v1/common_pb.js";
import { SessionSchema, type Session } from "../../gen/tessera/v1/session_pb.js";
import { InactiveReason } from "../../gen/tessera/v1/token_pb.js";
import type { InactiveReason as DomainReason } from "../domain/authority.js";
import type { ClientInfo, IssuedPair, SessionRecord } from "../domain/store.js";
import type { TokenKind } from "../domain/tokens.js";

export function tokenPair(p: IssuedPair): TokenPair {
  return create(TokenPairSchema, {
    accessToken: p.accessToken,
    refreshToken: p.refreshToken,
    tokenType: "Bearer",
    accessExpiresAt: timestampFromMs(p.accessExpiresAt),
    refreshExpiresAt: timestampFromMs(p.refreshExpiresAt),
  });
}

export function clientInfo(c: ClientInfo): ClientInfoMsg {
  return create(ClientInfoSchema, c);
}

export function session(s: SessionRecord): Session {
  return create(SessionSchema, {
    sessionId: s.id,
    subject: s.subject,
    client: clientInfo(s.client),
    createdAt: timestampFromMs(s.createdAt),
    lastUsedAt: timestampFromMs(s.lastUsedAt),
    expiresAt: timestampFromMs(s.expiresAt),
    idleExpiresAt: timestampFromMs(s.idleExpiresAt),
  });
}

export const TOKEN_TYPE: Record<TokenKind, TokenType> = {
  access: TokenType.ACCESS,
  refresh: TokenType.REFRESH,
};

export const INACTIVE_REASON: Record<DomainReason, InactiveReason> = {
  expired: InactiveReason.EXPIRED,
  revoked: InactiveReason.REVOKED,
  malformed: InactiveReason.MALFORMED,
  bad_signature: InactiveReason.BAD_SIGNATURE,
  wrong_type: InactiveReason.WRONG_TYPE,
  wrong_audience: InactiveReason.WRONG_AUDIENCE,
  not_yet_valid: InactiveReason.NOT_YET_VALID,
  unknown_key: InactiveReason.UNKNOWN_KEY,
  wrong_issuer: InactiveReason.WRONG_ISSUER,
  key_revoked: InactiveReason.REVOKED, // the key that signed it was revoked (KeyService.RevokeKey)
  session_ended: InactiveReason.SESSION_ENDED,
  rotated: InactiveReason.ROTATED,
};

export function jsonObject(value: Record<string, unknown>): JsonObject {
  return value as JsonObject;
}
