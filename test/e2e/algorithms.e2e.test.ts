/**
 * The signing algorithms end to end. ES384: tokens issue, introspect, refresh, and verify with the published JWKS (a
 * P-384 key). HS256 (only with TESSERA_HS256_SECRET): tokens issue, refresh and introspect, in every process sharing
 * the secret; the JWKS publishes no symmetric key (no `k`, no kty `oct`), only asymmetric keys still retired from
 * before the switch; the secret is never stored; RotateKeys is FAILED_PRECONDITION; a sidecar says at start that it
 * cannot verify; without a secret, or with a short one, the start fails naming TESSERA_HS256_SECRET. MAC'd refresh
 * tokens (the default for asymmetric keys) and signed ones (TESSERA_REFRESH_TOKEN_MAC=false) refresh in either kind
 * of process on one store, and a MAC'd one never introspects as an access token.
 */
import { randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from "jose";
import { afterEach, describe, expect, inject, it } from "vitest";
import { KeyService, KeyState } from "../../gen/tessera/v1/key_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { InactiveReason, TokenType } from "../helpers/clients.js";
import { dumpUnder } from "../helpers/redis-dump.js";
import { redisScope, runMain, spawnAuthority, spawnSidecar, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const ISSUER = "https://algorithms.test";
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function start(env: Record<string, string>): Promise<StartedServer> {
  const srv = await startServer({ TESSERA_ISSUER: ISSUER, ...env });
  cleanups.push(() => srv.close());
  return srv;
}

function scope(): RedisScope {
  const s = redisScope(inject("redisUrl"), "algorithms");
  cleanups.push(() => s.cleanup());
  return s;
}

function clients(url: string) {
  const transport = createGrpcTransport({ baseUrl: url });
  return { tokens: createClient(TokenService, transport), keys: createClient(KeyService, transport) };
}

const jwksOf = async (url: string) => ((await (await fetch(`${url}/.well-known/jwks.json`)).json()) as { keys: JWK[] }).keys;

describe("ES384", () => {
  it("issues, introspects and refreshes; the JWKS publishes its P-384 key, with which jose verifies the tokens", async () => {
    const srv = await start({ TESSERA_SIGNING_ALG: "ES384" });
    const { tokens, keys } = clients(srv.url);
    const issued = await tokens.issue({ subject: "alice", audience: ["api"], scopes: ["read"] });
    const access = issued.tokens!.accessToken;
    expect(decodeProtectedHeader(access)).toMatchObject({ alg: "ES384", typ: "at+jwt" });
    expect(Buffer.from(access.slice(access.lastIndexOf(".") + 1), "base64url")).toHaveLength(96);
    expect(await tokens.introspect({ token: access })).toMatchObject({ active: true, subject: "alice" });
    const refreshed = await tokens.refresh({ refreshToken: issued.tokens!.refreshToken });
    expect((await tokens.introspect({ token: refreshed.tokens!.accessToken })).active).toBe(true);
    const published = await jwksOf(srv.url);
    expect(published).toEqual([expect.objectContaining({ kty: "EC", crv: "P-384", alg: "ES384", use: "sig" })]);
    expect((await keys.getJwks({})).keys.map((k) => k.crv)).toEqual(["P-384"]);
    const verified = await jwtVerify(access, createLocalJWKSet({ keys: published }), { issuer: ISSUER, audience: "api", algorithms: ["ES384"] });
    expect(verified.payload.sub).toBe("alice");
    expect((await keys.rotateKeys({ immediate: true })).key?.alg).toBe("ES384");
  });
});

describe("refresh tokens, MAC'd or signed (TESSERA_REFRESH_TOKEN_MAC)", () => {
  it("refresh across processes of either setting on one store; the MAC'd ones are HS256 and never access tokens", async () => {
    const s = scope();
    const signing = clients((await start({ ...s.env, TESSERA_REFRESH_TOKEN_MAC: "false" })).url);
    const macing = clients((await start(s.env)).url);
    const issued = await signing.tokens.issue({ subject: "alice", audience: ["api"] });
    expect(decodeProtectedHeader(issued.tokens!.refreshToken)).toMatchObject({ alg: "ES256", typ: "rt+jwt" });
    const next = await macing.tokens.refresh({ refreshToken: issued.tokens!.refreshToken });
    const mac = next.tokens!.refreshToken;
    expect(decodeProtectedHeader(mac)).toMatchObject({ alg: "HS256", typ: "rt+jwt", kid: decodeProtectedHeader(issued.tokens!.accessToken).kid });
    expect(decodeProtectedHeader(next.tokens!.accessToken).alg).toBe("ES256");
    expect(await signing.tokens.introspect({ token: mac, expectedType: TokenType.REFRESH })).toMatchObject({ active: true, subject: "alice" });
    expect(await signing.tokens.introspect({ token: mac, expectedType: TokenType.ACCESS })).toMatchObject({ active: false, inactiveReason: InactiveReason.WRONG_TYPE });
    const after = await signing.tokens.refresh({ refreshToken: mac });
    expect(decodeProtectedHeader(after.tokens!.refreshToken).alg).toBe("ES256");
    // The rotated-out MAC'd token comes back from another client: reuse, at either process.
    const reused = await macing.tokens.refresh({ refreshToken: mac, client: { deviceId: "other", userAgent: "x", ip: "192.0.2.9", platform: "web" } }).catch((e: unknown) => ConnectError.from(e));
    expect(reused).toMatchObject({ code: Code.Unauthenticated });
    expect((await macing.tokens.introspect({ token: after.tokens!.accessToken })).active).toBe(false);
  });
});

describe("HS256", () => {
  const secret = randomBytes(32);
  const hs = { TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET: secret.toString("base64") };

  it("issues, refreshes and introspects in every process with the secret; publishes no key; stores no secret; refuses RotateKeys", async () => {
    const s = scope();
    const one = await start({ ...s.env, ...hs });
    const two = await start({ ...s.env, ...hs });
    const a = clients(one.url);
    const b = clients(two.url);
    const issued = await a.tokens.issue({ subject: "alice", audience: ["api"] });
    const access = issued.tokens!.accessToken;
    expect(decodeProtectedHeader(access)).toMatchObject({ alg: "HS256", typ: "at+jwt" });
    expect(await b.tokens.introspect({ token: access })).toMatchObject({ active: true, subject: "alice" });
    const refreshed = await b.tokens.refresh({ refreshToken: issued.tokens!.refreshToken });
    expect((await a.tokens.introspect({ token: refreshed.tokens!.accessToken })).active).toBe(true);
    await a.tokens.revoke({ target: { case: "token", value: refreshed.tokens!.accessToken } });
    expect((await b.tokens.introspect({ token: refreshed.tokens!.accessToken })).active).toBe(false);
    // A token with the right kid but another secret's HMAC is a bad signature.
    const forged = `${access.slice(0, access.lastIndexOf("."))}.${randomBytes(32).toString("base64url")}`;
    expect((await a.tokens.introspect({ token: forged })).active).toBe(false);

    for (const srv of [one, two]) {
      const published = await jwksOf(srv.url);
      expect(published).toEqual([]);
      expect((await clients(srv.url).keys.getJwks({})).keys).toEqual([]);
    }
    const listed = (await a.keys.listKeys({})).keys;
    expect(listed.map((k) => [k.alg, k.state, k.signing])).toEqual([["HS256", KeyState.CURRENT, true]]);
    const refused = await a.keys.rotateKeys({}).catch((e: unknown) => ConnectError.from(e));
    expect(refused).toMatchObject({ code: Code.FailedPrecondition });
    expect((refused as ConnectError).rawMessage).toContain("TESSERA_HS256_SECRET");

    const dump = (await dumpUnder(inject("redisUrl"), s.prefix)).join("\n");
    for (const form of ["base64", "base64url", "hex"] as const) expect(dump).not.toContain(secret.toString(form));
    expect(dump).not.toMatch(/"k":/);
  });

  it("a switch from ES256: the JWKS lists only the ES256 key, retired, and its tokens stay valid", async () => {
    const s = scope();
    const es = await start(s.env);
    const old = (await clients(es.url).tokens.issue({ subject: "alice", audience: ["api"] })).tokens!.accessToken;
    const esKid = decodeProtectedHeader(old).kid;
    await es.close();
    const srv = await start({ ...s.env, ...hs });
    const published = await jwksOf(srv.url);
    expect(published.map((k) => [k.kid, k.kty])).toEqual([[esKid, "EC"]]);
    for (const k of published) {
      expect(k).not.toHaveProperty("k");
      expect(k.kty).not.toBe("oct");
    }
    const { tokens, keys } = clients(srv.url);
    expect((await tokens.introspect({ token: old })).active).toBe(true);
    expect(decodeProtectedHeader((await tokens.issue({ subject: "bob" })).tokens!.accessToken).alg).toBe("HS256");
    expect((await keys.listKeys({})).keys.map((k) => [k.alg, k.state])).toEqual([
      ["HS256", KeyState.CURRENT],
      ["ES256", KeyState.RETIRED],
    ]);
  });

  it("a sidecar of an HS256 authority says at start that it cannot verify its tokens", async () => {
    const authority = await spawnAuthority({ TESSERA_ISSUER: ISSUER, ...hs });
    cleanups.push(() => authority.kill());
    const sidecar = await spawnSidecar({ TESSERA_AUTHORITY_URL: authority.url, TESSERA_ISSUER: ISSUER });
    cleanups.push(() => sidecar.kill());
    const warning = () => sidecar.stdout.find((l) => l.includes("JWKS holds no key"));
    await until(warning, 10_000, "the sidecar's warning");
    expect(JSON.parse(warning()!)).toMatchObject({ level: "warn", authority: expect.stringContaining(authority.url) });
  }, 30_000);

  it.each([
    ["without a secret", { TESSERA_SIGNING_ALG: "HS256" }],
    ["with a secret under 32 bytes", { TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET: randomBytes(31).toString("base64") }],
  ])("%s, the start fails naming TESSERA_HS256_SECRET (exit 2)", async (_what, env) => {
    const run = runMain({ TESSERA_LISTEN: "127.0.0.1:0", ...env });
    expect(await run.exited).toBe(2);
    const stderr = run.stderr.join("\n");
    expect(stderr).toMatch(/configuration error: TESSERA_HS256_SECRET: /);
    const given = (env as Record<string, string>).TESSERA_HS256_SECRET;
    if (given) expect(stderr).not.toContain(given);
  });
});
