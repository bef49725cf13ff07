/**
 * Signing keys at rest, on a real Redis: with TESSERA_KEY_ENCRYPTION_KEY a dump of every key and value under the prefix
 * holds no private key material while tokens sign and verify; the KEK set for the first time seals the keys stored in
 * plain; rotating the KEK (PREVIOUS=old, KEY=new, restart, drop PREVIOUS) keeps every token valid; a KEK that opens
 * nothing (or none) refuses to start, naming the variable, and makes no key. Without a KEK on Redis: a warning at
 * start; on the memory store: none.
 */
import { KeyObject, randomBytes } from "node:crypto";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createLocalJWKSet, jwtVerify, type JWK } from "jose";
import { afterEach, describe, expect, inject, it } from "vitest";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { kekId, type SealedPrivateKey } from "../../src/domain/key-encryption.js";
import { createRedisClient, RedisStore } from "../../src/store/redis.js";
import { dumpUnder, privateKeyMaterial } from "../helpers/redis-dump.js";
import { redisScope, runMain, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";

const ISSUER = "https://keys-at-rest.test";
const A = randomBytes(32);
const B = randomBytes(32);
const b64 = (b: Buffer) => b.toString("base64");

const scopes: RedisScope[] = [];
const servers: StartedServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const s of scopes.splice(0)) await s.cleanup();
});

function scope(): RedisScope {
  const s = redisScope(inject("redisUrl"), "keys-at-rest");
  scopes.push(s);
  return s;
}

async function start(env: Record<string, string>): Promise<StartedServer> {
  const srv = await startServer({ TESSERA_ISSUER: ISSUER, ...env });
  servers.push(srv);
  return srv;
}

function clients(srv: StartedServer) {
  const transport = createGrpcTransport({ baseUrl: srv.url });
  return { tokens: createClient(TokenService, transport), keys: createClient(KeyService, transport) };
}

/** The private parts of the keys as the store holds them. */
async function storedPrivateParts(s: RedisScope): Promise<Array<SealedPrivateKey | JWK | undefined>> {
  const store = new RedisStore(createRedisClient(inject("redisUrl"), { commandTimeoutMs: 2000 }), { prefix: s.prefix });
  try {
    await store.ping();
    return (await store.listKeys()).map((k) => k.privateJwk);
  } finally {
    await store.close();
  }
}

/** The `d` of every private key the app signs or has signed with, as the app holds it in memory. */
function privateScalars(srv: StartedServer): string[] {
  return srv.app.keys.list().map((k) => (KeyObject.from(k.privateKey as never).export({ format: "jwk" }) as JWK).d!);
}

const active = async (srv: StartedServer, token: string) => (await clients(srv).tokens.introspect({ token })).active;
const warnsUnencrypted = (srv: StartedServer) => srv.logs.some((l) => l.level === "warn" && /unencrypted/.test(String(l.msg)));

describe("with a key-encryption key on Redis", () => {
  it("a dump of every key and value under the prefix holds no private key, while tokens sign and verify", async () => {
    const s = scope();
    const srv = await start({ ...s.env, TESSERA_KEY_ENCRYPTION_KEY: b64(A) });
    const { tokens, keys } = clients(srv);
    const first = await tokens.issue({ subject: "alice", audience: ["api"], scopes: ["read"] });
    await keys.rotateKeys({ immediate: true });
    const second = await tokens.issue({ subject: "bob", audience: ["api"] });
    const refreshed = await tokens.refresh({ refreshToken: second.tokens!.refreshToken });
    await tokens.revoke({ target: { case: "token", value: refreshed.tokens!.accessToken } });
    await keys.rotateKeys({}); // a third key, waiting to sign
    await srv.app.audit.flush();

    // Tokens of both keys verify: at Tessera, and with the published JWKS.
    expect(await active(srv, first.tokens!.accessToken)).toBe(true);
    expect(await active(srv, second.tokens!.accessToken)).toBe(true);
    const jwks = createLocalJWKSet((await (await fetch(`${srv.url}/.well-known/jwks.json`)).json()) as { keys: JWK[] });
    for (const t of [first.tokens!.accessToken, second.tokens!.accessToken]) {
      await expect(jwtVerify(t, jwks, { issuer: ISSUER, audience: "api" })).resolves.toBeDefined();
    }

    const dump = await dumpUnder(inject("redisUrl"), s.prefix);
    expect(dump.length).toBeGreaterThan(10);
    expect(privateKeyMaterial(dump)).toEqual([]);
    const text = dump.join("\n");
    const scalars = privateScalars(srv);
    expect(scalars).toHaveLength(3);
    for (const d of scalars) expect(text).not.toContain(d);
    expect(text).not.toContain(b64(A));
    // What is there instead: each key's private part sealed under this KEK.
    expect(await storedPrivateParts(s)).toEqual(
      Array.from({ length: 3 }, () => ({ enc: "A256GCM", kek: kekId(A), iv: expect.any(String), ct: expect.any(String), tag: expect.any(String) })),
    );
    expect(warnsUnencrypted(srv)).toBe(false);
  });

  it("(the same search finds the keys in the dump of a store without a KEK, which warns at start; the memory store does not warn)", async () => {
    const s = scope();
    const srv = await start(s.env);
    const dump = await dumpUnder(inject("redisUrl"), s.prefix);
    expect(privateKeyMaterial(dump).length).toBeGreaterThan(0);
    expect(dump.join("\n")).toContain(privateScalars(srv)[0]);
    expect(warnsUnencrypted(srv)).toBe(true);
    expect(srv.logs.find((l) => l.level === "warn" && /unencrypted/.test(String(l.msg)))?.msg).toContain("TESSERA_KEY_ENCRYPTION_KEY");
    const memory = await start({});
    expect(warnsUnencrypted(memory)).toBe(false);
  });
});

describe("the KEK's life on one Redis, process after process", () => {
  it("set for the first time it seals the plain keys; rotated (PREVIOUS=old, KEY=new, restart, drop PREVIOUS) every token stays valid", async () => {
    const s = scope();
    // No KEK yet: keys in plain.
    let srv = await start(s.env);
    const t1 = (await clients(srv).tokens.issue({ subject: "alice" })).tokens!.accessToken;
    await srv.close();
    expect((await storedPrivateParts(s)).every((p) => p !== undefined && "d" in p)).toBe(true);

    // KEK A set: sealed at start; a rotation adds a key sealed under A.
    srv = await start({ ...s.env, TESSERA_KEY_ENCRYPTION_KEY: b64(A) });
    expect(await active(srv, t1)).toBe(true);
    await clients(srv).keys.rotateKeys({ immediate: true });
    const t2 = (await clients(srv).tokens.issue({ subject: "bob" })).tokens!.accessToken;
    await srv.close();
    expect((await storedPrivateParts(s)).map((p) => (p as SealedPrivateKey).kek)).toEqual([kekId(A), kekId(A)]);

    // Rotation step 1: KEY=B, PREVIOUS=A on every process (two here, one started while the other runs).
    const one = await start({ ...s.env, TESSERA_KEY_ENCRYPTION_KEY: b64(B), TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS: b64(A) });
    const two = await start({ ...s.env, TESSERA_KEY_ENCRYPTION_KEY: b64(B), TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS: b64(A) });
    expect((await storedPrivateParts(s)).map((p) => (p as SealedPrivateKey).kek)).toEqual([kekId(B), kekId(B)]);
    for (const p of [one, two]) for (const t of [t1, t2]) expect(await active(p, t)).toBe(true);
    expect(privateKeyMaterial(await dumpUnder(inject("redisUrl"), s.prefix))).toEqual([]);
    await one.close();
    await two.close();

    // Step 2: PREVIOUS dropped.
    srv = await start({ ...s.env, TESSERA_KEY_ENCRYPTION_KEY: b64(B) });
    for (const t of [t1, t2]) expect(await active(srv, t)).toBe(true);
    const t3 = (await clients(srv).tokens.issue({ subject: "carol" })).tokens!.accessToken;
    expect(await active(srv, t3)).toBe(true);
  }, 30_000);

  it("a KEK that opens no stored key, or none at all, refuses to start naming the variable; no key is made", async () => {
    const s = scope();
    const srv = await start({ ...s.env, TESSERA_KEY_ENCRYPTION_KEY: b64(A) });
    await srv.close();
    const before = await storedPrivateParts(s);

    await expect(startServer({ ...s.env, TESSERA_KEY_ENCRYPTION_KEY: b64(B) })).rejects.toThrow(/^TESSERA_KEY_ENCRYPTION_KEY: signing key /);
    await expect(startServer(s.env)).rejects.toThrow(/^TESSERA_KEY_ENCRYPTION_KEY: .*TESSERA_KEY_ENCRYPTION_KEY is unset/);

    // The real entry point: exits before listening, stderr names the variable and the KEK the key needs (by its id).
    const run = runMain({ ...s.env, TESSERA_LISTEN: "127.0.0.1:0", TESSERA_KEY_ENCRYPTION_KEY: b64(B) });
    expect(await run.exited).toBe(1);
    const stderr = run.stderr.join("\n");
    expect(stderr).toMatch(/TESSERA_KEY_ENCRYPTION_KEY: signing key \S+ in the store is sealed under key-encryption key/);
    expect(stderr).toContain(kekId(A));
    expect(stderr).not.toContain(b64(B));
    expect(run.stdout.join("\n")).not.toMatch(/"msg":"listening on/);

    expect(await storedPrivateParts(s)).toEqual(before);
  }, 30_000);
});
