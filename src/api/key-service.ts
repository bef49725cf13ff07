/** tessera.v1.KeyService: the public key set, its lifecycle, rotation and revocation. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { JWK } from "jose";
import {
  GetJwksResponseSchema,
  JsonWebKeySchema,
  KeyInfoSchema,
  KeyService,
  KeyState,
  ListKeysResponseSchema,
  RevokeKeyResponseSchema,
  RotateKeysResponseSchema,
  type KeyInfo,
} from "../../gen/tessera/v1/key_pb.js";
import type { AuditSink } from "../domain/audit-trail.js";
import type { KeyRing, KeyStatus, LoadedKey } from "../domain/keys.js";
import { auditContext } from "./audit-context.js";
import { invalidArgument } from "./errors.js";
import * as v from "./validate.js";

const STATE: Record<KeyStatus["state"], KeyState> = {
  next: KeyState.NEXT,
  current: KeyState.CURRENT,
  retired: KeyState.RETIRED,
  removed: KeyState.REMOVED,
  revoked: KeyState.REVOKED,
};
const KID = /^[A-Za-z0-9_-]{1,128}$/;

export function keyService({ keys, audit }: { keys: KeyRing; audit?: AuditSink | undefined }): ServiceImpl<typeof KeyService> {
  // A file's or an HS256 secret's keys can all be revoked: then nothing signs, and ListKeys still answers.
  const signingKid = (): string | undefined => {
    try {
      return keys.signingKey().kid;
    } catch {
      return undefined;
    }
  };
  const info = (kid: string): KeyInfo => {
    const k = keys.list().find((key) => key.kid === kid);
    return k ? keyInfo(k, signingKid()) : create(KeyInfoSchema, { kid });
  };
  return {
    async getJwks() {
      return create(GetJwksResponseSchema, { keys: keys.publicKeys().map(jwk) });
    },
    async listKeys() {
      const signing = signingKid();
      return create(ListKeysResponseSchema, { keys: keys.list().map((k) => keyInfo(k, signing)) });
    },
    async rotateKeys(req, ctx) {
      const key = await keys.rotate({ immediate: req.immediate });
      const detail = { kid: key.kid, alg: key.alg, immediate: req.immediate };
      audit?.record({ type: "keys_rotated", context: auditContext(ctx.values), detail });
      return create(RotateKeysResponseSchema, { key: info(key.kid) });
    },
    async revokeKey(req, ctx) {
      if (!KID.test(req.kid)) throw invalidArgument("kid", "not a key id");
      const reason = v.text("reason", req.reason, v.LIMITS.reason);
      const { revoked, signing } = await keys.revoke(req.kid, reason || "key revoked");
      if (!revoked && !keys.isRevoked(req.kid)) throw invalidArgument("kid", "no such key in the key set");
      audit?.record({
        type: "key_revoked",
        context: auditContext(ctx.values),
        detail: { kid: req.kid, reason, signing_kid: signing?.kid ?? "", revoked: revoked ? 1 : 0 },
      });
      // No signing key left (a file's or an HS256 secret's key revoked, nothing to take over): `signing` unset.
      return create(RevokeKeyResponseSchema, { revoked: info(req.kid), signing: signing && info(signing.kid) });
    },
  };
}

function keyInfo(k: LoadedKey & KeyStatus, signing: string | undefined): KeyInfo {
  const at = (ms: number | undefined) => (ms === undefined ? undefined : timestampFromMs(ms));
  return create(KeyInfoSchema, {
    kid: k.kid,
    alg: k.alg,
    createdAt: timestampFromMs(k.createdAt),
    signing: k.kid === signing,
    state: STATE[k.state],
    // 0: a key of TESSERA_SIGNING_KEYS_FILE without tessera_activate_at (it signs by its place in the file).
    activatesAt: k.activateAt > 0 ? at(k.activateAt) : undefined,
    retiredAt: at(k.retiredAt),
    removedAt: at(k.removedAt),
    revokedAt: at(k.revokedAt),
  });
}

function jwk(k: JWK) {
  const s = (v: unknown) => (typeof v === "string" ? v : "");
  return create(JsonWebKeySchema, {
    kty: s(k.kty),
    kid: s(k.kid),
    alg: s(k.alg),
    use: s(k.use),
    crv: s(k.crv),
    x: s(k.x),
    y: s(k.y),
    n: s(k.n),
    e: s(k.e),
  });
}
