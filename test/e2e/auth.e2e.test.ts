/**
 * Who may call what, against a real server on port 0 with a callers file, through a Connect client over gRPC: for
 * every RPC, no credentials and a wrong key are UNAUTHENTICATED, a caller holding every permission but the one the RPC
 * needs is PERMISSION_DENIED, and a caller holding just that one gets through. Health, reflection and the plain HTTP
 * routes stay open. Without a callers file the server runs open on loopback only (or when explicitly allowed).
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConnectError, createClient, type CallOptions, type Transport } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { PERMISSIONS, type Permission } from "../../src/domain/permissions.js";
import { Code, codeOf, connectTransport } from "../helpers/clients.js";
import { runMain, startServer, type StartedServer } from "../helpers/server.js";

const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const bearer = (key: string): CallOptions => ({ headers: { authorization: `Bearer ${key}` } });
const NO_CREDENTIALS: CallOptions = {};

/** Callers: "full" (every permission), and per permission p: "only-p" (just p) and "without-p" (all but p). */
const keys = new Map<string, string>();
const keyOf = (name: string): string => keys.get(name) ?? (keys.set(name, newKey()), keys.get(name)!);
const callers = [
  { name: "full", permissions: [...PERMISSIONS] },
  ...PERMISSIONS.flatMap((p) => [
    { name: `only-${p}`, permissions: [p] },
    { name: `without-${p}`, permissions: PERMISSIONS.filter((q) => q !== p) },
  ]),
].map((c) => ({ ...c, api_keys: [{ sha256: sha256(keyOf(c.name)) }] }));

let dir: string;
let server: StartedServer;
let transport: { transport: Transport; close(): void };
let tokens: ReturnType<typeof createClient<typeof TokenService>>;
let sessions: ReturnType<typeof createClient<typeof SessionService>>;
let keyService: ReturnType<typeof createClient<typeof KeyService>>;
let auditService: ReturnType<typeof createClient<typeof AuditService>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-auth-"));
  const file = join(dir, "callers.json");
  await writeFile(file, JSON.stringify({ callers }));
  server = await startServer({ TESSERA_CALLERS_FILE: file });
  transport = connectTransport("connect-grpc", server.url);
  tokens = createClient(TokenService, transport.transport);
  sessions = createClient(SessionService, transport.transport);
  keyService = createClient(KeyService, transport.transport);
  auditService = createClient(AuditService, transport.transport);
});
afterAll(async () => {
  transport?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A fresh login of `alice`, made by the caller that may do everything. */
const issued = () => tokens.issue({ subject: "alice", client: { deviceId: "d1" } }, bearer(keyOf("full")));

const RPCS: { rpc: string; permission: Permission; call: (opts: CallOptions) => Promise<unknown> }[] = [
  { rpc: "TokenService.Issue", permission: "issue", call: (o) => tokens.issue({ subject: "alice" }, o) },
  {
    rpc: "TokenService.Refresh",
    permission: "refresh",
    call: async (o) => tokens.refresh({ refreshToken: (await issued()).tokens!.refreshToken, client: { deviceId: "d1" } }, o),
  },
  { rpc: "TokenService.Revoke", permission: "revoke", call: (o) => tokens.revoke({ target: { case: "subject", value: "bob" } }, o) },
  { rpc: "TokenService.Introspect", permission: "introspect", call: (o) => tokens.introspect({ token: "not.a.token" }, o) },
  { rpc: "SessionService.ListSessions", permission: "sessions.read", call: (o) => sessions.listSessions({ subject: "alice" }, o) },
  {
    rpc: "SessionService.GetSession",
    permission: "sessions.read",
    call: async (o) => sessions.getSession({ sessionId: (await issued()).sessionId }, o),
  },
  { rpc: "KeyService.GetJwks", permission: "keys.read", call: (o) => keyService.getJwks({}, o) },
  { rpc: "KeyService.ListKeys", permission: "keys.read", call: (o) => keyService.listKeys({}, o) },
  { rpc: "KeyService.RotateKeys", permission: "keys.rotate", call: (o) => keyService.rotateKeys({}, o) },
  {
    rpc: "KeyService.RevokeKey",
    permission: "keys.rotate",
    // A key waiting to sign (made by the full caller), so revoking it leaves the signing key alone.
    call: async (o) => keyService.revokeKey({ kid: (await keyService.rotateKeys({}, bearer(keyOf("full")))).key!.kid }, o),
  },
  { rpc: "AuditService.ListAuditEvents", permission: "audit.read", call: (o) => auditService.listAuditEvents({}, o) },
];

describe("ErrorInfo reasons tell the UNAUTHENTICATED cases apart, on both paths", () => {
  it.each(["connect-grpc", "connect-h1"] as const)("%s", async (kind) => {
    const t = connectTransport(kind, server.url);
    try {
      const c = createClient(TokenService, t.transport);
      const reasonOf = async (call: Promise<unknown>) => {
        const err = ConnectError.from(await call.then(() => expect.fail("expected UNAUTHENTICATED"), (e: unknown) => e));
        expect(err.code).toBe(Code.Unauthenticated);
        return err.findDetails(ErrorInfoSchema).map((d) => `${d.domain}/${d.reason}`);
      };
      const full = bearer(keyOf("full"));
      expect(await reasonOf(c.introspect({ token: "x" }, NO_CREDENTIALS))).toEqual(["tessera/CALLER_UNAUTHENTICATED"]);
      expect(await reasonOf(c.introspect({ token: "x" }, bearer(newKey())))).toEqual(["tessera/CALLER_UNAUTHENTICATED"]);
      expect(await reasonOf(c.refresh({ refreshToken: "not.a.token", client: { deviceId: "d1" } }, full))).toEqual(["tessera/REFRESH_TOKEN_INVALID"]);
      const first = await c.issue({ subject: `reasons-${kind}`, client: { deviceId: "d1" } }, full);
      await c.refresh({ refreshToken: first.tokens!.refreshToken, client: { deviceId: "d1" } }, full);
      // The rotated token again, from another device: reuse, and the session is revoked.
      expect(await reasonOf(c.refresh({ refreshToken: first.tokens!.refreshToken, client: { deviceId: "elsewhere" } }, full))).toEqual([
        "tessera/REFRESH_TOKEN_REUSED",
      ]);
      const second = await c.issue({ subject: `reasons-${kind}`, client: { deviceId: "d1" } }, full);
      await c.revoke({ target: { case: "sessionId", value: second.sessionId } }, full);
      expect(await reasonOf(c.refresh({ refreshToken: second.tokens!.refreshToken, client: { deviceId: "d1" } }, full))).toEqual(["tessera/SESSION_ENDED"]);
    } finally {
      t.close();
    }
  });
});

it("the table covers every RPC the server offers", () => {
  const offered = [TokenService, SessionService, KeyService, AuditService].flatMap((s) => s.methods.map((m) => `${s.name}.${m.name}`));
  expect(RPCS.map((r) => r.rpc).sort()).toEqual(offered.sort());
});

describe.each(RPCS)("$rpc (needs $permission)", ({ rpc, permission, call }) => {
  it("without credentials: UNAUTHENTICATED", async () => {
    expect(await codeOf(call(NO_CREDENTIALS))).toBe(Code.Unauthenticated);
  });

  it("with an unknown key: UNAUTHENTICATED", async () => {
    expect(await codeOf(call(bearer(newKey())))).toBe(Code.Unauthenticated);
  });

  it(`a caller with every permission but ${permission}: PERMISSION_DENIED`, async () => {
    const err = await call(bearer(keyOf(`without-${permission}`))).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.PermissionDenied, rawMessage: `caller without-${permission} may not call ${rpc}` });
  });

  it(`a caller with just ${permission}: allowed`, async () => {
    await expect(call(bearer(keyOf(`only-${permission}`)))).resolves.toBeDefined();
  });
});

describe("credentials", () => {
  it.each([
    ["a Basic header", `Basic ${Buffer.from("full:x").toString("base64")}`],
    ["Bearer without a key", "Bearer "],
    ["the key's hash instead of the key", `Bearer ${sha256(keyOf("full"))}`],
    ["the key with a suffix", `Bearer ${keyOf("full")}x`],
  ])("%s: UNAUTHENTICATED with a short message", async (_what, authorization) => {
    const err = await tokens.introspect({ token: "x" }, { headers: { authorization } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.Unauthenticated, rawMessage: "invalid credentials" });
  });

  it("no credentials: 'missing credentials'", async () => {
    const err = await tokens.introspect({ token: "x" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.Unauthenticated, rawMessage: "missing credentials" });
  });

  it("the scheme is case-insensitive, and the key works over the Connect protocol on HTTP/1.1 too", async () => {
    const h1 = connectTransport("connect-h1", server.url);
    try {
      const client = createClient(TokenService, h1.transport);
      const res = await client.introspect({ token: "x" }, { headers: { authorization: `bearer ${keyOf("only-introspect")}` } });
      expect(res.active).toBe(false);
      expect(await codeOf(client.introspect({ token: "x" }))).toBe(Code.Unauthenticated);
    } finally {
      h1.close();
    }
  });
});

describe("open routes", () => {
  it("grpc.health.v1.Health answers without credentials", async () => {
    const health = createClient(Health, transport.transport);
    expect((await health.check({ service: "" })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it.each([
    ["v1", ReflectionV1],
    ["v1alpha", ReflectionV1alpha],
  ] as const)("server reflection %s answers without credentials", async (_v, service) => {
    const reflection = createClient(service as typeof ReflectionV1, transport.transport);
    async function* ask() {
      yield { messageRequest: { case: "listServices" as const, value: "" } };
    }
    const names: string[] = [];
    for await (const res of reflection.serverReflectionInfo(ask())) {
      if (res.messageResponse.case === "listServicesResponse") names.push(...res.messageResponse.value.service.map((s) => s.name));
    }
    expect(names).toEqual(expect.arrayContaining(["tessera.v1.TokenService", "tessera.v1.KeyService"]));
  });

  it.each(["/healthz", "/readyz", "/.well-known/jwks.json"])("GET %s answers without credentials", async (path) => {
    const res = await fetch(`${server.url}${path}`);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });
});

describe("the log", () => {
  it("names the caller on every line it causes, and never holds an API key", async () => {
    const before = server.logs.length;
    await tokens.introspect({ token: "x" }, bearer(keyOf("only-introspect")));
    await codeOf(tokens.issue({ subject: "alice" }, bearer(keyOf("without-issue"))));
    await codeOf(tokens.issue({ subject: "alice" }, bearer(newKey())));
    const lines = server.logs.slice(before).filter((l) => l.msg === "rpc" || l.msg === "rpc failed");
    expect(lines).toEqual([
      expect.objectContaining({ caller: "only-introspect", code: "ok", rpc: { service: "tessera.v1.TokenService", method: "Introspect" } }),
      expect.objectContaining({ caller: "without-issue", code: "PermissionDenied" }),
      expect.objectContaining({ code: "Unauthenticated" }),
    ]);
    expect(lines[2]).not.toHaveProperty("caller");

    const everything = JSON.stringify(server.logs);
    for (const key of keys.values()) expect(everything).not.toContain(key);
    expect(server.logs).toContainEqual(expect.objectContaining({ level: "info", auth: "callers" }));
  });
});

describe("without a callers file", () => {
  it("on loopback: runs open, says so in a warn line, and calls are 'anonymous'", async () => {
    const open = await startServer({});
    const t = connectTransport("connect-grpc", open.url);
    try {
      const client = createClient(TokenService, t.transport);
      await client.introspect({ token: "x" });
      expect(open.logs).toContainEqual(expect.objectContaining({ level: "warn", auth: "open" }));
      expect(open.logs).toContainEqual(expect.objectContaining({ msg: "rpc", caller: "anonymous" }));
    } finally {
      t.close();
      await open.close();
    }
  });

  it("on a non-loopback address: refuses to start, naming TESSERA_CALLERS_FILE and TESSERA_ALLOW_UNAUTHENTICATED", async () => {
    await expect(startServer({ TESSERA_LISTEN: "0.0.0.0:0" })).rejects.toThrow(
      /^TESSERA_CALLERS_FILE: .*TESSERA_ALLOW_UNAUTHENTICATED=true/,
    );
  });

  it("the real process exits 2 on a non-loopback address", async () => {
    const run = runMain({ TESSERA_LISTEN: "0.0.0.0:0", TESSERA_CALLERS_FILE: "", TESSERA_ALLOW_UNAUTHENTICATED: "" });
    expect(await run.exited).toBe(2);
    expect(run.stderr.join("\n")).toMatch(/TESSERA_CALLERS_FILE.*TESSERA_ALLOW_UNAUTHENTICATED/);
  });

  it("on a non-loopback address with TESSERA_ALLOW_UNAUTHENTICATED=true: starts open and warns", async () => {
    const open = await startServer({ TESSERA_LISTEN: "0.0.0.0:0", TESSERA_ALLOW_UNAUTHENTICATED: "true" });
    const t = connectTransport("connect-grpc", open.url);
    try {
      const res = await createClient(TokenService, t.transport).issue({ subject: "alice" });
      expect(res.sessionId).not.toBe("");
      expect(open.logs).toContainEqual(
        expect.objectContaining({ level: "warn", auth: "open", msg: expect.stringContaining("TESSERA_ALLOW_UNAUTHENTICATED=true") }),
      );
    } finally {
      t.close();
      await open.close();
    }
  });
});
