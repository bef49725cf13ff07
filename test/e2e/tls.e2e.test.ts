/**
 * TLS and mutual TLS against a real server on port 0, with a PKI made by `openssl` at test time. One port serves
 * HTTP/2 (gRPC) and HTTP/1.1 by ALPN. A client certificate signed by TESSERA_TLS_CLIENT_CA identifies its caller by
 * URI SAN (else CN); connections without one still get in with an API key; an untrusted certificate identifies nobody.
 */
import { createHash, randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import https from "node:https";
import { join } from "node:path";
import tls, { type TLSSocket } from "node:tls";
import { createClient, type CallOptions } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { Code, ConnectError } from "../helpers/clients.js";
import { makePki, type CertFiles, type TestPki } from "../helpers/certs.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const BILLING_KEY = `tk_${randomBytes(24).toString("base64url")}`;
const bearer = (key: string): CallOptions => ({ headers: { authorization: `Bearer ${key}` } });

let pki: TestPki;
let server: StartedServer;
let baseUrl: string;
const closers: (() => void)[] = [];

beforeAll(async () => {
  pki = await makePki();
  const callersFile = join(pki.dir, "callers.json");
  await writeFile(
    callersFile,
    JSON.stringify({
      callers: [
        { name: "gateway", mtls: { uri: "spiffe://test/gateway" }, permissions: ["issue", "introspect"] },
        { name: "ops", mtls: { cn: "ops-console" }, permissions: ["keys.read"] },
        {
          name: "billing",
          api_keys: [{ sha256: createHash("sha256").update(BILLING_KEY).digest("hex") }],
          permissions: ["introspect"],
        },
      ],
    }),
  );
  server = await startServer({
    TESSERA_TLS_CERT: pki.server.certPath,
    TESSERA_TLS_KEY: pki.server.keyPath,
    TESSERA_TLS_CLIENT_CA: pki.caPath,
    TESSERA_CALLERS_FILE: callersFile,
  });
  baseUrl = `https://127.0.0.1:${server.port}`;
}, 60_000);
afterAll(async () => {
  for (const close of closers) close();
  await server?.close();
  await pki?.remove();
});

/** Connect clients over gRPC (HTTP/2 over TLS, ALPN h2), trusting the test CA, presenting `client` if given. */
function grpcClients(client?: CertFiles) {
  const sessionManager = new Http2SessionManager(baseUrl, undefined, {
    ca: pki.ca,
    ...(client ? { cert: client.cert, key: client.key } : {}),
  });
  closers.push(() => sessionManager.abort());
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  return { tokens: createClient(TokenService, transport), keys: createClient(KeyService, transport) };
}

/** The error a call fails with (fails the test if it succeeds). */
async function failure(call: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await call;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

function lastRpcLine(method: string): Record<string, unknown> | undefined {
  return server.logs.filter((l) => (l.rpc as { method?: string } | undefined)?.method === method).at(-1);
}

describe("mutual TLS", () => {
  it("a client certificate with a URI SAN is its caller (the SPIFFE ID, not the CN)", async () => {
    const { tokens, keys } = grpcClients(pki.gateway);
    const res = await tokens.issue({ subject: "alice" });
    expect(res.tokens?.accessToken).toMatch(/^ey/);
    expect(lastRpcLine("Issue")).toMatchObject({ caller: "gateway", code: "ok" });
    expect(await failure(keys.listKeys({}))).toEqual({
      code: Code.PermissionDenied,
      message: "caller gateway may not call KeyService.ListKeys",
    });
  });

  it("a client certificate with only a CN is its caller", async () => {
    const { tokens, keys } = grpcClients(pki.ops);
    expect((await keys.listKeys({})).keys.length).toBeGreaterThan(0);
    expect(lastRpcLine("ListKeys")).toMatchObject({ caller: "ops", code: "ok" });
    expect(await failure(tokens.issue({ subject: "alice" }))).toEqual({
      code: Code.PermissionDenied,
      message: "caller ops may not call TokenService.Issue",
    });
  });

  it("the identity holds over HTTP/1.1 too (Connect protocol, ALPN http/1.1)", async () => {
    const agent = new https.Agent({ ca: pki.ca, cert: pki.ops.cert, key: pki.ops.key, keepAlive: true });
    closers.push(() => agent.destroy());
    const keys = createClient(KeyService, createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { agent } }));
    expect((await keys.listKeys({})).keys.length).toBeGreaterThan(0);
    expect(lastRpcLine("ListKeys")).toMatchObject({ caller: "ops", code: "ok" });
  });

  it("without a certificate, an API key works over the same port", async () => {
    const { tokens } = grpcClients();
    const res = await tokens.introspect({ token: "x" }, bearer(BILLING_KEY));
    expect(res.active).toBe(false);
    expect(lastRpcLine("Introspect")).toMatchObject({ caller: "billing", code: "ok" });
    expect(await failure(tokens.introspect({ token: "x" }))).toEqual({ code: Code.Unauthenticated, message: "missing credentials" });
  });

  it("a certificate from an untrusted CA is no identity, even with a configured URI SAN", async () => {
    const { tokens } = grpcClients(pki.rogue);
    expect(await failure(tokens.issue({ subject: "alice" }))).toEqual({ code: Code.Unauthenticated, message: "missing credentials" });
    // it does not get in the way of a valid API key either
    expect((await tokens.introspect({ token: "x" }, bearer(BILLING_KEY))).active).toBe(false);
    expect(lastRpcLine("Introspect")).toMatchObject({ caller: "billing" });
  });

  it("a trusted certificate that no caller has: UNAUTHENTICATED", async () => {
    const { tokens } = grpcClients(pki.stranger);
    expect(await failure(tokens.introspect({ token: "x" }))).toEqual({ code: Code.Unauthenticated, message: "invalid credentials" });
  });

  it("a certificate and an API key of different callers: UNAUTHENTICATED", async () => {
    const { tokens } = grpcClients(pki.gateway);
    expect(await failure(tokens.introspect({ token: "x" }, bearer(BILLING_KEY)))).toEqual({
      code: Code.Unauthenticated,
      message: "conflicting credentials",
    });
  });
});

describe("HTTP/1.1 over TLS", () => {
  it.each(["/healthz", "/.well-known/jwks.json"])("GET %s works without credentials (ALPN http/1.1)", async (path) => {
    const { status, alpn } = await new Promise<{ status: number; alpn: string | false | null }>((resolve, reject) => {
      https
        .get(`${baseUrl}${path}`, { agent: new https.Agent({ ca: pki.ca, ALPNProtocols: ["http/1.1"], keepAlive: false }) }, (res) => {
          const alpn = (res.socket as TLSSocket).alpnProtocol;
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode ?? 0, alpn }));
        })
        .on("error", reject);
    });
    expect(status).toBe(200);
    expect(alpn).toBe("http/1.1");
  });

  it("a plaintext client gets no answer from the TLS port", async () => {
    await expect(fetch(`http://127.0.0.1:${server.port}/healthz`, { signal: AbortSignal.timeout(5000) })).rejects.toThrow();
  });
});

describe("request bodies over TLS", () => {
  it("HTTP/1.1 (ALPN http/1.1): a stalled body ends at TESSERA_READ_TIMEOUT with 408 and its connection closes; so do headers that never end", async () => {
    const srv = await startServer({ TESSERA_TLS_CERT: pki.server.certPath, TESSERA_TLS_KEY: pki.server.keyPath, TESSERA_READ_TIMEOUT: "500ms" });
    try {
      const started = Date.now();
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ host: "127.0.0.1", port: srv.port, ALPNProtocols: ["http/1.1"], ca: pki.ca, servername: "localhost" });
        let got = "";
        socket.on("data", (d: Buffer) => (got += d.toString()));
        socket.on("error", reject);
        socket.on("close", () => resolve(got));
        socket.on("secureConnect", () =>
          socket.write(
            "POST /tessera.v1.TokenService/Introspect HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n" +
              'content-length: 100\r\n\r\n{"tok',
          ),
        );
      });
      expect(answer).toMatch(/^HTTP\/1\.1 408 /);
      expect(answer).toContain('{"code":"deadline_exceeded","message":"request not received within 500ms"}');
      expect(Date.now() - started).toBeLessThan(5_000);

      // Headers that trickle in and never end: node's headers timeout (500 ms here, checked every second).
      const slowStart = Date.now();
      const slow = await new Promise<string>((resolve, reject) => {
        const socket = tls.connect({ host: "127.0.0.1", port: srv.port, ALPNProtocols: ["http/1.1"], ca: pki.ca, servername: "localhost" });
        let got = "";
        let trickle: NodeJS.Timeout | undefined;
        socket.on("data", (d: Buffer) => (got += d.toString()));
        socket.on("error", reject);
        socket.on("close", () => {
          clearInterval(trickle);
          resolve(got);
        });
        socket.on("secureConnect", () => {
          socket.write("GET /healthz HTTP/1.1\r\nhost: localhost\r\n");
          trickle = setInterval(() => socket.writable && socket.write("x-slow: 1\r\n"), 100);
        });
      });
      expect(slow).toMatch(/^HTTP\/1\.1 408 /);
      expect(Date.now() - slowStart).toBeLessThan(5_000);
    } finally {
      await srv.close();
    }
  });
});

describe("TLS configuration", () => {
  it("TLS without a client CA: API keys only, and open on loopback without a callers file", async () => {
    const plain = await startServer({ TESSERA_TLS_CERT: pki.server.certPath, TESSERA_TLS_KEY: pki.server.keyPath });
    try {
      const sessionManager = new Http2SessionManager(`https://localhost:${plain.port}`, undefined, {
        ca: pki.ca,
        cert: pki.gateway.cert,
        key: pki.gateway.key,
      });
      const tokens = createClient(TokenService, createGrpcTransport({ baseUrl: `https://localhost:${plain.port}`, sessionManager }));
      await tokens.introspect({ token: "x" });
      sessionManager.abort();
      expect(plain.logs).toContainEqual(expect.objectContaining({ msg: "rpc", caller: "anonymous" }));
    } finally {
      await plain.close();
    }
  });

  it("a key that does not match the certificate stops the start, naming TESSERA_TLS_KEY", async () => {
    await expect(
      startServer({ TESSERA_TLS_CERT: pki.server.certPath, TESSERA_TLS_KEY: pki.gateway.keyPath }),
    ).rejects.toThrow(/^TESSERA_TLS_KEY: /);
  });

  it("a client CA file that holds no certificate stops the start, naming TESSERA_TLS_CLIENT_CA", async () => {
    await expect(
      startServer({ TESSERA_TLS_CERT: pki.server.certPath, TESSERA_TLS_KEY: pki.server.keyPath, TESSERA_TLS_CLIENT_CA: pki.server.keyPath }),
    ).rejects.toThrow(/^TESSERA_TLS_CLIENT_CA: .* does not hold a PEM certificate/);
  });
});
