import { createClient, createRouterTransport } from "@connectrpc/connect";
import { importJWK, jwtVerify, decodeProtectedHeader } from "jose";
import { describe, expect, it } from "vitest";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { routes, services } from "../../src/api/routes.js";
import { KeyRing } from "../../src/domain/keys.js";
import { issueFor, makeAuthority } from "../helpers/authority.js";

async function setup() {
  const f = await makeAuthority();
  const transport = createRouterTransport(routes(services({ authority: f.authority, keys: f.keys, maxTokenLength: 8192 })));
  return { ...f, client: createClient(KeyService, transport) };
}

describe("KeyService", () => {
  it("GetJwks returns public keys only, which verify issued tokens", async () => {
    const { client, ...f } = await setup();
    const { pair } = await issueFor(f);
    const { keys } = await client.getJwks({});
    expect(keys).toHaveLength(1);
    const k = keys[0]!;
    expect(k).toMatchObject({ kty: "EC", crv: "P-256", alg: "ES256", use: "sig", kid: f.keys.signingKey().kid });
    expect(JSON.stringify(k)).not.toMatch(/"d"/);
    const pub = await importJWK({ kty: k.kty, crv: k.crv, x: k.x, y: k.y }, "ES256");
    const { payload } = await jwtVerify(pair.accessToken, pub, {
      typ: "at+jwt",
      currentDate: new Date(f.clock.now()),
    });
    expect(payload.sub).toBe("alice");
  });

  it("RotateKeys makes a new signing key; old tokens still verify; other processes pick it up", async () => {
    const { client, ...f } = await setup();
    const before = await issueFor(f);
    const oldKid = f.keys.signingKey().kid;
    const { key } = await client.rotateKeys({});
    expect(key?.kid).not.toBe(oldKid);
    expect(key?.signing).toBe(true);
    const listed = await client.listKeys({});
    expect(listed.keys.map((k) => [k.kid, k.signing])).toEqual([
      [key!.kid, true],
      [oldKid, false],
    ]);
    const after = await issueFor(f);
    expect(decodeProtectedHeader(after.pair.accessToken).kid).toBe(key!.kid);
    expect((await f.authority.introspect(before.pair.accessToken, "access")).active).toBe(true);
    expect((await f.authority.introspect(after.pair.accessToken, "access")).active).toBe(true);

    // A second process on the same store: verifies the new kid at once, signs with it after a reload.
    const other = new KeyRing(f.store, "ES256", f.clock);
    await other.init();
    expect(other.signingKey().kid).toBe(key!.kid);
  });
});
