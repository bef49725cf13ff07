/**
 * createTesseraClient against a real server with a callers file: the API key on every call, every service reachable
 * over gRPC and Connect, the default deadline, and which calls are retried on UNAVAILABLE (the reads, decided by the
 * protos' NO_SIDE_EFFECTS) and which are not (Issue, Refresh, Revoke, RotateKeys, RevokeKey; streams), with the
 * backoff's full jitter bounds.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, createContextValues, type Interceptor } from "@connectrpc/connect";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { RevocationService } from "../../gen/tessera/v1/revocation_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { PERMISSIONS } from "../../src/domain/permissions.js";
import { backoffDelay, createTesseraClient, isSafeToRetry, retryUnavailable, type TesseraClient } from "../../src/client/index.js";
import { makePki } from "../helpers/certs.js";
import { freePort } from "../helpers/redis-server.js";
import { startServer, type StartedServer } from "../helpers/server.js";
import { rpcCount } from "./rpc-count.js";

const KEY = `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const DEVICE = { deviceId: "client-test", userAgent: "client-test/1.0" };

let dir: string;
let server: StartedServer;
const clients: TesseraClient[] = [];
const client = (opts: Partial<Parameters<typeof createTesseraClient>[0]> = {}) => {
  const c = createTesseraClient({ baseUrl: server.url, apiKey: KEY, ...opts });
  clients.push(c);
  return c;
};

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-client-"));
  const file = join(dir, "callers.json");
  await writeFile(file, JSON.stringify({ callers: [{ name: "svc", permissions: [...PERMISSIONS], api_keys: [{ sha256: sha256(KEY) }] }] }));
  server = await startServer({ TESSERA_CALLERS_FILE: file });
});
afterAll(async () => {
  for (const c of clients) c.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Fails the first `n` tries of the given method with UNAVAILABLE before they are sent; counts every try. */
function flaky(method: string, n: number): { interceptor: Interceptor; tries: () => number } {
  let tries = 0;
  return {
    tries: () => tries,
    interceptor: (next) => async (req) => {
      if (req.method.name !== method) return next(req);
      tries++;
      if (tries <= n) throw new ConnectError("injected", Code.Unavailable);
      return next(req);
    },
  };
}

describe("createTesseraClient", () => {
  for (const [protocol, httpVersion] of [["grpc", "2"], ["connect", "2"], ["connect", "1.1"]] as const) {
    it(`reaches every service with the API key (${protocol}, HTTP/${httpVersion})`, async () => {
      const c = client({ protocol, httpVersion });
      const issued = await c.tokens.issue({ subject: `client-${protocol}-${httpVersion}`, scopes: ["read"], client: DEVICE });
      expect((await c.tokens.introspect({ token: issued.tokens!.accessToken })).active).toBe(true);
      expect((await c.sessions.listSessions({ subject: `client-${protocol}-${httpVersion}` })).sessions).toHaveLength(1);
      expect((await c.keys.getJwks({})).keys.length).toBeGreaterThan(0);
      expect(Array.isArray((await c.audit.listAuditEvents({ pageSize: 1 })).events)).toBe(true);
      const ac = new AbortController();
      for await (const m of c.revocations.watchRevocations({}, { signal: ac.signal })) {
        expect(m.current).toBe(true); // the snapshot
        break;
      }
    });
  }

  it("without the key, or with another, the server answers UNAUTHENTICATED (not retried)", async () => {
    const counter = flaky("Introspect", 0);
    for (const apiKey of [undefined, "tk_wrong"]) {
      const c = client({ apiKey, interceptors: [counter.interceptor] });
      const err = await c.tokens.introspect({ token: "x.y.z" }).catch((e: unknown) => ConnectError.from(e));
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    }
    expect(counter.tries()).toBe(2);
  });

  it("decides retries from the methods' declared idempotency, never for the writes", () => {
    const retried = [TokenService, SessionService, KeyService, AuditService, RevocationService]
      .flatMap((s) => s.methods)
      .filter(isSafeToRetry)
      .map((m) => m.name)
      .sort();
    expect(retried).toEqual(["GetJwks", "GetSession", "Introspect", "ListAuditEvents", "ListKeys", "ListSessions"]);
  });

  it("retries a read on UNAVAILABLE, within the attempts, and never Issue, Refresh or Revoke unless asked", async () => {
    const before = await rpcCount(server, "Introspect");
    const reads = flaky("Introspect", 2);
    const c = client({ interceptors: [reads.interceptor], retry: { attempts: 3, baseMs: 1, maxMs: 5 } });
    expect((await c.tokens.introspect({ token: "a.b.c" })).active).toBe(false);
    expect(reads.tries()).toBe(3);
    expect((await rpcCount(server, "Introspect")) - before).toBe(1);

    const tooFlaky = flaky("Introspect", 5);
    const d = client({ interceptors: [tooFlaky.interceptor], retry: { attempts: 3, baseMs: 1, maxMs: 5 } });
    expect(await d.tokens.introspect({ token: "a.b.c" }).catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unavailable);
    expect(tooFlaky.tries()).toBe(3);

    for (const method of ["Issue", "Refresh", "Revoke"] as const) {
      const writes = flaky(method, 1);
      const w = client({ interceptors: [writes.interceptor], retry: { attempts: 5, baseMs: 1, maxMs: 5 } });
      const call =
        method === "Issue"
          ? w.tokens.issue({ subject: "never-retried", client: DEVICE })
          : method === "Refresh"
            ? w.tokens.refresh({ refreshToken: "a.b.c", client: DEVICE })
            : w.tokens.revoke({ target: { case: "subject", value: "never-retried" } });
      expect(await call.then(() => Code.Unknown, (e: unknown) => ConnectError.from(e).code)).toBe(Code.Unavailable);
      expect(writes.tries()).toBe(1);
    }

    // Revoke, opted in per call: retried.
    const optIn = flaky("Revoke", 1);
    const r = client({ interceptors: [optIn.interceptor], retry: { attempts: 3, baseMs: 1, maxMs: 5 } });
    const res = await r.tokens.revoke(
      { target: { case: "subject", value: "opted-in" } },
      { contextValues: createContextValues().set(retryUnavailable, true) },
    );
    expect(res.sessionsRevoked).toBe(0);
    expect(optIn.tries()).toBe(2);
  });

  it("retries a server that cannot be reached, then answers UNAVAILABLE", async () => {
    const port = await freePort(); // nothing listens there
    const tries = flaky("Introspect", 0);
    const c = createTesseraClient({ baseUrl: `http://127.0.0.1:${port}`, interceptors: [tries.interceptor], retry: { attempts: 4, baseMs: 1, maxMs: 2 } });
    clients.push(c);
    expect(await c.tokens.introspect({ token: "a.b.c" }).catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unavailable);
    expect(tries.tries()).toBe(4);
  });

  it("puts a default deadline on unary calls, covering the retries' waits", async () => {
    // Every try fails; the waits are long: the 150 ms deadline ends the call, not the attempts.
    const always = flaky("Introspect", 1_000);
    const c = client({ timeoutMs: 150, interceptors: [always.interceptor], retry: { attempts: 100, baseMs: 100, maxMs: 100 }, random: () => 0.99 });
    const started = performance.now();
    const code = await c.tokens.introspect({ token: "a.b.c" }).catch((e: unknown) => ConnectError.from(e).code);
    const took = performance.now() - started;
    expect(code).toBe(Code.DeadlineExceeded);
    expect(took).toBeLessThan(1_000);
    expect(always.tries()).toBeLessThanOrEqual(3);
  });

  it("sends the default deadline to the server as grpc-timeout (and a call's own wins)", async () => {
    const seen: (string | null)[] = [];
    const spy: Interceptor = (next) => (req) => {
      seen.push(req.header.get("grpc-timeout"));
      return next(req);
    };
    const c = client({ timeoutMs: 2_500, interceptors: [spy] });
    await c.tokens.introspect({ token: "a.b.c" });
    await c.tokens.introspect({ token: "a.b.c" }, { timeoutMs: 700 });
    expect(seen).toEqual(["2500m", "700m"]);
  });

  it("waits full jitter: uniform under min(maxMs, baseMs * 2^n)", () => {
    const opts = { baseMs: 100, maxMs: 1_000 };
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, opts, () => 0.999999))).toEqual([99, 199, 399, 799, 999, 999]);
    expect(backoffDelay(3, opts, () => 0)).toBe(0);
    for (let i = 0; i < 1_000; i++) {
      const d = backoffDelay(2, opts);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(400);
    }
  });

  it("over TLS: trusts the given CA and presents the client certificate (mTLS), over gRPC and Connect", async () => {
    const pki = await makePki();
    const callersFile = join(pki.dir, "callers.json");
    await writeFile(callersFile, JSON.stringify({ callers: [{ name: "gateway", mtls: { uri: "spiffe://test/gateway" }, permissions: ["introspect"] }] }));
    const tlsServer = await startServer({
      TESSERA_TLS_CERT: pki.server.certPath,
      TESSERA_TLS_KEY: pki.server.keyPath,
      TESSERA_TLS_CLIENT_CA: pki.caPath,
      TESSERA_CALLERS_FILE: callersFile,
    });
    try {
      const baseUrl = `https://127.0.0.1:${tlsServer.port}`;
      for (const [protocol, httpVersion] of [["grpc", "2"], ["connect", "1.1"]] as const) {
        const c = createTesseraClient({ baseUrl, protocol, httpVersion, tls: { ca: pki.ca, cert: pki.gateway.cert, key: pki.gateway.key } });
        clients.push(c);
        expect((await c.tokens.introspect({ token: "a.b.c" })).active).toBe(false);
        const anonymous = createTesseraClient({ baseUrl, protocol, httpVersion, tls: { ca: pki.ca } });
        clients.push(anonymous);
        expect(await anonymous.tokens.introspect({ token: "a.b.c" }).catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unauthenticated);
      }
    } finally {
      await tlsServer.close();
      await pki.remove();
    }
  });

  it("refuses options that cannot work", () => {
    expect(() => createTesseraClient({ baseUrl: "ftp://x" })).toThrow(/http/);
    expect(() => createTesseraClient({ baseUrl: "http://x", tls: { ca: "x" } })).toThrow(/https/);
    expect(() => createTesseraClient({ baseUrl: "http://x", retry: { attempts: 0 } })).toThrow(/attempts/);
  });
});
