/** tessera.v1.KeyService: the public key set and rotation. */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { JWK } from "jose";
import {
  GetJwksResponseSchema,
  JsonWebKeySchema,
  KeyInfoSchema,
  KeyService,
  ListKeysResponseSchema,
  RotateKeysResponseSchema,
  type KeyInfo,
} from "../../gen/tessera/v1/key_pb.js";
import type { AuditSink } from "../domain/audit-trail.js";
import type { KeyRing, LoadedKey } from "../domain/keys.js";
import { auditContext } from "./audit-context.js";

export function keyService({ keys, audit }: { keys: KeyRing; audit?: AuditSink | undefined }): ServiceImpl<typeof KeyService> {
  const info = (k: LoadedKey): KeyInfo =>
    create(KeyInfoSchema, {
      kid: k.kid,
      alg: k.alg,
      createdAt: timestampFromMs(k.createdAt),
      signing: k.kid === keys.signingKey().kid,
    });
  return {
    async getJwks() {
      return create(GetJwksResponseSchema, { keys: keys.publicKeys().map(jwk) });
    },
    async listKeys() {
      return create(ListKeysResponseSchema, { keys: keys.list().map(info) });
    },
    async rotateKeys(_req, ctx) {
      const key = await keys.rotate();
      audit?.record({ type: "keys_rotated", context: auditContext(ctx.values), detail: { kid: key.kid, alg: key.alg } });
      return create(RotateKeysResponseSchema, { key: info(key) });
    },
  };
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
