/** JWKS over HTTP and KeyService, checked the way a resource server would: jose's createRemoteJWKSet. */
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService, KeyState } from "../../gen/tessera/v1/key_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { startServer, type StartedServer } from "../helpers/server.js";

describe("JWKS", () => {
  let srv: StartedServer;
  let jwksUrl: URL;
  beforeAll(async () => {
    srv = await startServer({ TESSERA_ISSUER: "https://auth.test" });
    jwksUrl = new URL(`${srv.url}/.well-known/jwks.json`);
  });
  afterAll(() => srv.close());

  it("verifies issued tokens with jose's createRemoteJWKSet, also after a key rotation", async () => {
    const transport = createGrpcTransport({ baseUrl: srv.url });
    const tokens = createClient(TokenService, transport);
    const keys = createClient(KeyService, transport);
    const jwks = createRemoteJWKSet(jwksUrl, { cooldownDuration: 0 });

    const before = await tokens.issue({ subject: "rs-user", audience: ["orders"], scopes: ["read"] });
    const verified = await jwtVerify(before.tokens!.accessToken, jwks, {
      issuer: "https://auth.test",
      audience: "orders",
      typ: "at+jwt",
      algorithms: ["ES256"],
    });
    expect(verified.payload).toMatchObject({ sub: "rs-user", scope: "read", sid: before.sessionId });

    // By default a new key is published first and signs only after TESSERA_KEY_PREPUBLISH; immediate switches now.
    const { key: waiting } = await keys.rotateKeys({});
    const meanwhile = await tokens.issue({ subject: "rs-user", audience: ["orders"] });
    expect(decodeProtectedHeader(meanwhile.tokens!.accessToken).kid).toBe(decodeProtectedHeader(before.tokens!.accessToken).kid);
    expect((await keys.listKeys({})).keys.find((k) => k.kid === waiting!.kid)).toMatchObject({ signing: false, state: KeyState.NEXT });
    const { key } = await keys.rotateKeys({ immediate: true });
    const after = await tokens.issue({ subject: "rs-user", audience: ["orders"] });
    expect(decodeProtectedHeader(after.tokens!.accessToken).kid).toBe(key!.kid);
    expect(key).toMatchObject({ signing: true, state: KeyState.CURRENT });
    // The remote set refetches on an unknown kid; both the old and the new key verify.
    for (const t of [after, before]) {
      const r = await jwtVerify(t.tokens!.accessToken, jwks, { issuer: "https://auth.test", typ: "at+jwt" });
      expect(r.payload.sub).toBe("rs-user");
    }
    // KeyService.GetJwks serves the same set as the HTTP endpoint.
    const http = (await (await fetch(jwksUrl)).json()) as { keys: Array<{ kid: string }> };
    const grpc = await keys.getJwks({});
    expect(grpc.keys.map((k) => k.kid).sort()).toEqual(http.keys.map((k) => k.kid).sort());
    expect(http.keys).toHaveLength(3); // the first (retired), the waiting one (next), the immediate one (current)
  });

  it("serves public keys only, with Cache-Control and an ETag that answers 304", async () => {
    const res = await fetch(jwksUrl);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/jwk-set+json");
    expect(res.headers.get("cache-control")).toMatch(/max-age=\d+/);
    const etag = res.headers.get("etag");
    expect(etag).toMatch(/^".+"$/);
    const body = (await res.json()) as { keys: Array<Record<string, unknown>> };
    for (const k of body.keys) {
      expect(k).toMatchObject({ use: "sig", alg: "ES256", kty: "EC" });
      expect(Object.keys(k)).not.toContain("d");
    }
    const again = await fetch(jwksUrl, { headers: { "if-none-match": etag! } });
    expect(again.status).toBe(304);
  });
});
