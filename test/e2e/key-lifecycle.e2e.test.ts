/**
 * The signing keys' lifecycle against running authorities, with the schedule shortened to seconds: a resource server
 * using jose's createRemoteJWKSet (with its cache) never meets a kid its cached JWKS lacks, and a retired key leaves
 * the JWKS only after the last token it signed expired; three processes on one Redis rotate once per period and switch
 * together; RevokeKey takes a stolen key out everywhere at once, sidecars included.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from "jose";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../gen/grpc/health/v1/health_pb.js";
import { KeyService, KeyState } from "../../gen/tessera/v1/key_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { statusOf, tesseraClient } from "../helpers/clients.js";
import { redisScope, spawnAuthority, spawnSidecar, startServer, type RedisScope, type SpawnedAuthority } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const ISSUER = "https://keys.test";
/** Seconds instead of days: a new key every 3 s, published 2 s ahead, JWKS cached 1 s, tokens live at most 4 s. */
const FAST_KEYS = {
  TESSERA_ISSUER: ISSUER,
  TESSERA_CLOCK_SKEW: "0s",
  TESSERA_KEY_ROTATION_PERIOD: "3s",
  TESSERA_KEY_PREPUBLISH: "2s",
  TESSERA_JWKS_MAX_AGE: "1s",
  TESSERA_ACCESS_TTL: "2s",
  TESSERA_ACCESS_TTL_MAX: "2s",
  TESSERA_REFRESH_TTL: "4s",
  TESSERA_REFRESH_TTL_MAX: "4s",
};
const kidOf = (token: string) => decodeProtectedHeader(token).kid!;
const expOf = (token: string) => decodeJwt(token).exp! * 1000;

describe("a resource server with jose's createRemoteJWKSet, while the authority rotates on schedule", () => {
  it("never meets an unknown kid, verifies every token until it expires, and sees a key leave only after its last token", async () => {
    const srv = await startServer(FAST_KEYS);
    try {
      const transport = createGrpcTransport({ baseUrl: srv.url });
      const tokens = createClient(TokenService, transport);
      const jwks = createRemoteJWKSet(new URL(`${srv.url}/.well-known/jwks.json`), { cacheMaxAge: 1000, cooldownDuration: 0 });
      const cachedKids = () => (jwks.jwks()?.keys ?? []).map((k) => k.kid);
      const lastExpiry = new Map<string, number>(); // kid -> the latest exp of a token it signed
      const live: string[] = [];
      const kidsSeen = new Set<string>();
      const deadline = Date.now() + 12_000;
      while (Date.now() < deadline) {
        const issued = await tokens.issue({ subject: `rot-${randomUUID()}`, audience: ["api"] });
        const pair = issued.tokens!;
        for (const t of [pair.accessToken, pair.refreshToken]) {
          lastExpiry.set(kidOf(t), Math.max(lastExpiry.get(kidOf(t)) ?? 0, expOf(t)));
        }
        kidsSeen.add(kidOf(pair.accessToken));
        live.push(pair.accessToken);
        // The cache as the verifier holds it (refreshed only when older than its max age): it has the kid already.
        if (!jwks.fresh) await jwks.reload();
        expect(cachedKids()).toContain(kidOf(pair.accessToken));
        // Every token not yet expired still verifies.
        for (const t of live.filter((t) => expOf(t) > Date.now() + 100)) {
          await expect(jwtVerify(t, jwks, { issuer: ISSUER, typ: "at+jwt" })).resolves.toBeDefined();
        }
        // A key missing from the published set has no token left that could still be valid.
        const published = new Set(((await (await fetch(`${srv.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid));
        const now = Date.now();
        for (const [kid, exp] of lastExpiry) if (!published.has(kid)) expect(now).toBeGreaterThanOrEqual(exp);
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(kidsSeen.size).toBeGreaterThanOrEqual(4); // at least three rotations
      const res = await fetch(`${srv.url}/.well-known/jwks.json`);
      expect(res.headers.get("cache-control")).toBe("public, max-age=1");
    } finally {
      await srv.close();
    }
  }, 30_000);
});

describe("three authority processes on one Redis, rotating on schedule", () => {
  let scope: RedisScope;
  let procs: SpawnedAuthority[] = [];

  beforeAll(async () => {
    scope = redisScope(inject("redisUrl"), "keys");
  });

  afterAll(async () => {
    await Promise.all(procs.map((p) => p.kill("SIGKILL")));
    await scope?.cleanup();
  });

  it("rotate once per period and sign with the same key from the switch on", async () => {
    procs = await Promise.all([1, 2, 3].map(() => spawnAuthority({ ...scope.env, ...FAST_KEYS })));
    const clients = procs.map((p) => createClient(TokenService, createGrpcTransport({ baseUrl: p.url })));
    const keys = createClient(KeyService, createGrpcTransport({ baseUrl: procs[0]!.url }));
    // Watch the key set: every key ever listed, with its activation. The set itself stays small (removed keys go).
    const activationOf = new Map<string, number>();
    let largest = 0;
    await until(async () => {
      const listed = (await keys.listKeys({})).keys;
      largest = Math.max(largest, listed.length);
      for (const k of listed) activationOf.set(k.kid, Number(k.activatesAt!.seconds) * 1000 + k.activatesAt!.nanos / 1e6);
      return activationOf.size >= 4; // three rotations
    }, 25_000);
    // Activations a period apart: one rotation per period, not one per process.
    const activations = [...activationOf.values()].sort((a, b) => a - b);
    for (let i = 2; i < activations.length; i++) expect(activations[i]! - activations[i - 1]!).toBeGreaterThanOrEqual(2_900);
    expect(largest).toBeLessThanOrEqual(4);
    // Away from a switch, all three sign with the current key (close to one: wait until it is past, then ask again).
    const ms = (t: { seconds: bigint; nanos: number }) => Number(t.seconds) * 1000 + t.nanos / 1e6;
    const settled = async () => {
      for (;;) {
        const set = (await keys.listKeys({})).keys;
        const next = set.find((k) => k.state === KeyState.NEXT);
        const switchAt = next ? ms(next.activatesAt!) : Infinity;
        if (switchAt - Date.now() > 800) return set.find((k) => k.state === KeyState.CURRENT)!;
        await new Promise((r) => setTimeout(r, switchAt - Date.now() + 300));
      }
    };
    const current = await settled();
    const kids = await Promise.all(clients.map(async (c) => kidOf((await c.issue({ subject: "same-key" })).tokens!.accessToken)));
    expect(kids).toEqual([current.kid, current.kid, current.kid]);
  }, 40_000);

});

describe("RevokeKey, with two authority processes on one Redis and a sidecar", () => {
  let scope: RedisScope;
  let procs: SpawnedAuthority[] = [];
  let sidecar: SpawnedAuthority | undefined;

  beforeAll(async () => {
    scope = redisScope(inject("redisUrl"), "revoke-key");
  });

  afterAll(async () => {
    await Promise.all([...procs, ...(sidecar ? [sidecar] : [])].map((p) => p.kill("SIGKILL")));
    await scope?.cleanup();
  });

  it("takes the key's tokens out in every process and at the sidecar, the JWKS without it, a new key signing", async () => {
    const env = { ...scope.env, TESSERA_ISSUER: ISSUER, TESSERA_CLOCK_SKEW: "0s" };
    procs = await Promise.all([spawnAuthority(env), spawnAuthority(env), spawnAuthority(env)]);
    sidecar = await spawnSidecar({ TESSERA_AUTHORITY_URL: procs[1]!.url, TESSERA_ISSUER: ISSUER, TESSERA_CLOCK_SKEW: "0s" });
    const health = createClient(Health, createGrpcTransport({ baseUrl: sidecar.url }));
    await until(async () => (await health.check({ service: "" }).catch(() => ({ status: Serving.UNKNOWN }))).status === Serving.SERVING, 15_000);
    const a = tesseraClient("grpc-js", procs[0]!.url);
    const views = [procs[1]!, procs[2]!, sidecar].map((p) => tesseraClient("grpc-js", p.url));
    try {
      const issued = await a.issue({ subject: `stolen-${randomUUID()}`, client: { deviceId: "d", userAgent: "u" } });
      const token = issued.tokens.accessToken;
      for (const v of [a, ...views]) expect(await statusOf(v, token)).toBe("ACTIVE");
      const keys = createClient(KeyService, createGrpcTransport({ baseUrl: procs[0]!.url }));
      const stolen = kidOf(token);
      const { revoked, signing } = await keys.revokeKey({ kid: stolen, reason: "key leaked" });
      expect(revoked).toMatchObject({ kid: stolen, state: KeyState.REVOKED });
      expect(signing!.kid).not.toBe(stolen);
      expect(await statusOf(a, token)).toBe("REVOKED");
      for (const v of views) await until(async () => (await statusOf(v, token)) === "REVOKED", 3_000);
      for (const p of procs) {
        const published = ((await (await fetch(`${p.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys;
        expect(published.map((k) => k.kid)).not.toContain(stolen);
      }
      const fresh = await a.issue({ subject: `after-${randomUUID()}`, client: { deviceId: "d", userAgent: "u" } });
      expect(kidOf(fresh.tokens.accessToken)).toBe(signing!.kid);
      expect(await statusOf(views[0]!, fresh.tokens.accessToken)).toBe("ACTIVE");
    } finally {
      a.close();
      for (const v of views) v.close();
    }
  }, 40_000);
});
