/**
 * The sidecar as operators run it: a real sidecar process (`src/sidecar/main.ts`) next to a real authority process on
 * Redis. Tokens issued at the authority are active at the sidecar; every way of revoking at the authority reaches the
 * sidecar within a bounded moment; the sidecar answers exactly as the authority does for a corpus of tokens; it fails
 * closed when the authority goes away and serves again by itself when it is back; a cursor trimmed away leads to a new
 * snapshot that misses nothing; and Envoy's Check through @grpc/grpc-js on the declared protos.
 */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { SignJWT, generateKeyPair, importJWK, type CryptoKey, type JWK } from "jose";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../gen/grpc/health/v1/health_pb.js";
import { createRedisClient, RedisStore } from "../../src/store/redis.js";
import { Code, codeOf, statusOf, tesseraClient, TokenType, type TesseraClient } from "../helpers/clients.js";
import { redisScope, spawnAuthority, spawnSidecar, type RedisScope, type SpawnedAuthority } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const ISSUER = "https://tessera.sidecar.test";
const PHONE = { deviceId: "phone-s", userAgent: "sidecar-e2e/1.0" };
/** The sidecar's staleness bound in these tests: short, so the failure cases are quick. */
const STALE_MS = 1500;
/** How long a revocation may take to reach the sidecar here (the benchmark measures the real figure). */
const VISIBLE_MS = 3000;
const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));

const authorityEnv = (scope: RedisScope): Record<string, string> => ({
  ...scope.env,
  TESSERA_ISSUER: ISSUER,
  TESSERA_CLOCK_SKEW: "0s",
  TESSERA_MAX_SESSIONS: "2",
});
const sidecarEnv = (authority: SpawnedAuthority): Record<string, string> => ({
  TESSERA_AUTHORITY_URL: authority.url,
  TESSERA_ISSUER: ISSUER,
  TESSERA_CLOCK_SKEW: "0s",
  TESSERA_SIDECAR_MAX_STALENESS: `${STALE_MS}ms`,
});

function healthOf(url: string): Promise<Serving> {
  const client = createClient(Health, createGrpcTransport({ baseUrl: url }));
  return client.check({ service: "" }, { timeoutMs: 2000 }).then(
    (r) => r.status,
    () => Serving.UNKNOWN,
  );
}

async function serving(url: string, want: Serving, ms = 15_000): Promise<void> {
  await until(async () => (await healthOf(url)) === want, ms);
}

/** The authority's signing key, read from its store, to forge tokens the API cannot make (nbf in the future). */
async function authorityKey(scope: RedisScope): Promise<{ kid: string; key: CryptoKey }> {
  const store = new RedisStore(createRedisClient(inject("redisUrl"), { commandTimeoutMs: 2000 }), { prefix: scope.prefix });
  try {
    await store.ping();
    const [k] = await store.listKeys();
    return { kid: k!.kid, key: (await importJWK(k!.privateJwk as JWK, k!.alg)) as CryptoKey };
  } finally {
    await store.close();
  }
}

function envoyClient(url: string): grpc.Client {
  const pkg = grpc.loadPackageDefinition(
    loadSync("envoy/service/auth/v3/external_auth.proto", { includeDirs: [PROTO_DIR], keepCase: false, enums: String, defaults: true, oneofs: true }),
  );
  const auth = (((pkg.envoy as grpc.GrpcObject).service as grpc.GrpcObject).auth as grpc.GrpcObject).v3 as grpc.GrpcObject;
  return new (auth.Authorization as grpc.ServiceClientConstructor)(url.replace("http://", ""), grpc.credentials.createInsecure());
}

interface CheckAnswer {
  status: { code: number } | null;
  httpResponse?: string;
  deniedResponse?: { status: { code: string }; headers: { header: { key: string; value: string } }[] };
  okResponse?: { headers: { header: { key: string; value: string } }[] };
}

function check(client: grpc.Client, authorization: string | undefined): Promise<CheckAnswer> {
  const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, Function>).Check!;
    fn.call(client, { attributes: { request: { http: { headers } } } }, { deadline: Date.now() + 5000 }, (err: Error | null, res: CheckAnswer) =>
      err ? reject(err) : resolve(res),
    );
  });
}

describe("a sidecar next to an authority on Redis", () => {
  let scope: RedisScope;
  let authority: SpawnedAuthority;
  let sidecar: SpawnedAuthority;
  let atAuthority: TesseraClient;
  let atSidecar: TesseraClient;
  let connectAtSidecar: TesseraClient;

  beforeAll(async () => {
    scope = redisScope(inject("redisUrl"), "sidecar");
    authority = await spawnAuthority(authorityEnv(scope));
    sidecar = await spawnSidecar(sidecarEnv(authority));
    atAuthority = tesseraClient("grpc-js", authority.url);
    atSidecar = tesseraClient("grpc-js", sidecar.url);
    connectAtSidecar = tesseraClient("connect-grpc", sidecar.url);
    await serving(sidecar.url, Serving.SERVING);
  }, 60_000);

  afterAll(async () => {
    for (const c of [atAuthority, atSidecar, connectAtSidecar]) c?.close();
    await Promise.all([sidecar?.kill("SIGKILL"), authority?.kill("SIGKILL")]);
    await scope?.cleanup();
  });

  const issue = (subject: string, more: { accessTtlSeconds?: number; audience?: string[] } = {}) =>
    atAuthority.issue({ subject, scopes: ["read"], client: PHONE, ...more });
  const inactiveAtSidecar = (token: string, reason = "REVOKED") =>
    until(async () => (await statusOf(atSidecar, token)) === reason, VISIBLE_MS);

  it("answers Introspect for a token issued at the authority, with the authority's fields, over gRPC and Connect", async () => {
    const t = await issue(`sc-active-${randomUUID()}`, { audience: ["orders"] });
    const want = await atAuthority.introspect(t.tokens.accessToken);
    expect(want.active).toBe(true);
    expect(await atSidecar.introspect(t.tokens.accessToken)).toEqual(want);
    expect(await connectAtSidecar.introspect(t.tokens.accessToken)).toEqual(want);
    expect(await atSidecar.introspect(t.tokens.accessToken, TokenType.ACCESS, "orders")).toEqual(want);
  });

  it("sees revocation by token, by session and by subject at the authority", async () => {
    const [a, b, c] = await Promise.all([1, 2, 3].map((i) => issue(`sc-rev-${i}-${randomUUID()}`)));
    for (const t of [a!, b!, c!]) expect(await statusOf(atSidecar, t.tokens.accessToken)).toBe("ACTIVE");
    await atAuthority.revoke({ token: a!.tokens.accessToken });
    await inactiveAtSidecar(a!.tokens.accessToken);
    await atAuthority.revoke({ sessionId: b!.sessionId });
    await inactiveAtSidecar(b!.tokens.accessToken);
    const subject = (await atAuthority.introspect(c!.tokens.accessToken)).subject;
    await atAuthority.revoke({ subject });
    await inactiveAtSidecar(c!.tokens.accessToken);
    // Logging in again right after "log out everywhere" works at the sidecar too (same second included).
    const again = await issue(subject);
    expect(await statusOf(atSidecar, again.tokens.accessToken)).toBe("ACTIVE");
  });

  it("sees refresh-token reuse detection and max-sessions eviction at the authority", async () => {
    const reused = await issue(`sc-reuse-${randomUUID()}`);
    const next = await atAuthority.refresh(reused.tokens.refreshToken, PHONE);
    await atAuthority.refresh(next.tokens.refreshToken, PHONE);
    await codeOf(atAuthority.refresh(reused.tokens.refreshToken, { deviceId: "thief", userAgent: "curl" }));
    await inactiveAtSidecar(next.tokens.accessToken);

    const subject = `sc-evict-${randomUUID()}`;
    const first = await issue(subject);
    await issue(subject);
    await issue(subject); // TESSERA_MAX_SESSIONS=2: the first session goes
    await inactiveAtSidecar(first.tokens.accessToken);
  });

  it("passes refresh tokens to the authority and refuses the authority's other RPCs with UNIMPLEMENTED naming it", async () => {
    const t = await issue(`sc-refresh-${randomUUID()}`);
    const want = await atAuthority.introspect(t.tokens.refreshToken, TokenType.REFRESH);
    expect(want.active).toBe(true);
    expect(await atSidecar.introspect(t.tokens.refreshToken, TokenType.REFRESH)).toEqual(want);
    for (const call of [
      atSidecar.issue({ subject: "x", client: PHONE }),
      atSidecar.refresh(t.tokens.refreshToken, PHONE),
      atSidecar.revoke({ token: t.tokens.accessToken }),
    ]) {
      expect(await codeOf(call)).toBe(Code.Unimplemented);
    }
    const err = await connectAtSidecar.issue({ subject: "x", client: PHONE }).catch((e: Error) => e);
    expect(String((err as Error).message)).toContain(authority.url);
  });

  it("answers the authority's answer, field by field, for a corpus of tokens", async () => {
    const { kid, key } = await authorityKey(scope);
    const now = Math.floor(Date.now() / 1000);
    const base = await issue(`sc-corpus-${randomUUID()}`);
    const claims = await atAuthority.introspect(base.tokens.accessToken);
    const forge = (payload: Record<string, unknown>, signWith: CryptoKey = key, keyId = kid) =>
      new SignJWT({ sub: claims.subject, aud: ["tessera"], sid: claims.sessionId, scope: "read", jti: randomUUID(), ...payload })
        .setProtectedHeader({ alg: "ES256", kid: keyId, typ: "at+jwt" })
        .sign(signWith);
    const foreign = (await generateKeyPair("ES256")).privateKey;

    const expired = await issue(`sc-exp-${randomUUID()}`, { accessTtlSeconds: 1 });
    const [byToken, bySession, bySubject] = await Promise.all([1, 2, 3].map((i) => issue(`sc-corpus-rev${i}-${randomUUID()}`)));
    await atAuthority.revoke({ token: byToken!.tokens.accessToken });
    await atAuthority.revoke({ sessionId: bySession!.sessionId });
    await atAuthority.revoke({ subject: (await atAuthority.introspect(bySubject!.tokens.accessToken)).subject });
    const corpus: Array<[string, string, TokenType, string, string]> = [
      // name, token, expected type, audience, the authority's answer (checked too, so the corpus covers what it says)
      ["valid", base.tokens.accessToken, TokenType.ACCESS, "", "ACTIVE"],
      ["valid, audience carried", base.tokens.accessToken, TokenType.ACCESS, "tessera", "ACTIVE"],
      ["wrong audience", base.tokens.accessToken, TokenType.ACCESS, "billing", "WRONG_AUDIENCE"],
      ["expired", expired.tokens.accessToken, TokenType.ACCESS, "", "EXPIRED"],
      ["not yet valid", await forge({ iss: ISSUER, iat: now + 600, nbf: now + 600, exp: now + 900 }), TokenType.ACCESS, "", "NOT_YET_VALID"],
      ["revoked by token", byToken!.tokens.accessToken, TokenType.ACCESS, "", "REVOKED"],
      ["revoked by session", bySession!.tokens.accessToken, TokenType.ACCESS, "", "REVOKED"],
      ["revoked by subject", bySubject!.tokens.accessToken, TokenType.ACCESS, "", "REVOKED"],
      ["refresh token as access", base.tokens.refreshToken, TokenType.ACCESS, "", "WRONG_TYPE"],
      ["other issuer", await forge({ iss: "https://elsewhere", iat: now, nbf: now, exp: now + 300 }), TokenType.ACCESS, "", "WRONG_ISSUER"],
      ["foreign key", await forge({ iss: ISSUER, iat: now, nbf: now, exp: now + 300 }, foreign, "foreign-kid"), TokenType.ACCESS, "", "UNKNOWN_KEY"],
      ["our kid, another key", await forge({ iss: ISSUER, iat: now, nbf: now, exp: now + 300 }, foreign), TokenType.ACCESS, "", "BAD_SIGNATURE"],
      ["garbage", "not-a-token", TokenType.ACCESS, "", "MALFORMED"],
      ["three dots of nothing", "a.b.c", TokenType.ACCESS, "", "MALFORMED"],
    ];
    await until(async () => (await statusOf(atAuthority, expired.tokens.accessToken)) === "EXPIRED", 5000);
    for (const t of [byToken!, bySession!, bySubject!]) await inactiveAtSidecar(t.tokens.accessToken);
    for (const [name, token, type, audience, status] of corpus) {
      const want = await atAuthority.introspect(token, type, audience);
      expect([name, await statusOf(atAuthority, token, type, audience)]).toEqual([name, status]);
      expect([name, await atSidecar.introspect(token, type, audience)]).toEqual([name, want]);
    }
  });

  it("serves Envoy's Check: allowed with the upstream headers, 401 without an active token", async () => {
    const client = envoyClient(sidecar.url);
    try {
      const t = await issue(`sc-envoy-${randomUUID()}`);
      const ok = await check(client, `Bearer ${t.tokens.accessToken}`);
      expect(ok.status?.code).toBe(0);
      expect(Object.fromEntries(ok.okResponse!.headers.map((h) => [h.header.key, h.header.value]))).toEqual({
        "x-tessera-subject": (await atAuthority.introspect(t.tokens.accessToken)).subject,
        "x-tessera-scopes": "read",
        "x-tessera-session-id": t.sessionId,
      });
      await atAuthority.revoke({ sessionId: t.sessionId });
      await inactiveAtSidecar(t.tokens.accessToken);
      for (const authorization of [`Bearer ${t.tokens.accessToken}`, undefined, "Bearer not-a-token"]) {
        const denied = await check(client, authorization);
        expect(denied.status?.code).toBe(16);
        expect(denied.deniedResponse?.status.code).toBe("Unauthorized");
        const challenge = denied.deniedResponse!.headers.find((h) => h.header.key === "www-authenticate")?.header.value;
        expect(challenge).toBe(authorization === undefined ? "Bearer" : 'Bearer error="invalid_token"');
      }
    } finally {
      client.close();
    }
  });

  // Last: it stops the authority.
  it("fails closed when the authority goes away (NOT_SERVING, UNAVAILABLE, Envoy 503) and serves again by itself", async () => {
    const t = await issue(`sc-down-${randomUUID()}`);
    expect(await statusOf(atSidecar, t.tokens.accessToken)).toBe("ACTIVE");
    const port = authority.port;
    const killedAt = Date.now();
    await authority.kill("SIGKILL");
    await serving(sidecar.url, Serving.NOT_SERVING, 10_000);
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(STALE_MS - 200); // not before the bound: a quiet feed is not a dead one
    expect(await codeOf(atSidecar.introspect(t.tokens.accessToken))).toBe(Code.Unavailable);
    const client = envoyClient(sidecar.url);
    try {
      const stale = await check(client, `Bearer ${t.tokens.accessToken}`);
      expect(stale.status?.code).toBe(14);
      expect(stale.deniedResponse?.status.code).toBe("ServiceUnavailable");
    } finally {
      client.close();
    }
    // A token that is bad on its face is still answered: no revocation can be missed by saying so.
    expect(await statusOf(atSidecar, "not-a-token")).toBe("MALFORMED");

    authority = await spawnAuthority(authorityEnv(scope), 20_000, port);
    await serving(sidecar.url, Serving.SERVING, 15_000);
    expect(await statusOf(atSidecar, t.tokens.accessToken)).toBe("ACTIVE");
    await atAuthority.revoke({ token: t.tokens.accessToken });
    await inactiveAtSidecar(t.tokens.accessToken);
  }, 60_000);
});

describe("a sidecar whose cursor was trimmed away while it was cut off", () => {
  let scope: RedisScope;
  const procs: SpawnedAuthority[] = [];

  beforeAll(() => {
    scope = redisScope(inject("redisUrl"), "sidecar-trim");
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill("SIGKILL")));
    await scope?.cleanup();
  });

  it("takes a new snapshot and misses no revocation", async () => {
    const env = authorityEnv(scope);
    const [followed, other] = await Promise.all([spawnAuthority(env), spawnAuthority(env)]);
    procs.push(followed!, other!);
    const sidecar = await spawnSidecar(sidecarEnv(followed!));
    procs.push(sidecar);
    await serving(sidecar.url, Serving.SERVING);
    const viaOther = tesseraClient("connect-grpc", other!.url);
    const atSidecar = tesseraClient("connect-grpc", sidecar.url);
    try {
      // The sidecar's authority goes; meanwhile, on the other process, a short-lived revocation comes and dies.
      await followed!.kill("SIGKILL");
      await serving(sidecar.url, Serving.NOT_SERVING, 10_000);
      // `exp` is in whole seconds, so a short token may have expired before its revocation came (then nothing is fed):
      // two seconds, and again until the revocation took.
      let brief: Awaited<ReturnType<typeof viaOther.issue>> | undefined;
      for (let tries = 0; brief === undefined && tries < 5; tries++) {
        const t = await viaOther.issue({ subject: `trim-brief-${randomUUID()}`, client: PHONE, accessTtlSeconds: 2 });
        if ((await viaOther.revoke({ token: t.tokens.accessToken })).tokenRevoked) brief = t;
      }
      if (brief === undefined) throw new Error("no short-lived token could be revoked before it expired");
      const briefToken = brief.tokens.accessToken;
      await until(async () => (await statusOf(viaOther, briefToken)) === "EXPIRED", 8000);
      // The next revocation trims the dead one from the feed: the sidecar's cursor now lies before a dropped entry.
      const kept = await viaOther.issue({ subject: `trim-kept-${randomUUID()}`, client: PHONE });
      await viaOther.revoke({ token: kept.tokens.accessToken });

      procs.push(await spawnAuthority(env, 20_000, followed!.port));
      await serving(sidecar.url, Serving.SERVING, 15_000);
      expect(await statusOf(atSidecar, kept.tokens.accessToken)).toBe("REVOKED");
      await until(() => sidecar.stdout.some((l) => l.includes("cursor too old")), 5000);
    } finally {
      viaOther.close();
      atSidecar.close();
    }
  }, 90_000);
});
