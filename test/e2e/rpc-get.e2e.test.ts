/**
 * Issue 12, point 3: no RPC is reachable by GET. The Connect protocol's GET form (which connect-node serves for
 * methods marked `idempotency_level = NO_SIDE_EFFECTS`, Introspect among them) carries the request in the query
 * string, where access logs, proxies and browser histories keep it. Every RPC path answers anything but POST with
 * HTTP 405, `Allow: POST` and a Connect error body (code "unimplemented"), on HTTP/1.1 and HTTP/2, before connect-node
 * reads anything; the token sent that way reaches no log line. POST (and gRPC) are untouched.
 */
import http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { RevocationService } from "../../gen/tessera/v1/revocation_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { createLogger } from "../../src/observability/logger.js";
import { createSidecar } from "../../src/sidecar/app.js";
import { loadSidecarConfig } from "../../src/sidecar/config.js";
import { connectClients, type ConnectClients } from "../helpers/clients.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const DEVICE = { deviceId: "d-get", userAgent: "get-test/1.0", ip: "192.0.2.9", platform: "web" };
const SERVICES: DescService[] = [TokenService, SessionService, KeyService, AuditService, RevocationService];
const PATHS = SERVICES.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`));

let server: StartedServer;
let post: ConnectClients;
let access: string;
let refresh: string;

beforeAll(async () => {
  server = await startServer();
  post = connectClients("connect-h1", server.url);
  const res = await post.tokens.issue({ subject: `get-${Date.now()}`, scopes: ["read"], client: DEVICE });
  access = res.tokens!.accessToken;
  refresh = res.tokens!.refreshToken;
});
afterAll(async () => {
  post?.close();
  await server?.close();
});

/** The query of a Connect GET of Introspect for the token (what connect-es' useHttpGet sends, JSON form). */
const introspectQuery = (token: string) =>
  `?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify({ token }))}`;

/** A GET (or another method) over HTTP/2: status, headers and body. */
async function h2(method: string, path: string): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  const session = http2.connect(server.url);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ":method": method, ":path": path }, { endStream: true });
      let headers: http2.IncomingHttpHeaders = {};
      let body = "";
      req.setEncoding("utf8");
      req.on("response", (h) => (headers = h));
      req.on("data", (chunk: string) => (body += chunk));
      req.on("end", () => resolve({ status: Number(headers[":status"]), headers, body }));
      req.on("error", reject);
    });
  } finally {
    session.close();
  }
}

function expectRefused(status: number, allow: string | null | undefined, contentType: string | null | undefined, body: string) {
  expect(status).toBe(405);
  expect(allow).toBe("POST");
  expect(contentType).toMatch(/^application\/json/);
  const err = JSON.parse(body) as { code: string; message: string };
  expect(err.code).toBe("unimplemented");
  expect(err.message).toMatch(/POST/);
}

describe("no RPC is reachable by GET", () => {
  it.each(["1.1", "2"] as const)("a Connect client with useHttpGet over HTTP/%s: Introspect is refused UNIMPLEMENTED; its POSTs still work", async (httpVersion) => {
    const sessionManager = httpVersion === "2" ? new Http2SessionManager(server.url) : undefined;
    const transport = createConnectTransport({ baseUrl: server.url, httpVersion, useHttpGet: true, ...(sessionManager ? { sessionManager } : {}) });
    const tokens = createClient(TokenService, transport);
    try {
      const err = await tokens.introspect({ token: access }).then(
        () => expect.fail("Introspect by GET succeeded"),
        (e: unknown) => ConnectError.from(e),
      );
      expect(Code[err.code]).toBe(Code[Code.Unimplemented]);
      // Issue has side effects, so the same client POSTs it: untouched.
      const res = await tokens.issue({ subject: `get-post-${httpVersion}`, client: DEVICE });
      expect(res.tokens?.accessToken).toMatch(/^eyJ/);
      expect((await post.tokens.introspect({ token: res.tokens!.accessToken })).active).toBe(true);
    } finally {
      sessionManager?.abort();
    }
  });

  it("a raw HTTP/1.1 GET of Introspect with the token in the query: 405, Allow: POST, a Connect error body", async () => {
    const res = await fetch(`${server.url}/tessera.v1.TokenService/Introspect${introspectQuery(access)}`);
    expectRefused(res.status, res.headers.get("allow"), res.headers.get("content-type"), await res.text());
    expect(res.headers.get("cache-control")).toBe("no-store");
  });

  it("a raw HTTP/2 GET of Introspect with the token in the query (and base64 proto form): the same answer", async () => {
    for (const query of [introspectQuery(refresh), `?connect=v1&encoding=proto&base64=1&message=${Buffer.from(access).toString("base64url")}`]) {
      const res = await h2("GET", `/tessera.v1.TokenService/Introspect${query}`);
      expectRefused(res.status, res.headers.allow, res.headers["content-type"], res.body);
    }
  });

  it.each(PATHS)("GET %s (HTTP/1.1 and HTTP/2): 405 with Allow: POST", async (path) => {
    const h1 = await fetch(`${server.url}${path}?connect=v1&encoding=json&message=%7B%7D`);
    expectRefused(h1.status, h1.headers.get("allow"), h1.headers.get("content-type"), await h1.text());
    const two = await h2("GET", `${path}?connect=v1&encoding=json&message=%7B%7D`);
    expectRefused(two.status, two.headers.allow, two.headers["content-type"], two.body);
  });

  it("HEAD, PUT and DELETE of an RPC are refused alike (HEAD without a body); so is GET of the health check", async () => {
    const head = await fetch(`${server.url}/tessera.v1.TokenService/Introspect${introspectQuery(access)}`, { method: "HEAD" });
    expect(head.status).toBe(405);
    expect(head.headers.get("allow")).toBe("POST");
    expect(await head.text()).toBe("");
    for (const method of ["PUT", "DELETE"]) {
      const res = await fetch(`${server.url}/tessera.v1.TokenService/Revoke`, { method, body: JSON.stringify({ token: access }) });
      expectRefused(res.status, res.headers.get("allow"), res.headers.get("content-type"), await res.text());
    }
    const health = await fetch(`${server.url}/grpc.health.v1.Health/Check?connect=v1&encoding=json&message=%7B%7D`);
    expectRefused(health.status, health.headers.get("allow"), health.headers.get("content-type"), await health.text());
  });

  it("the token sent by GET is still active (nothing ran) and appears in no log line", async () => {
    expect((await post.tokens.introspect({ token: access })).active).toBe(true); // POST: served as before
    const logs = JSON.stringify(server.logs);
    for (const token of [access, refresh]) {
      for (const part of token.split(".").slice(1)) expect(logs).not.toContain(part); // payload and signature
      expect(logs).not.toContain(encodeURIComponent(JSON.stringify({ token })));
    }
  });

  it("the plain HTTP routes still answer GET", async () => {
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const jwks = await fetch(`${server.url}/.well-known/jwks.json`);
    expect(jwks.status).toBe(200);
    expect(((await jwks.json()) as { keys: unknown[] }).keys.length).toBeGreaterThan(0);
    expect((await h2("GET", "/readyz")).status).toBe(200);
  });

  it("a sidecar (the same serve()) refuses GET of its Introspect alike, and its log keeps no token", async () => {
    const lines: string[] = [];
    const sidecar = await createSidecar(loadSidecarConfig({ TESSERA_AUTHORITY_URL: server.url, TESSERA_LISTEN: "127.0.0.1:0" }), {
      logger: createLogger("info", { write: (line: string) => void lines.push(line) }),
    });
    try {
      const { port } = await sidecar.listen();
      const res = await fetch(`http://127.0.0.1:${port}/tessera.v1.TokenService/Introspect${introspectQuery(access)}`);
      expectRefused(res.status, res.headers.get("allow"), res.headers.get("content-type"), await res.text());
      for (const part of access.split(".").slice(1)) expect(lines.join("\n")).not.toContain(part);
    } finally {
      await sidecar.close();
    }
  });
});
