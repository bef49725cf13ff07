/**
 * createVerifier in its three modes against real processes: an authority on Redis (spawnAuthority) and a sidecar
 * next to it (spawnSidecar); `local` follows the authority's feed and JWKS in this process. Each mode answers the same
 * for an active token (its principal), a revoked one (and how soon: local mode within a bound), an expired one, a
 * wrong audience and a missing scope. Local mode fails closed (UNAVAILABLE) before its first snapshot and once its
 * feed has gone quiet (the authority cut off behind a TCP gate). Then the two adapters over real servers: the Node
 * http middleware's 401/403/503 and challenges, and the Connect interceptor's codes and the principal in ctx.values.
 */
import http from "node:http";
import http2 from "node:http2";
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { SignJWT, generateKeyPair } from "jose";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { connectNodeAdapter, createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../gen/grpc/health/v1/health_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import {
  createTesseraClient,
  createVerifier,
  principalKey,
  verifierInterceptor,
  verifierMiddleware,
  type Principal,
  type TesseraClient,
  type Verifier,
  type VerifyResult,
} from "../../src/client/index.js";
import { redisScope, spawnAuthority, spawnSidecar, type RedisScope, type SpawnedAuthority } from "../helpers/server.js";
import { TcpGate } from "../helpers/tcp-gate.js";
import { until } from "../helpers/wait.js";

const ISSUER = "https://tessera.client.test";
const DEVICE = { deviceId: "verifier-test", userAgent: "verifier-test/1.0" };
/** The bound a revocation must be seen within, in every mode (local mode's feed is pushed: milliseconds in practice). */
const VISIBLE_MS = 3_000;
const STALE_MS = 1_000;

let scope: RedisScope;
let authority: SpawnedAuthority;
let sidecar: SpawnedAuthority;
let admin: TesseraClient;
let verifiers: Record<"sidecar" | "authority" | "local", Verifier>;
/** An access token of 1 s, issued first, for the "expired" case. */
let shortLived: string;

async function issue(more: { scopes?: string[]; audience?: string[]; accessTtlSeconds?: number } = {}) {
  const res = await admin.tokens.issue({
    subject: `verifier-${randomUUID()}`,
    scopes: more.scopes ?? ["read"],
    audience: more.audience ?? [],
    extraClaims: { tenant: "t1" },
    client: DEVICE,
    ...(more.accessTtlSeconds ? { accessTtl: { seconds: BigInt(more.accessTtlSeconds) } } : {}),
  });
  return { token: res.tokens!.accessToken, sessionId: res.sessionId, expiresAt: Number(res.tokens!.accessExpiresAt!.seconds) * 1000 };
}

async function serving(url: string): Promise<void> {
  const c = createClient(Health, createGrpcTransport({ baseUrl: url }));
  await until(async () => (await c.check({}, { timeoutMs: 2000 }).catch(() => undefined))?.status === Serving.SERVING, 20_000, "the sidecar serving");
}

beforeAll(async () => {
  scope = redisScope(inject("redisUrl"), "client-verifier");
  authority = await spawnAuthority({ ...scope.env, TESSERA_ISSUER: ISSUER, TESSERA_CLOCK_SKEW: "0s" });
  admin = createTesseraClient({ baseUrl: authority.url });
  shortLived = (await issue({ accessTtlSeconds: 1 })).token;
  sidecar = await spawnSidecar({
    TESSERA_AUTHORITY_URL: authority.url,
    TESSERA_ISSUER: ISSUER,
    TESSERA_CLOCK_SKEW: "0s",
    TESSERA_SIDECAR_MAX_STALENESS: "1500ms",
  });
  verifiers = {
    sidecar: createVerifier({ mode: "sidecar", url: sidecar.url }),
    authority: createVerifier({ mode: "authority", url: authority.url }),
    local: createVerifier({ mode: "local", authorityUrl: authority.url, issuer: ISSUER, clockSkewMs: 0, maxStalenessMs: 1_500 }),
  };
  await Promise.all([serving(sidecar.url), verifiers.local.ready(20_000)]);
}, 90_000);

afterAll(async () => {
  await Promise.all(Object.values(verifiers ?? {}).map((v) => v.close()));
  admin?.close();
  await Promise.all([sidecar?.kill("SIGKILL"), authority?.kill("SIGKILL")]);
  await scope?.cleanup();
});

describe.each(["sidecar", "authority", "local"] as const)("createVerifier, mode %s", (mode) => {
  const v = () => verifiers[mode];

  it("an active token: its principal", async () => {
    const t = await issue({ scopes: ["read", "write"], audience: ["orders"] });
    const r = await v().verify(t.token, { audience: "orders", requiredScopes: ["read"] });
    expect(r.active).toBe(true);
    const p = (r as { principal: Principal }).principal;
    expect(p).toMatchObject({ scopes: ["read", "write"], sessionId: t.sessionId, claims: { tenant: "t1" }, audience: ["orders"], issuer: ISSUER });
    expect(p.subject).toMatch(/^verifier-/);
    expect(Math.abs(p.expiresAt - t.expiresAt)).toBeLessThan(1000);
    expect(p.jti).not.toBe("");
  });

  it(`a revoked token: seen within ${VISIBLE_MS} ms of the authority's acknowledgement`, async () => {
    const t = await issue();
    expect((await v().verify(t.token)).active).toBe(true);
    await admin.tokens.revoke({ target: { case: "token", value: t.token } });
    const acked = performance.now();
    let r: VerifyResult | undefined;
    await until(async () => (r = await v().verify(t.token)).active === false, VISIBLE_MS, `mode ${mode} to see the revocation`, 2);
    const seenMs = performance.now() - acked;
    expect(r).toEqual({ active: false, reason: "revoked" });
    console.info(`verifier mode ${mode}: revocation seen ${seenMs.toFixed(1)} ms after the acknowledgement`);
    // A session revocation too.
    const s = await issue();
    await admin.tokens.revoke({ target: { case: "sessionId", value: s.sessionId } });
    await until(async () => !(await v().verify(s.token)).active, VISIBLE_MS, `mode ${mode} to see the session revocation`, 2);
    expect(await v().verify(s.token)).toEqual({ active: false, reason: "revoked" });
  });

  it("an expired token", async () => {
    await until(() => Date.now() > decodeExp(shortLived) + 50, 5_000, "the short-lived token to expire");
    expect(await v().verify(shortLived)).toEqual({ active: false, reason: "expired" });
  });

  it("a wrong audience", async () => {
    const t = await issue({ audience: ["orders"] });
    expect(await v().verify(t.token, { audience: "billing" })).toEqual({ active: false, reason: "wrong_audience" });
  });

  it("a missing scope: insufficient_scope, naming the missing ones", async () => {
    const t = await issue({ scopes: ["read"] });
    const r = await v().verify(t.token, { requiredScopes: ["read", "write", "admin"] });
    expect(r).toMatchObject({ active: false, reason: "insufficient_scope", missingScopes: ["write", "admin"] });
  });

  it("garbage and a foreign token are inactive, not errors", async () => {
    expect(await v().verify("")).toEqual({ active: false, reason: "malformed" });
    expect(await v().verify("not-a-token")).toEqual({ active: false, reason: "malformed" });
    expect(await v().verify("x".repeat(20_000))).toEqual({ active: false, reason: "malformed" });
    expect(await v().verify(`${"a".repeat(9_000)}.b.c`)).toEqual({ active: false, reason: "malformed" });
    const { privateKey } = await generateKeyPair("ES256");
    const foreign = await new SignJWT({ sub: "mallory", scope: "read admin", sid: "x", jti: randomUUID(), iss: ISSUER })
      .setProtectedHeader({ alg: "ES256", kid: "not-a-tessera-key", typ: "at+jwt" })
      .setIssuedAt()
      .setExpirationTime("5m")
      .sign(privateKey);
    expect(await v().verify(foreign)).toEqual({ active: false, reason: "unknown_key" });
  });
});

function decodeExp(token: string): number {
  return (JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { exp: number }).exp * 1000;
}

describe("local mode fails closed", () => {
  it("before its first snapshot (the authority unreachable): UNAVAILABLE", async () => {
    const gate = await TcpGate.start(authority.port);
    await gate.close(); // a port nothing listens on any more
    const v = createVerifier({ mode: "local", authorityUrl: `http://127.0.0.1:${gate.port}`, issuer: ISSUER, maxStalenessMs: 500 });
    try {
      const t = await issue();
      const err = await v.verify(t.token).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unavailable);
      await expect(v.ready(300)).rejects.toThrow(/not ready/);
    } finally {
      await v.close();
    }
  });

  it("when its feed goes quiet for maxStalenessMs: UNAVAILABLE, while a token bad on its face is still answered", async () => {
    const { v, gate } = await gatedLocal();
    try {
      const t = await issue();
      expect((await v.verify(t.token)).active).toBe(true);
      await gate.close();
      const cut = performance.now();
      await until(async () => (await v.verify(t.token).catch((e: unknown) => e)) instanceof ConnectError, 5_000, "the verifier to go stale");
      expect(performance.now() - cut).toBeGreaterThanOrEqual(STALE_MS - 100);
      expect(((await v.verify(t.token).catch((e: unknown) => e)) as ConnectError).code).toBe(Code.Unavailable);
      expect(await v.verify(shortLived)).toEqual({ active: false, reason: "expired" });
    } finally {
      await v.close();
    }
  });
});

/** A local verifier reaching the authority through a TCP gate, ready. */
async function gatedLocal(): Promise<{ v: Verifier; gate: TcpGate }> {
  const gate = await TcpGate.start(authority.port);
  const v = createVerifier({ mode: "local", authorityUrl: `http://127.0.0.1:${gate.port}`, issuer: ISSUER, clockSkewMs: 0, maxStalenessMs: STALE_MS });
  await v.ready(20_000);
  return { v, gate };
}

// ---------------------------------------------------------------------------------------------------------------
// The adapters

async function listen(server: http.Server | http2.Http2Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

function get(url: string, authorization?: string | string[]): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = {};
    if (authorization !== undefined) headers["Authorization"] = authorization; // an array: one header line each
    const req = http.request(url, { headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("verifierMiddleware over node:http", () => {
  let server: http.Server;
  let url: string;
  let gated: { v: Verifier; gate: TcpGate };
  let staleServer: http.Server;
  let staleUrl: string;

  beforeAll(async () => {
    const handler = (v: Verifier, realm?: string) => {
      const guard = verifierMiddleware(v, { requiredScopes: ["read"], realm });
      return (req: http.IncomingMessage & { tessera?: Principal }, res: http.ServerResponse) =>
        guard(req, res, (err) => {
          if (err) return void res.writeHead(500).end();
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ subject: req.tessera!.subject, scopes: req.tessera!.scopes }));
        });
    };
    server = http.createServer(handler(verifiers.local, "orders"));
    url = await listen(server);
    gated = await gatedLocal();
    staleServer = http.createServer(handler(gated.v));
    staleUrl = await listen(staleServer);
  });
  afterAll(async () => {
    server?.close();
    staleServer?.close();
    await gated?.v.close();
    await gated?.gate.close();
  });

  it("an active token with the scope: next(), with req.tessera", async () => {
    const t = await issue({ scopes: ["read"] });
    const r = await get(url, `Bearer ${t.token}`);
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ scopes: ["read"] });
    expect(JSON.parse(r.body).subject).toMatch(/^verifier-/);
  });

  it("no credentials, or another scheme: 401 with the bare challenge (and the realm)", async () => {
    for (const auth of [undefined, "Basic dXNlcjpwYXNz"]) {
      const r = await get(url, auth);
      expect(r.status).toBe(401);
      expect(r.headers["www-authenticate"]).toBe('Bearer realm="orders"');
      expect(JSON.parse(r.body)).toEqual({ error: "missing_token" });
    }
  });

  it("a malformed credential, two of them, or an inactive token: 401 invalid_token", async () => {
    const t = await issue();
    await admin.tokens.revoke({ target: { case: "token", value: t.token } });
    await until(async () => !(await verifiers.local.verify(t.token)).active, VISIBLE_MS);
    for (const auth of ["Bearer", "Bearer a b", "Bearer tok,en", [`Bearer ${t.token}`, `Bearer ${t.token}`], `Bearer ${t.token}`, `Bearer ${shortLived}`]) {
      const r = await get(url, auth);
      expect(r.status, String(auth)).toBe(401);
      expect(r.headers["www-authenticate"]).toBe('Bearer realm="orders", error="invalid_token"');
      expect(JSON.parse(r.body)).toEqual({ error: "invalid_token" });
      expect(r.body).not.toContain(t.token);
    }
  });

  it("without the required scope: 403 insufficient_scope, naming it", async () => {
    const t = await issue({ scopes: ["write"] });
    const r = await get(url, `bearer   ${t.token}`);
    expect(r.status).toBe(403);
    expect(r.headers["www-authenticate"]).toBe('Bearer realm="orders", error="insufficient_scope", scope="read"');
    expect(JSON.parse(r.body)).toEqual({ error: "insufficient_scope" });
  });

  it("a verifier that cannot answer (stale feed): 503 with Retry-After", async () => {
    const t = await issue();
    expect((await get(staleUrl, `Bearer ${t.token}`)).status).toBe(200);
    await gated.gate.close();
    const r = await until(async () => {
      const res = await get(staleUrl, `Bearer ${t.token}`);
      return res.status === 503 ? res : undefined;
    }, 5_000, "503 from the stale verifier");
    expect(r.headers["retry-after"]).toBe("1");
    expect(r.headers["www-authenticate"]).toBeUndefined();
    expect(JSON.parse(r.body)).toEqual({ error: "temporarily_unavailable" });
  });
});

describe("verifierInterceptor over a real Connect server", () => {
  let server: http2.Http2Server;
  let sessions: ReturnType<typeof createClient<typeof SessionService>>;
  let staleVerifier: { v: Verifier; gate: TcpGate };
  let staleSessions: ReturnType<typeof createClient<typeof SessionService>>;
  let staleServer: http2.Http2Server;

  const serve = async (v: Verifier) => {
    const s = http2.createServer(
      connectNodeAdapter({
        routes: (router) =>
          router.service(SessionService, {
            listSessions: (_req, ctx) => {
              const p = ctx.values.get(principalKey)!;
              return { sessions: [{ subject: p.subject, sessionId: p.sessionId }] };
            },
            getSession: () => ({}),
          }),
        interceptors: [
          verifierInterceptor(v, { requiredScopes: ["read"], scopesFor: (m) => (m.name === "GetSession" ? ["admin"] : undefined) }),
        ],
      }),
    );
    const url = await listen(s);
    return { s, client: createClient(SessionService, createGrpcTransport({ baseUrl: url })) };
  };

  beforeAll(async () => {
    ({ s: server, client: sessions } = await serve(verifiers.sidecar));
    staleVerifier = await gatedLocal();
    ({ s: staleServer, client: staleSessions } = await serve(staleVerifier.v));
  });
  afterAll(async () => {
    server?.close();
    staleServer?.close();
    await staleVerifier?.v.close();
    await staleVerifier?.gate.close();
  });

  const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });
  const failure = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => ConnectError.from(e));

  it("an active token: the handler runs with the principal in ctx.values", async () => {
    const t = await issue({ scopes: ["read"] });
    const res = await sessions.listSessions({}, bearer(t.token));
    expect(res.sessions[0]?.sessionId).toBe(t.sessionId);
    expect(res.sessions[0]?.subject).toMatch(/^verifier-/);
  });

  it("no token or an inactive one: UNAUTHENTICATED with the challenge", async () => {
    const none = await failure(sessions.listSessions({}));
    expect(none?.code).toBe(Code.Unauthenticated);
    expect(none?.metadata.get("www-authenticate")).toBe("Bearer");
    const bad = await failure(sessions.listSessions({}, bearer(shortLived)));
    expect(bad?.code).toBe(Code.Unauthenticated);
    expect(bad?.metadata.get("www-authenticate")).toBe('Bearer error="invalid_token"');
  });

  it("a missing scope (per method): PERMISSION_DENIED", async () => {
    const t = await issue({ scopes: ["read"] });
    const err = await failure(sessions.getSession({ sessionId: t.sessionId }, bearer(t.token)));
    expect(err?.code).toBe(Code.PermissionDenied);
    expect(err?.metadata.get("www-authenticate")).toBe('Bearer error="insufficient_scope", scope="admin"');
  });

  it("a verifier that cannot answer: UNAVAILABLE", async () => {
    const t = await issue();
    expect((await staleSessions.listSessions({}, bearer(t.token))).sessions).toHaveLength(1);
    await staleVerifier.gate.close();
    await until(async () => (await failure(staleSessions.listSessions({}, bearer(t.token))))?.code === Code.Unavailable, 5_000, "UNAVAILABLE");
  });
});
