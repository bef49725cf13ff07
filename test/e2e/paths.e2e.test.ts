/**
 * The two server paths answer alike. Unary gRPC calls to Tessera's own methods take the lean path
 * (src/server/grpc-unary.ts) unless TESSERA_GRPC_FAST_PATH=false sends them to connect-node; both run one call
 * pipeline (src/api/pipeline.ts) and must be indistinguishable to a client.
 *
 * Two in-process servers with the same configuration (a callers file with callers of different permissions, a
 * per-caller and a per-subject rate limit, each on its own key prefix of the suite's Redis): "lean" (the default) and
 * "connect-node" (TESSERA_GRPC_FAST_PATH=false).
 *
 * - A table covering every RPC of the four services, good and bad requests (validation errors, oversized fields and
 *   messages, bad enums, a missing oneof, malformed and forged tokens, missing and bad credentials, missing
 *   permissions, both rate limits): each request goes to both servers through connect's gRPC transport (HTTP/2),
 *   after the same preparation on each, and the outcomes must be equal: a success's response with what differs per
 *   call (tokens, ids, times, key material) reduced to its shape, an error's code, raw message and google.rpc details
 *   (BadRequest field violations, RetryInfo). Each outcome is also checked against what the case expects, so two
 *   equally wrong answers fail too. Request compression (gzip, a gzip bomb, an encoding the server lacks) likewise.
 * - A subset through @grpc/grpc-js, whose protobufjs decodes the lean path's own encoder's bytes.
 * - That the lean server really serves on the lean path, by a difference a raw HTTP/2 client can see.
 * - A request body that is still incomplete at the caller's deadline (raw HTTP/2).
 * - Unknown services and methods, and a path prefix before a real one: UNIMPLEMENTED through every client kind on both
 *   servers.
 * - Afterwards: both servers wrote the same RPC log lines, count the same RPCs in /metrics and stored the same audit
 *   trail (these three read what the tests before them did; run the file whole).
 * - A second pair on a Redis of this file's own: deadlines (a deadline already passed; grpc-timeout on calls that
 *   wait on a paused Redis), a call its client cancels, and a store outage (Redis killed): every RPC the same.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, createFileRegistry, type DescService } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, file_google_protobuf_empty } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type CallOptions, type Client, type Transport } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { compressionBrotli, compressionGzip, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { BadRequestSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AuditEventType, AuditService, AuditSeverity } from "../../gen/tessera/v1/audit_pb.js";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { KeyService, KeyState } from "../../gen/tessera/v1/key_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { InactiveReason, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { PERMISSIONS, type Permission } from "../../src/domain/permissions.js";
import { connectTransport, grpcJsClient, toGrpcStruct, type ClientKind } from "../helpers/clients.js";
import { RedisServer } from "../helpers/redis-server.js";
import { redisScope, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";

// ---------------------------------------------------------------------------------------------------------------
// Callers, configuration

const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");

/** Who calls. "setup" only prepares fixtures, so the calls under test spend budgets of their own. */
const CALLERS = {
  setup: [...PERMISSIONS],
  admin: [...PERMISSIONS],
  grpcjs: [...PERMISSIONS],
  reader: ["introspect", "sessions.read", "keys.read"],
  auditor: ["audit.read"],
  limited: ["introspect"],
} satisfies Record<string, Permission[]>;
type CallerName = keyof typeof CALLERS;
const KEYS = Object.fromEntries(Object.keys(CALLERS).map((name) => [name, newKey()])) as Record<CallerName, string>;

/** TESSERA_RATE_CALLER: every caller, per RPC. Only "limited" is meant to reach it. */
const CALLER_LIMIT = 40;
const CALLER_WINDOW_MS = 60_000;
/** TESSERA_RATE_SUBJECT: Issue (and Refresh) per subject. */
const SUBJECT_LIMIT = 3;

/** TESSERA_READ_TIMEOUT: the longest a request body may take to arrive (short, so a test can outwait it). */
const READ_TIMEOUT_MS = 3_000;

/** Who a call claims to be: a caller of the file, nobody, an unknown key, or a header that is not "Bearer <key>". */
type Who = CallerName | "none" | "unknown-key" | "basic";

function credentials(who: Who): Record<string, string> {
  if (who === "none") return {};
  if (who === "unknown-key") return { authorization: `Bearer ${newKey()}` };
  if (who === "basic") return { authorization: `Basic ${Buffer.from("admin:x").toString("base64")}` };
  return { authorization: `Bearer ${KEYS[who]}` };
}
const callAs = (who: Who, extra: Record<string, string> = {}): CallOptions => ({ headers: { ...credentials(who), ...extra } });

let dir: string;
let callersFile: string;

/** The configuration both servers of a pair share (the lean one adds nothing, the other TESSERA_GRPC_FAST_PATH=false). */
function sharedEnv(redis: Record<string, string>, limits = true): Record<string, string> {
  return {
    ...redis,
    TESSERA_CALLERS_FILE: callersFile,
    TESSERA_ISSUER: "https://paths.test",
    TESSERA_AUDIENCE: "api",
    TESSERA_READ_TIMEOUT: `${READ_TIMEOUT_MS}ms`,
    ...(limits ? { TESSERA_RATE_CALLER: `${CALLER_LIMIT}/${CALLER_WINDOW_MS / 1000}s`, TESSERA_RATE_SUBJECT: `${SUBJECT_LIMIT}/60s` } : {}),
  };
}

const MODES = [
  { name: "lean", env: {} },
  { name: "connect-node", env: { TESSERA_GRPC_FAST_PATH: "false" } },
] as const;
type ModeName = (typeof MODES)[number]["name"];

// ---------------------------------------------------------------------------------------------------------------
// One server and its clients

interface Side {
  readonly mode: ModeName;
  readonly server: StartedServer;
  readonly scope: RedisScope;
  readonly tokens: Client<typeof TokenService>;
  readonly sessions: Client<typeof SessionService>;
  readonly keys: Client<typeof KeyService>;
  readonly audit: Client<typeof AuditService>;
  /** A gRPC transport (HTTP/2) with other options, closed with the side. */
  transport(options?: Omit<Parameters<typeof createGrpcTransport>[0], "baseUrl" | "sessionManager">): Transport;
  close(): Promise<void>;
}

async function startSide(
  mode: (typeof MODES)[number],
  redisUrl: string,
  env: (redis: Record<string, string>) => Record<string, string>,
): Promise<Side> {
  const scope = redisScope(redisUrl, `paths-${mode.name}`);
  const server = await startServer({ ...env(scope.env), ...mode.env });
  const managers: Http2SessionManager[] = [];
  const transport: Side["transport"] = (options = {}) => {
    const sessionManager = new Http2SessionManager(server.url);
    managers.push(sessionManager);
    return createGrpcTransport({ ...options, baseUrl: server.url, sessionManager });
  };
  const t = transport();
  return {
    mode: mode.name,
    server,
    scope,
    tokens: createClient(TokenService, t),
    sessions: createClient(SessionService, t),
    keys: createClient(KeyService, t),
    audit: createClient(AuditService, t),
    transport,
    async close() {
      for (const m of managers) m.abort();
      await server.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Outcomes: what a client can see of an answer, with per-call values reduced to their shape

type Outcome =
  | { ok: true; response: unknown }
  | {
      ok: false;
      code: string;
      message: string;
      badRequest: { field: string; description: string }[][];
      /** One entry per RetryInfo: "within the window" or the odd delay. */
      retryInfo: string[];
      otherDetails: number;
    };

async function outcome(call: Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: true, response: shape(await call) };
  } catch (e) {
    return errorOutcome(ConnectError.from(e));
  }
}

function errorOutcome(err: ConnectError): Outcome {
  const bad = err.findDetails(BadRequestSchema);
  const retry = err.findDetails(RetryInfoSchema);
  return {
    ok: false,
    code: Code[err.code] ?? String(err.code),
    message: err.rawMessage,
    badRequest: bad.map((b) => b.fieldViolations.map((v) => ({ field: v.field, description: v.description }))),
    retryInfo: retry.map((r) => {
      const ms = Number(r.retryDelay?.seconds ?? 0n) * 1000 + (r.retryDelay?.nanos ?? 0) / 1e6;
      return ms > 0 && ms <= CALLER_WINDOW_MS ? "within the window" : `retry delay ${ms}ms`;
    }),
    otherDetails: err.details.length - bad.length - retry.length,
  };
}

const TIME_KEYS = new Set([
  "createdAt",
  "expires_at", // audit details
  "idle_expires_at",
  "activatesAt",
  "retiredAt",
  "removedAt",
  "revokedAt",
  "lastUsedAt",
  "expiresAt",
  "idleExpiresAt",
  "accessExpiresAt",
  "refreshExpiresAt",
  "issuedAt",
  "notBefore",
  "time",
]);
const ID_KEYS = new Set(["jti", "kid", "signing_kid", "requestId", "id", "nextPageToken"]);
const KEY_MATERIAL = new Set(["x", "y", "n", "e"]);
const SESSION_ID = /^[A-Za-z0-9_-]{38}$/;

/**
 * A response (protobuf-es message or grpc-js object) as plain data, with what legitimately differs per call replaced
 * by its shape: tokens by their header and claims (without jti, sid and times, but with their lifetime), session ids,
 * jtis, kids, request ids, audit ids and page tokens by a marker, times by "<time>", key material by its length.
 */
function shape(v: unknown, key = ""): unknown {
  if (v === null || v === undefined) return v;
  if (TIME_KEYS.has(key)) return "<time>";
  if (typeof v === "string") {
    if (v === "") return v;
    if (key === "accessToken" || key === "refreshToken") return jwtShape(v);
    if (key === "sessionId" || key === "new_session") return SESSION_ID.test(v) ? "<session id>" : v;
    if (ID_KEYS.has(key)) return `<${key}>`;
    if (KEY_MATERIAL.has(key)) return `<${v.length} characters>`;
    return v;
  }
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  if (Array.isArray(v)) return v.map((x) => shape(x, key));
  if (typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v as Record<string, unknown>)
        .filter(([k]) => !k.startsWith("$"))
        .map(([k, x]) => [k, shape(x, k)]),
    );
  }
  return v;
}

function jwtShape(token: string): unknown {
  const header = decodeProtectedHeader(token);
  const { jti, sid, iat, nbf, exp, ...claims } = decodeJwt(token);
  return {
    header: { ...header, kid: header.kid === undefined ? "none" : "<kid>" },
    claims: shape(claims),
    jti: typeof jti === "string" && jti.length > 0,
    sid: typeof sid === "string" && SESSION_ID.test(sid),
    // A refresh token keeps its session's absolute expiry, so its exp - iat is a second shorter when the Refresh
    // crossed a second boundary after the Issue, as each path's own Issue and Refresh may: compared to the minute.
    lifetimeSeconds: header.typ === "rt+jwt" ? Math.round(((exp ?? 0) - (iat ?? 0)) / 60) * 60 : (exp ?? 0) - (iat ?? 0),
    nbfIsIat: nbf === iat,
  };
}

/** An outcome in one line: "ok" or "<Code>: <message>". */
const summary = (o: Outcome): string => (o.ok ? "ok" : `${o.code}: ${o.message}`);

/**
 * What a case expects, checked on the connect-node side once both sides agree (so that two equal wrong answers fail
 * too): success ("ok", or a success whose shaped response matches `response`), or an error.
 */
type Want = "ok" | { response: unknown } | { code: Code; message?: string | RegExp; field?: string; retry?: true };

function expectWanted(got: Outcome, want: Want): void {
  if (want === "ok" || "response" in want) {
    expect(got, "expected success").toMatchObject(want === "ok" ? { ok: true } : { ok: true, response: want.response });
    return;
  }
  expect(got).toMatchObject({ ok: false, code: Code[want.code] });
  if (got.ok) return;
  if (typeof want.message === "string") expect(got.message).toBe(want.message);
  else if (want.message) expect(got.message).toMatch(want.message);
  if (want.field !== undefined) expect(got.badRequest.map((b) => b.map((v) => v.field))).toEqual([[want.field]]);
  else if (want.code !== Code.InvalidArgument) expect(got.badRequest).toEqual([]);
  expect(got.retryInfo).toEqual(want.retry ? ["within the window"] : []);
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures (made by "setup" on the side under test)

const PHONE = { deviceId: "phone-p", userAgent: "tessera-paths/1.0", ip: "192.0.2.44", platform: "ios" };
const LAPTOP = { deviceId: "laptop-p", userAgent: "tessera-paths/1.0", ip: "2001:db8::44", platform: "web" };

interface Fixture {
  access: string;
  refresh: string;
  sessionId: string;
  /** A rotated-out refresh token (Refresh cases). */
  rotated?: string;
  /** A key id (RevokeKey cases). */
  kid?: string;
}

async function issue(s: Side, subject: string, client: typeof PHONE = PHONE): Promise<Fixture> {
  const res = await s.tokens.issue({ subject, scopes: ["read"], client }, callAs("setup"));
  return { access: res.tokens!.accessToken, refresh: res.tokens!.refreshToken, sessionId: res.sessionId };
}

/**
 * The audit trail is written behind (~50 ms). A client would poll; the test asks the app to write its buffer now
 * (app.audit.flush(), an internal) so both servers hold the same events when they are read.
 */
async function auditWritten(s: Side): Promise<void> {
  await s.server.app.audit.flush();
}

interface Case {
  rpc: string;
  name: string;
  /** Default: admin. */
  as?: Who;
  headers?: Record<string, string>;
  prepare?: (s: Side) => Promise<Fixture | undefined>;
  call: (s: Side, o: CallOptions, f: Fixture) => Promise<unknown>;
  want: Want;
}

const long = (n: number, c = "a") => c.repeat(n);

/**
 * Values that stress an encoder (the lean path writes its answers with its own, src/server/proto-encode.ts): UTF-8 of
 * 2, 3 and 4 bytes, strings whose length needs a 2-byte varint, nested lists and objects, null, negative, fractional,
 * huge and -0 numbers, integer-like keys (which JavaScript orders first).
 */
const UNICODE_SUBJECT = "ünïcødé-用户-😀";
const RICH_CLAIMS = {
  tenant: "äcme-株式会社-🏢",
  "10": "ten",
  "2": "two",
  blob: long(300, "é"),
  nested: { list: [1, -2.5, "x", true, null, { deep: ["😀", []] }], empty: {} },
  numbers: [0, -0, 1e21, -1e-7, Number.MAX_SAFE_INTEGER],
  flag: false,
  nothing: null,
};
const UNICODE_CLIENT = { deviceId: "gerät-📱", userAgent: `Mozilla/5.0 (Ünïcødé; ${long(150, "ж")})`, ip: "2001:db8::1:2", platform: "ändroid" };
const garbageJwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.AAAA";
/** The token with its payload changed (another subject) and its signature kept. */
function forge(token: string): string {
  const [header, payload, signature] = token.split(".");
  const claims = JSON.parse(Buffer.from(payload!, "base64url").toString("utf8")) as Record<string, unknown>;
  return `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: "someone-else" })).toString("base64url")}.${signature}`;
}
const unknownSession = `${"A".repeat(16)}${"B".repeat(22)}`;

const CASES: Case[] = [
  // TokenService.Issue
  {
    rpc: "TokenService.Issue",
    name: "every field",
    call: (s, o) =>
      s.tokens.issue(
        {
          subject: "paths-issue",
          audience: ["orders", "billing"],
          scopes: ["read", "write"],
          extraClaims: { tenant: "acme", tier: 3, beta: true, roles: ["a", "b"] },
          client: PHONE,
          accessTtl: { seconds: 600n },
          refreshTtl: { seconds: 86_400n },
        },
        o,
      ),
    want: { response: { sessionId: "<session id>", tokens: { tokenType: "Bearer", accessToken: { lifetimeSeconds: 600 } } } },
  },
  {
    rpc: "TokenService.Issue",
    name: "defaults only",
    call: (s, o) => s.tokens.issue({ subject: "paths-issue-min" }, o),
    want: { response: { tokens: { accessToken: { lifetimeSeconds: 900, claims: { aud: ["api"], sub: "paths-issue-min" } } } } },
  },
  {
    rpc: "TokenService.Issue",
    name: "empty subject",
    call: (s, o) => s.tokens.issue({ subject: "" }, o),
    want: { code: Code.InvalidArgument, message: "subject: must not be empty", field: "subject" },
  },
  {
    rpc: "TokenService.Issue",
    name: "subject of 257 characters",
    call: (s, o) => s.tokens.issue({ subject: long(257) }, o),
    want: { code: Code.InvalidArgument, message: "subject: longer than 256 characters", field: "subject" },
  },
  {
    rpc: "TokenService.Issue",
    name: "subject with a control character",
    call: (s, o) => s.tokens.issue({ subject: "a\u0000b" }, o),
    want: { code: Code.InvalidArgument, field: "subject" },
  },
  {
    rpc: "TokenService.Issue",
    name: "17 audiences",
    call: (s, o) => s.tokens.issue({ subject: "paths-aud", audience: Array.from({ length: 17 }, (_, i) => `aud-${i}`) }, o),
    want: { code: Code.InvalidArgument, message: "audience: more than 16 entries", field: "audience" },
  },
  {
    rpc: "TokenService.Issue",
    name: "a scope with a space",
    call: (s, o) => s.tokens.issue({ subject: "paths-scope", scopes: ["read", "has space"] }, o),
    want: { code: Code.InvalidArgument, message: "scopes[1]: is not a valid scope token (RFC 6749 3.3)", field: "scopes[1]" },
  },
  {
    rpc: "TokenService.Issue",
    name: "a reserved extra claim",
    call: (s, o) => s.tokens.issue({ subject: "paths-claim", extraClaims: { sub: "someone-else" } }, o),
    want: { code: Code.InvalidArgument, field: "extra_claims" },
  },
  {
    rpc: "TokenService.Issue",
    name: "extra claims over 4096 bytes",
    call: (s, o) => s.tokens.issue({ subject: "paths-claims", extraClaims: { blob: long(4100) } }, o),
    want: { code: Code.InvalidArgument, message: "extra_claims: larger than 4096 bytes as JSON", field: "extra_claims" },
  },
  {
    rpc: "TokenService.Issue",
    name: "client.ip not an address",
    call: (s, o) => s.tokens.issue({ subject: "paths-ip", client: { ...PHONE, ip: "300.1.2.3" } }, o),
    want: { code: Code.InvalidArgument, message: "client.ip: is not an IPv4 or IPv6 address", field: "client.ip" },
  },
  {
    rpc: "TokenService.Issue",
    name: "client.user_agent of 513 characters",
    call: (s, o) => s.tokens.issue({ subject: "paths-ua", client: { ...PHONE, userAgent: long(513) } }, o),
    want: { code: Code.InvalidArgument, message: "client.user_agent: longer than 512 characters", field: "client.user_agent" },
  },
  {
    rpc: "TokenService.Issue",
    name: "access_ttl above TESSERA_ACCESS_TTL_MAX",
    call: (s, o) => s.tokens.issue({ subject: "paths-ttl", accessTtl: { seconds: 7200n } }, o),
    want: { code: Code.InvalidArgument, field: "access_ttl" },
  },
  {
    rpc: "TokenService.Issue",
    name: "access_ttl not in whole milliseconds",
    call: (s, o) => s.tokens.issue({ subject: "paths-ttl2", accessTtl: { seconds: 60n, nanos: 5 } }, o),
    want: { code: Code.InvalidArgument, message: "access_ttl: must be whole milliseconds", field: "access_ttl" },
  },
  {
    rpc: "TokenService.Issue",
    name: "a request larger than TESSERA_MAX_REQUEST_BYTES",
    call: (s, o) => s.tokens.issue({ subject: "paths-big", client: { ...PHONE, userAgent: long(20_000) } }, o),
    want: { code: Code.ResourceExhausted, message: /^message size \d+ is larger than configured readMaxBytes 16384$/ },
  },
  {
    rpc: "TokenService.Issue",
    name: "no credentials",
    as: "none",
    call: (s, o) => s.tokens.issue({ subject: "paths-x" }, o),
    want: { code: Code.Unauthenticated, message: "missing credentials" },
  },
  {
    rpc: "TokenService.Issue",
    name: "an unknown API key",
    as: "unknown-key",
    call: (s, o) => s.tokens.issue({ subject: "paths-x" }, o),
    want: { code: Code.Unauthenticated, message: "invalid credentials" },
  },
  {
    rpc: "TokenService.Issue",
    name: "a Basic authorization header",
    as: "basic",
    call: (s, o) => s.tokens.issue({ subject: "paths-x" }, o),
    want: { code: Code.Unauthenticated, message: "invalid credentials" },
  },
  {
    rpc: "TokenService.Issue",
    name: "a caller without issue",
    as: "reader",
    call: (s, o) => s.tokens.issue({ subject: "paths-x" }, o),
    want: { code: Code.PermissionDenied, message: "caller reader may not call TokenService.Issue" },
  },
  {
    rpc: "TokenService.Issue",
    name: "an invalid request without credentials (credentials are checked first)",
    as: "none",
    call: (s, o) => s.tokens.issue({ subject: "" }, o),
    want: { code: Code.Unauthenticated, message: "missing credentials" },
  },
  {
    rpc: "TokenService.Issue",
    name: "the subject's rate limit (TESSERA_RATE_SUBJECT)",
    prepare: async (s) => {
      for (let i = 0; i < SUBJECT_LIMIT; i++) await issue(s, "paths-subject-limit");
      return undefined;
    },
    call: (s, o) => s.tokens.issue({ subject: "paths-subject-limit", client: PHONE }, o),
    want: { code: Code.ResourceExhausted, message: "rate limit exceeded for this subject", retry: true },
  },
  {
    rpc: "TokenService.Issue",
    name: "a caller-given x-request-id",
    headers: { "x-request-id": "paths-request-1" },
    call: (s, o) => s.tokens.issue({ subject: "paths-request-id", client: LAPTOP }, o),
    want: "ok",
  },

  {
    rpc: "TokenService.Issue",
    name: "a unicode subject, rich extra claims and a unicode client",
    call: (s, o) =>
      s.tokens.issue(
        { subject: UNICODE_SUBJECT, audience: ["api", "äpi-😀"], scopes: ["read"], extraClaims: RICH_CLAIMS, client: UNICODE_CLIENT },
        o,
      ),
    want: { response: { tokens: { accessToken: { claims: { sub: UNICODE_SUBJECT, aud: ["api", "äpi-😀"], tenant: RICH_CLAIMS.tenant } } } } },
  },

  // TokenService.Refresh
  {
    rpc: "TokenService.Refresh",
    name: "the current refresh token",
    prepare: (s) => issue(s, "paths-refresh"),
    call: (s, o, f) => s.tokens.refresh({ refreshToken: f.refresh, client: PHONE }, o),
    want: { response: { sessionId: "<session id>", tokens: { tokenType: "Bearer", refreshToken: { header: { typ: "rt+jwt" } } } } },
  },
  {
    rpc: "TokenService.Refresh",
    name: "a rotated-out token from another device (reuse)",
    prepare: async (s) => {
      const f = await issue(s, "paths-reuse");
      await s.tokens.refresh({ refreshToken: f.refresh, client: PHONE }, callAs("setup"));
      return { ...f, rotated: f.refresh };
    },
    call: (s, o, f) => s.tokens.refresh({ refreshToken: f.rotated!, client: LAPTOP }, o),
    want: { code: Code.Unauthenticated, message: "refresh token reuse detected; session revoked" },
  },
  {
    rpc: "TokenService.Refresh",
    name: "an access token",
    prepare: (s) => issue(s, "paths-refresh-access"),
    call: (s, o, f) => s.tokens.refresh({ refreshToken: f.access, client: PHONE }, o),
    want: { code: Code.Unauthenticated, message: "invalid refresh token" },
  },
  {
    rpc: "TokenService.Refresh",
    name: "a malformed token",
    call: (s, o) => s.tokens.refresh({ refreshToken: "not.a.jwt", client: PHONE }, o),
    want: { code: Code.Unauthenticated, message: "invalid refresh token" },
  },
  {
    rpc: "TokenService.Refresh",
    name: "a token with a bad signature",
    call: (s, o) => s.tokens.refresh({ refreshToken: garbageJwt, client: PHONE }, o),
    want: { code: Code.Unauthenticated, message: "invalid refresh token" },
  },
  {
    rpc: "TokenService.Refresh",
    name: "an empty token",
    call: (s, o) => s.tokens.refresh({ refreshToken: "", client: PHONE }, o),
    want: { code: Code.InvalidArgument, message: "refresh_token: must not be empty", field: "refresh_token" },
  },
  {
    rpc: "TokenService.Refresh",
    name: "a token over TESSERA_MAX_TOKEN_LENGTH",
    call: (s, o) => s.tokens.refresh({ refreshToken: long(8193, "x"), client: PHONE }, o),
    want: { code: Code.InvalidArgument, message: "refresh_token: longer than 8192 characters", field: "refresh_token" },
  },
  {
    rpc: "TokenService.Refresh",
    name: "a caller without refresh",
    as: "reader",
    call: (s, o) => s.tokens.refresh({ refreshToken: "x", client: PHONE }, o),
    want: { code: Code.PermissionDenied, message: "caller reader may not call TokenService.Refresh" },
  },

  // TokenService.Revoke
  {
    rpc: "TokenService.Revoke",
    name: "an access token",
    prepare: (s) => issue(s, "paths-revoke-at"),
    call: (s, o, f) => s.tokens.revoke({ target: { case: "token", value: f.access }, reason: "lost" }, o),
    want: { response: { sessionsRevoked: 0, tokenRevoked: true } },
  },
  {
    rpc: "TokenService.Revoke",
    name: "a refresh token",
    prepare: (s) => issue(s, "paths-revoke-rt"),
    call: (s, o, f) => s.tokens.revoke({ target: { case: "token", value: f.refresh } }, o),
    want: { response: { sessionsRevoked: 1, tokenRevoked: false } },
  },
  {
    rpc: "TokenService.Revoke",
    name: "a session",
    prepare: (s) => issue(s, "paths-revoke-sid"),
    call: (s, o, f) => s.tokens.revoke({ target: { case: "sessionId", value: f.sessionId } }, o),
    want: { response: { sessionsRevoked: 1, tokenRevoked: false } },
  },
  {
    rpc: "TokenService.Revoke",
    name: "a subject with two sessions",
    prepare: async (s) => {
      await issue(s, "paths-revoke-sub", PHONE);
      return issue(s, "paths-revoke-sub", LAPTOP);
    },
    call: (s, o) => s.tokens.revoke({ target: { case: "subject", value: "paths-revoke-sub" }, reason: "logout" }, o),
    want: { response: { sessionsRevoked: 2, tokenRevoked: false } },
  },
  {
    rpc: "TokenService.Revoke",
    name: "an unknown session (idempotent: 0)",
    call: (s, o) => s.tokens.revoke({ target: { case: "sessionId", value: unknownSession } }, o),
    want: { response: { sessionsRevoked: 0, tokenRevoked: false } },
  },
  {
    rpc: "TokenService.Revoke",
    name: "no target (missing oneof)",
    call: (s, o) => s.tokens.revoke({ reason: "nothing" }, o),
    want: { code: Code.InvalidArgument, message: "target: set one of token, session_id or subject", field: "target" },
  },
  {
    rpc: "TokenService.Revoke",
    name: "a malformed token",
    call: (s, o) => s.tokens.revoke({ target: { case: "token", value: "garbage" } }, o),
    want: { code: Code.InvalidArgument, field: "token" },
  },
  {
    rpc: "TokenService.Revoke",
    name: "a malformed session id",
    call: (s, o) => s.tokens.revoke({ target: { case: "sessionId", value: "not a session!" } }, o),
    want: { code: Code.InvalidArgument, message: "session_id: is not a session id", field: "session_id" },
  },
  {
    rpc: "TokenService.Revoke",
    name: "an empty subject",
    call: (s, o) => s.tokens.revoke({ target: { case: "subject", value: "" } }, o),
    want: { code: Code.InvalidArgument, message: "subject: must not be empty", field: "subject" },
  },
  {
    rpc: "TokenService.Revoke",
    name: "a reason of 257 characters",
    call: (s, o) => s.tokens.revoke({ target: { case: "subject", value: "paths-nobody" }, reason: long(257) }, o),
    want: { code: Code.InvalidArgument, message: "reason: longer than 256 characters", field: "reason" },
  },
  {
    rpc: "TokenService.Revoke",
    name: "a caller without revoke",
    as: "reader",
    call: (s, o) => s.tokens.revoke({ target: { case: "subject", value: "paths-nobody" } }, o),
    want: { code: Code.PermissionDenied, message: "caller reader may not call TokenService.Revoke" },
  },

  // TokenService.Introspect
  {
    rpc: "TokenService.Introspect",
    name: "an active access token",
    prepare: (s) => issue(s, "paths-introspect"),
    call: (s, o, f) => s.tokens.introspect({ token: f.access, audience: "api" }, o),
    want: { response: { active: true, subject: "paths-introspect", tokenType: TokenType.ACCESS, scopes: ["read"] } },
  },
  {
    rpc: "TokenService.Introspect",
    name: "a token with a unicode subject and rich claims",
    prepare: async (s) => {
      const res = await s.tokens.issue(
        { subject: `${UNICODE_SUBJECT}-i`, audience: ["api", "äpi-😀"], scopes: ["read", "wr:te"], extraClaims: RICH_CLAIMS, client: UNICODE_CLIENT },
        callAs("setup"),
      );
      return { access: res.tokens!.accessToken, refresh: res.tokens!.refreshToken, sessionId: res.sessionId };
    },
    call: (s, o, f) => s.tokens.introspect({ token: f.access, audience: "äpi-😀" }, o),
    // The claims as they travel in the token's JSON payload (-0 becomes 0).
    want: {
      response: { active: true, subject: `${UNICODE_SUBJECT}-i`, audience: ["api", "äpi-😀"], claims: JSON.parse(JSON.stringify(RICH_CLAIMS)) },
    },
  },
  {
    rpc: "TokenService.Introspect",
    name: "an active refresh token as REFRESH",
    prepare: (s) => issue(s, "paths-introspect-rt"),
    call: (s, o, f) => s.tokens.introspect({ token: f.refresh, expectedType: TokenType.REFRESH }, o),
    want: { response: { active: true, subject: "paths-introspect-rt", tokenType: TokenType.REFRESH } },
  },
  {
    rpc: "TokenService.Introspect",
    name: "a revoked access token",
    prepare: async (s) => {
      const f = await issue(s, "paths-introspect-revoked");
      await s.tokens.revoke({ target: { case: "sessionId", value: f.sessionId } }, callAs("setup"));
      return f;
    },
    call: (s, o, f) => s.tokens.introspect({ token: f.access }, o),
    want: { response: { active: false, inactiveReason: InactiveReason.REVOKED } },
  },
  {
    rpc: "TokenService.Introspect",
    name: "a malformed token (active: false, not an error)",
    call: (s, o) => s.tokens.introspect({ token: "not a token" }, o),
    want: { response: { active: false, inactiveReason: InactiveReason.MALFORMED } },
  },
  {
    rpc: "TokenService.Introspect",
    name: "a bad signature",
    call: (s, o, f) => s.tokens.introspect({ token: forge(f.access) }, o),
    prepare: (s) => issue(s, "paths-introspect-forged"),
    want: { response: { active: false, inactiveReason: InactiveReason.BAD_SIGNATURE } },
  },
  {
    rpc: "TokenService.Introspect",
    name: "an unknown expected_type (bad enum)",
    call: (s, o) => s.tokens.introspect({ token: "x", expectedType: 7 as TokenType }, o),
    want: { code: Code.InvalidArgument, message: "expected_type: unknown token type", field: "expected_type" },
  },
  {
    rpc: "TokenService.Introspect",
    name: "an empty token",
    call: (s, o) => s.tokens.introspect({ token: "" }, o),
    want: { code: Code.InvalidArgument, message: "token: must not be empty", field: "token" },
  },
  {
    rpc: "TokenService.Introspect",
    name: "a token over TESSERA_MAX_TOKEN_LENGTH",
    call: (s, o) => s.tokens.introspect({ token: long(8193, "x") }, o),
    want: { code: Code.InvalidArgument, message: "token: longer than 8192 characters", field: "token" },
  },
  {
    rpc: "TokenService.Introspect",
    name: "an audience of 257 characters",
    call: (s, o) => s.tokens.introspect({ token: "x", audience: long(257) }, o),
    want: { code: Code.InvalidArgument, message: "audience: longer than 256 characters", field: "audience" },
  },
  {
    rpc: "TokenService.Introspect",
    name: "no credentials",
    as: "none",
    call: (s, o) => s.tokens.introspect({ token: "x" }, o),
    want: { code: Code.Unauthenticated, message: "missing credentials" },
  },
  {
    rpc: "TokenService.Introspect",
    name: "a caller without introspect",
    as: "auditor",
    call: (s, o) => s.tokens.introspect({ token: "x" }, o),
    want: { code: Code.PermissionDenied, message: "caller auditor may not call TokenService.Introspect" },
  },
  {
    rpc: "TokenService.Introspect",
    name: "the caller's rate limit (TESSERA_RATE_CALLER)",
    as: "limited",
    prepare: async (s) => {
      for (let i = 0; i < CALLER_LIMIT; i++) await s.tokens.introspect({ token: "x" }, callAs("limited"));
      return undefined;
    },
    call: (s, o) => s.tokens.introspect({ token: "x" }, o),
    want: { code: Code.ResourceExhausted, message: "rate limit exceeded for this caller and method", retry: true },
  },

  // SessionService
  {
    rpc: "SessionService.ListSessions",
    name: "two sessions",
    prepare: async (s) => {
      await issue(s, "paths-list", PHONE);
      return issue(s, "paths-list", LAPTOP);
    },
    call: (s, o) => s.sessions.listSessions({ subject: "paths-list" }, o),
    want: { response: { sessions: [{ subject: "paths-list", client: LAPTOP }, { subject: "paths-list", client: PHONE }] } },
  },
  {
    rpc: "SessionService.ListSessions",
    name: "a unicode subject's session with a unicode client",
    prepare: (s) => issue(s, `${UNICODE_SUBJECT}-l`, UNICODE_CLIENT),
    call: (s, o) => s.sessions.listSessions({ subject: `${UNICODE_SUBJECT}-l` }, o),
    want: { response: { sessions: [{ subject: `${UNICODE_SUBJECT}-l`, client: UNICODE_CLIENT }] } },
  },
  {
    rpc: "SessionService.ListSessions",
    name: "no sessions",
    call: (s, o) => s.sessions.listSessions({ subject: "paths-nobody" }, o),
    want: { response: { sessions: [] } },
  },
  {
    rpc: "SessionService.ListSessions",
    name: "empty subject",
    call: (s, o) => s.sessions.listSessions({ subject: "" }, o),
    want: { code: Code.InvalidArgument, message: "subject: must not be empty", field: "subject" },
  },
  {
    rpc: "SessionService.ListSessions",
    name: "a caller without sessions.read",
    as: "auditor",
    call: (s, o) => s.sessions.listSessions({ subject: "paths-list" }, o),
    want: { code: Code.PermissionDenied, message: "caller auditor may not call SessionService.ListSessions" },
  },
  {
    rpc: "SessionService.GetSession",
    name: "a live session",
    prepare: (s) => issue(s, "paths-get", LAPTOP),
    call: (s, o, f) => s.sessions.getSession({ sessionId: f.sessionId }, o),
    want: { response: { session: { sessionId: "<session id>", subject: "paths-get", client: LAPTOP } } },
  },
  {
    rpc: "SessionService.GetSession",
    name: "an unknown session",
    call: (s, o) => s.sessions.getSession({ sessionId: unknownSession }, o),
    want: { code: Code.NotFound, message: "session not found" },
  },
  {
    rpc: "SessionService.GetSession",
    name: "a session id of 65 characters",
    call: (s, o) => s.sessions.getSession({ sessionId: long(65) }, o),
    want: { code: Code.InvalidArgument, message: "session_id: longer than 64 characters", field: "session_id" },
  },
  {
    rpc: "SessionService.GetSession",
    name: "an unknown API key",
    as: "unknown-key",
    call: (s, o) => s.sessions.getSession({ sessionId: unknownSession }, o),
    want: { code: Code.Unauthenticated, message: "invalid credentials" },
  },

  // KeyService
  {
    rpc: "KeyService.GetJwks",
    name: "the key set",
    call: (s, o) => s.keys.getJwks({}, o),
    want: { response: { keys: [{ kty: "EC", alg: "ES256", crv: "P-256", use: "sig", kid: "<kid>" }] } },
  },
  {
    rpc: "KeyService.GetJwks",
    name: "no credentials",
    as: "none",
    call: (s, o) => s.keys.getJwks({}, o),
    want: { code: Code.Unauthenticated, message: "missing credentials" },
  },
  {
    rpc: "KeyService.GetJwks",
    name: "a caller without keys.read",
    as: "auditor",
    call: (s, o) => s.keys.getJwks({}, o),
    want: { code: Code.PermissionDenied, message: "caller auditor may not call KeyService.GetJwks" },
  },
  {
    rpc: "KeyService.ListKeys",
    name: "the keys",
    as: "reader",
    call: (s, o) => s.keys.listKeys({}, o),
    want: { response: { keys: [{ alg: "ES256", signing: true }] } },
  },
  {
    rpc: "KeyService.RotateKeys",
    name: "a caller with keys.read only",
    as: "reader",
    call: (s, o) => s.keys.rotateKeys({}, o),
    want: { code: Code.PermissionDenied, message: "caller reader may not call KeyService.RotateKeys" },
  },
  {
    rpc: "KeyService.RotateKeys",
    name: "a new key, signing at once",
    call: (s, o) => s.keys.rotateKeys({ immediate: true }, o),
    want: { response: { key: { alg: "ES256", signing: true, state: KeyState.CURRENT } } },
  },
  {
    rpc: "KeyService.ListKeys",
    name: "after the rotation",
    call: (s, o) => s.keys.listKeys({}, o),
    want: { response: { keys: [{ signing: true, state: KeyState.CURRENT }, { signing: false, state: KeyState.RETIRED }] } },
  },
  {
    rpc: "KeyService.RotateKeys",
    name: "a new key, published before it signs",
    call: (s, o) => s.keys.rotateKeys({}, o),
    want: { response: { key: { alg: "ES256", signing: false, state: KeyState.NEXT } } },
  },
  {
    rpc: "KeyService.RevokeKey",
    name: "the key waiting to sign",
    prepare: async (s) => ({ access: "", refresh: "", sessionId: "", kid: (await s.keys.rotateKeys({}, callAs("setup"))).key!.kid }),
    call: (s, o, f) => s.keys.revokeKey({ kid: f.kid!, reason: "leaked" }, o),
    want: { response: { revoked: { state: KeyState.REVOKED, signing: false }, signing: { signing: true } } },
  },
  {
    rpc: "KeyService.RevokeKey",
    name: "an unknown kid",
    call: (s, o) => s.keys.revokeKey({ kid: "no-such-kid" }, o),
    want: { code: Code.InvalidArgument, message: "kid: no such key in the key set" },
  },
  {
    rpc: "KeyService.RevokeKey",
    name: "a kid that is no key id",
    call: (s, o) => s.keys.revokeKey({ kid: "../../x" }, o),
    want: { code: Code.InvalidArgument, message: "kid: not a key id" },
  },
  {
    rpc: "TokenService.Introspect",
    name: "a token signed before the rotation",
    prepare: async (s) => {
      const f = await issue(s, "paths-rotation");
      await s.keys.rotateKeys({}, callAs("setup"));
      return f;
    },
    call: (s, o, f) => s.tokens.introspect({ token: f.access }, o),
    want: { response: { active: true, subject: "paths-rotation" } },
  },

  // AuditService
  {
    rpc: "AuditService.ListAuditEvents",
    name: "a subject's events and risk",
    as: "auditor",
    prepare: async (s) => {
      const f = await issue(s, "paths-audit");
      await s.tokens.refresh({ refreshToken: f.refresh, client: PHONE }, callAs("setup"));
      await auditWritten(s);
      return f;
    },
    call: (s, o) => s.audit.listAuditEvents({ subject: "paths-audit" }, o),
    want: {
      response: {
        events: [
          { type: AuditEventType.TOKEN_REFRESHED, caller: "setup", subject: "paths-audit" },
          { type: AuditEventType.TOKEN_ISSUED, caller: "setup", subject: "paths-audit" },
        ],
        risk: { refreshes: 1 },
      },
    },
  },
  {
    rpc: "AuditService.ListAuditEvents",
    name: "filtered by type and severity, paged",
    as: "auditor",
    prepare: async (s) => {
      await auditWritten(s);
      return undefined;
    },
    call: (s, o) =>
      s.audit.listAuditEvents({ types: [AuditEventType.CALLER_DENIED], minSeverity: AuditSeverity.WARNING, pageSize: 3 }, o),
    want: { response: { events: Array(3).fill({ type: AuditEventType.CALLER_DENIED }), nextPageToken: "<nextPageToken>" } },
  },
  {
    rpc: "AuditService.ListAuditEvents",
    name: "an unknown event type (bad enum)",
    as: "auditor",
    call: (s, o) => s.audit.listAuditEvents({ types: [999 as AuditEventType] }, o),
    want: { code: Code.InvalidArgument, message: "types[0]: is not an audit event type", field: "types[0]" },
  },
  {
    rpc: "AuditService.ListAuditEvents",
    name: "an unknown severity (bad enum)",
    as: "auditor",
    call: (s, o) => s.audit.listAuditEvents({ minSeverity: 99 as AuditSeverity }, o),
    want: { code: Code.InvalidArgument, message: "min_severity: is not an audit severity", field: "min_severity" },
  },
  {
    rpc: "AuditService.ListAuditEvents",
    name: "a negative page size",
    as: "auditor",
    call: (s, o) => s.audit.listAuditEvents({ pageSize: -1 }, o),
    want: { code: Code.InvalidArgument, message: "page_size: must not be negative", field: "page_size" },
  },
  {
    rpc: "AuditService.ListAuditEvents",
    name: "a page token it never handed out",
    as: "auditor",
    call: (s, o) => s.audit.listAuditEvents({ pageToken: "garbage" }, o),
    want: { code: Code.InvalidArgument, message: "page_token: is not a page token of this service", field: "page_token" },
  },
  {
    rpc: "AuditService.ListAuditEvents",
    name: "end_time before start_time",
    as: "auditor",
    call: (s, o) => s.audit.listAuditEvents({ startTime: { seconds: 2000n }, endTime: { seconds: 1000n } }, o),
    want: { code: Code.InvalidArgument, message: "end_time: is before start_time", field: "end_time" },
  },
  {
    rpc: "AuditService.ListAuditEvents",
    name: "a caller without audit.read",
    as: "reader",
    call: (s, o) => s.audit.listAuditEvents({}, o),
    want: { code: Code.PermissionDenied, message: "caller reader may not call AuditService.ListAuditEvents" },
  },
];

// ---------------------------------------------------------------------------------------------------------------
// The pair on the suite's Redis

let lean: Side;
let conn: Side;
let sides: Side[];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-paths-"));
  callersFile = join(dir, "callers.json");
  const callers = Object.entries(CALLERS).map(([name, permissions]) => ({
    name,
    api_keys: [{ sha256: sha256(KEYS[name as CallerName]) }],
    permissions,
  }));
  await writeFile(callersFile, JSON.stringify({ callers }));
  const redisUrl = inject("redisUrl");
  sides = await Promise.all(MODES.map((m) => startSide(m, redisUrl, (r) => sharedEnv(r))));
  [lean, conn] = sides as [Side, Side];
});
afterAll(async () => {
  await Promise.all((sides ?? []).map((s) => s.close()));
  await Promise.all((sides ?? []).map((s) => s.scope.cleanup()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs a case on each side in turn (preparation, then the call) and returns both outcomes. */
async function both(c: Case): Promise<{ lean: Outcome; connect: Outcome }> {
  const run = async (s: Side) => {
    const fixture = (await c.prepare?.(s)) ?? ({} as Fixture);
    return outcome(c.call(s, callAs(c.as ?? "admin", c.headers), fixture));
  };
  const l = await run(lean);
  const k = await run(conn);
  return { lean: l, connect: k };
}

it("the table covers every RPC of the four services", () => {
  const offered = [TokenService, SessionService, KeyService, AuditService].flatMap((s) => s.methods.map((m) => `${s.name}.${m.name}`));
  expect([...new Set(CASES.map((c) => c.rpc))].sort()).toEqual(offered.sort());
});

describe("the same request through connect's gRPC transport: the same answer from both paths", () => {
  it.each(CASES)("$rpc: $name", async (c) => {
    const got = await both(c);
    expect(got.lean, "lean path vs connect-node").toEqual(got.connect);
    expectWanted(got.connect, c.want);
  });
});

describe("request compression", () => {
  it("a gzip-compressed request is inflated alike", async () => {
    const got = await Promise.all(
      sides.map((s) =>
        outcome(
          createClient(TokenService, s.transport({ sendCompression: compressionGzip, compressMinBytes: 1 })).issue(
            { subject: "paths-gzip", client: { ...PHONE, userAgent: long(400) } },
            callAs("admin"),
          ),
        ),
      ),
    );
    expect(got[0]).toEqual(got[1]);
    expectWanted(got[1]!, "ok");
  });

  it("a gzip bomb over TESSERA_MAX_REQUEST_BYTES is refused alike", async () => {
    const got = await Promise.all(
      sides.map((s) =>
        outcome(
          createClient(TokenService, s.transport({ sendCompression: compressionGzip, compressMinBytes: 1 })).issue(
            { subject: "paths-bomb", client: { ...PHONE, userAgent: long(60_000) } },
            callAs("admin"),
          ),
        ),
      ),
    );
    expect(got[0]).toEqual(got[1]);
    expectWanted(got[1]!, { code: Code.ResourceExhausted });
  });

  it("an encoding the server does not accept (br) is UNIMPLEMENTED alike", async () => {
    const got = await Promise.all(
      sides.map((s) =>
        outcome(
          createClient(TokenService, s.transport({ sendCompression: compressionBrotli, acceptCompression: [compressionGzip] })).introspect(
            { token: "x" },
            { ...callAs("admin"), timeoutMs: 5_000 },
          ),
        ),
      ),
    );
    expect(got[0]).toEqual(got[1]);
    expectWanted(got[1]!, { code: Code.Unimplemented, message: 'unknown compression "br": supported encodings are gzip' });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// @grpc/grpc-js, the client most users have

/** A grpc-js call with metadata; errors become the same Outcome (details decoded from grpc-status-details-bin). */
function grpcJsCall(client: grpc.Client, method: string, req: Record<string, unknown>, who: Who): Promise<Outcome> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(credentials(who))) md.set(k, v);
  const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method]!;
  return new Promise((resolve) => {
    fn.call(client, req, md, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: unknown) => {
      if (!err) return resolve({ ok: true, response: shape(res) });
      const trailer = new Headers({ "grpc-status": String(err.code), "grpc-message": encodeURIComponent(err.details) });
      const bin = err.metadata.get("grpc-status-details-bin")[0];
      if (bin !== undefined) trailer.set("grpc-status-details-bin", Buffer.from(bin as Buffer).toString("base64"));
      resolve(errorOutcome(findTrailerError(trailer) ?? new ConnectError(err.details, err.code as number as Code)));
    });
  });
}

describe("the same request through @grpc/grpc-js: the same answer from both paths", () => {
  const clients = new Map<ModeName, { tokens: grpc.Client; sessions: grpc.Client }>();
  beforeAll(() => {
    for (const s of sides) {
      clients.set(s.mode, { tokens: grpcJsClient("TokenService", s.server.url), sessions: grpcJsClient("SessionService", s.server.url) });
    }
  });
  afterAll(() => {
    for (const c of clients.values()) {
      c.tokens.close();
      c.sessions.close();
    }
  });

  interface GrpcJsCase {
    name: string;
    as?: Who;
    prepare?: (s: Side) => Promise<Fixture | undefined>;
    call: (c: { tokens: grpc.Client; sessions: grpc.Client }, who: Who, f: Fixture) => Promise<Outcome>;
    want: Want;
  }
  const GRPC_JS_CASES: GrpcJsCase[] = [
    {
      name: "Issue with every field",
      call: (c, who) =>
        grpcJsCall(
          c.tokens,
          "issue",
          {
            subject: "paths-grpcjs",
            audience: ["orders"],
            scopes: ["read"],
            extraClaims: toGrpcStruct({ tenant: "acme", n: 1 }),
            client: PHONE,
            accessTtl: { seconds: "600", nanos: 0 },
          },
          who,
        ),
      want: { response: { tokens: { accessToken: { lifetimeSeconds: 600, claims: { tenant: "acme", n: 1 } } } } },
    },
    {
      name: "Issue with an empty subject",
      call: (c, who) => grpcJsCall(c.tokens, "issue", { subject: "" }, who),
      want: { code: Code.InvalidArgument, message: "subject: must not be empty", field: "subject" },
    },
    {
      name: "Issue with a bad scope",
      call: (c, who) => grpcJsCall(c.tokens, "issue", { subject: "paths-grpcjs-2", scopes: ['quote"d'] }, who),
      want: { code: Code.InvalidArgument, field: "scopes[0]" },
    },
    {
      name: "Refresh of the current token",
      prepare: (s) => issue(s, "paths-grpcjs-refresh"),
      call: (c, who, f) => grpcJsCall(c.tokens, "refresh", { refreshToken: f.refresh, client: PHONE }, who),
      want: "ok",
    },
    {
      name: "Refresh of a malformed token",
      call: (c, who) => grpcJsCall(c.tokens, "refresh", { refreshToken: "x.y.z", client: PHONE }, who),
      want: { code: Code.Unauthenticated, message: "invalid refresh token" },
    },
    {
      name: "Revoke without a target",
      call: (c, who) => grpcJsCall(c.tokens, "revoke", { reason: "x" }, who),
      want: { code: Code.InvalidArgument, field: "target" },
    },
    {
      name: "Revoke of a session",
      prepare: (s) => issue(s, "paths-grpcjs-revoke"),
      call: (c, who, f) => grpcJsCall(c.tokens, "revoke", { sessionId: f.sessionId }, who),
      want: { response: { sessionsRevoked: 1, tokenRevoked: false } },
    },
    {
      name: "Introspect of an active token",
      prepare: (s) => issue(s, "paths-grpcjs-introspect"),
      call: (c, who, f) => grpcJsCall(c.tokens, "introspect", { token: f.access }, who),
      want: { response: { active: true, subject: "paths-grpcjs-introspect" } },
    },
    {
      name: "Introspect of a token with a unicode subject and rich claims (protobufjs decodes the lean path's bytes)",
      prepare: async (s) => {
        const res = await s.tokens.issue({ subject: `${UNICODE_SUBJECT}-g`, extraClaims: RICH_CLAIMS, client: UNICODE_CLIENT }, callAs("setup"));
        return { access: res.tokens!.accessToken, refresh: res.tokens!.refreshToken, sessionId: res.sessionId };
      },
      call: (c, who, f) => grpcJsCall(c.tokens, "introspect", { token: f.access }, who),
      want: { response: { active: true, subject: `${UNICODE_SUBJECT}-g` } },
    },
    {
      name: "ListSessions of a unicode client (protobufjs decodes the lean path's bytes)",
      prepare: (s) => issue(s, `${UNICODE_SUBJECT}-gl`, UNICODE_CLIENT),
      call: (c, who) => grpcJsCall(c.sessions, "listSessions", { subject: `${UNICODE_SUBJECT}-gl` }, who),
      want: { response: { sessions: [{ subject: `${UNICODE_SUBJECT}-gl`, client: UNICODE_CLIENT }] } },
    },
    {
      name: "Introspect of a malformed token",
      call: (c, who) => grpcJsCall(c.tokens, "introspect", { token: "garbage" }, who),
      want: { response: { active: false, inactiveReason: InactiveReason.MALFORMED } },
    },
    {
      name: "Introspect with a bad expected_type",
      call: (c, who) => grpcJsCall(c.tokens, "introspect", { token: "x", expectedType: 9 }, who),
      want: { code: Code.InvalidArgument, field: "expected_type" },
    },
    {
      name: "Introspect without credentials",
      as: "none",
      call: (c, who) => grpcJsCall(c.tokens, "introspect", { token: "x" }, who),
      want: { code: Code.Unauthenticated, message: "missing credentials" },
    },
    {
      name: "ListSessions by a caller without sessions.read",
      as: "auditor",
      call: (c, who) => grpcJsCall(c.sessions, "listSessions", { subject: "x" }, who),
      want: { code: Code.PermissionDenied, message: "caller auditor may not call SessionService.ListSessions" },
    },
    {
      name: "GetSession of an unknown session",
      call: (c, who) => grpcJsCall(c.sessions, "getSession", { sessionId: unknownSession }, who),
      want: { code: Code.NotFound, message: "session not found" },
    },
    {
      name: "a request larger than TESSERA_MAX_REQUEST_BYTES",
      call: (c, who) => grpcJsCall(c.tokens, "introspect", { token: long(20_000, "x") }, who),
      want: { code: Code.ResourceExhausted, message: /is larger than configured readMaxBytes 16384$/ },
    },
  ];

  it.each(GRPC_JS_CASES)("$name", async (c) => {
    const got: Outcome[] = [];
    for (const s of sides) {
      const fixture = (await c.prepare?.(s)) ?? ({} as Fixture);
      got.push(await c.call(clients.get(s.mode)!, c.as ?? "grpcjs", fixture));
    }
    expect(got[0], "lean path vs connect-node").toEqual(got[1]);
    expectWanted(got[1]!, c.want);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The lean server really takes the lean path

interface RawAnswer {
  headers: http2.IncomingHttpHeaders;
  /** Trailers sent apart from the headers (none for a trailers-only answer). */
  trailers?: http2.IncomingHttpHeaders;
  bytes: number;
  /** ms from the request to the status (the trailers, or the headers of a trailers-only answer). */
  ms: number;
}

/**
 * One raw gRPC call over node:http2. `complete: false` sends the body without ending the request, as a client
 * whose upload stalls would.
 */
function rawGrpc(url: string, path: string, body: Buffer, opts: { headers?: Record<string, string>; complete?: boolean } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const session = http2.connect(url);
    session.on("error", reject);
    const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...opts.headers });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    let bytes = 0;
    let ms = -1;
    req.on("response", (h) => {
      headers = h;
      if (h["grpc-status"] !== undefined) ms = performance.now() - started;
    });
    req.on("trailers", (t) => {
      trailers = t;
      ms = performance.now() - started;
    });
    req.on("data", (d: Buffer) => (bytes += d.length));
    req.on("error", reject);
    req.on("close", () => {
      session.close();
      resolve({ headers, ...(trailers ? { trailers } : {}), bytes, ms });
    });
    if (opts.complete === false) req.write(body);
    else req.end(body);
  });
}

/** The status of a raw answer, from the trailers or (trailers-only) the headers; the message percent-decoded. */
function rawStatus(a: RawAnswer): { status: string; message: string } {
  const from = a.trailers ?? a.headers;
  return { status: String(from["grpc-status"]), message: decodeURIComponent(String(from["grpc-message"] ?? "")) };
}

describe("which path answered", () => {
  // The observable difference used here: the lean path answers an error trailers-only (grpc-status in the one
  // HEADERS frame that ends the stream), connect-node sends headers and then trailers. Both are valid gRPC (every
  // client above reads them alike); it tells which path served a call without looking inside the app.
  it("an error from the lean server is trailers-only; from the connect-node server, headers then trailers", async () => {
    const empty = Buffer.from([0, 0, 0, 0, 0]); // one empty IntrospectRequest, no credentials
    const l = await rawGrpc(lean.server.url, "/tessera.v1.TokenService/Introspect", empty);
    const k = await rawGrpc(conn.server.url, "/tessera.v1.TokenService/Introspect", empty);
    expect(l.headers).toMatchObject({ ":status": 200, "grpc-status": "16", "grpc-message": "missing credentials" });
    expect(l.trailers).toBeUndefined();
    expect(k.headers[":status"]).toBe(200);
    expect(k.headers["grpc-status"]).toBeUndefined();
    expect(k.trailers).toMatchObject({ "grpc-status": "16" });
    expect(decodeURIComponent(String(k.trailers?.["grpc-message"]))).toBe("missing credentials");
  });
});

describe("a request body still incomplete at the caller's deadline", () => {
  // connect's and grpc-js's clients send a unary request in one go, so this needs a raw client: headers with
  // grpc-timeout: 200m, then a frame that promises 10 bytes and brings 1, and nothing more. The caller's deadline
  // has passed at 200 ms whatever the body is doing; TESSERA_READ_TIMEOUT (3 s here) is the server's own bound.
  it("is DEADLINE_EXCEEDED at the deadline on both paths, with the same message", async () => {
    const stalled = Buffer.from([0, 0, 0, 0, 10, 1]);
    const [l, k] = await Promise.all(
      sides.map((s) =>
        rawGrpc(s.server.url, "/tessera.v1.TokenService/Introspect", stalled, {
          headers: { ...credentials("admin"), "grpc-timeout": "200m" },
          complete: false,
        }),
      ),
    );
    const answers = [l!, k!].map((a) => ({ ...rawStatus(a), atTheDeadline: a.ms >= 150 && a.ms < READ_TIMEOUT_MS / 2 }));
    expect(answers[0], "lean path vs connect-node").toEqual(answers[1]);
    expect(answers[1]).toEqual({ status: String(Code.DeadlineExceeded), message: "the operation timed out", atTheDeadline: true });
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Unknown services and methods, and a path that is no RPC's: UNIMPLEMENTED through every client kind, on both servers

/** Descriptors of a service the server does not have, and of a method its TokenService does not have. */
const UNKNOWN = (() => {
  const file = create(FileDescriptorProtoSchema, {
    name: "tessera/test/unknown.proto",
    package: "tessera.v1",
    dependency: ["google/protobuf/empty.proto"],
    syntax: "proto3",
    service: [
      { name: "NoSuchService", method: [{ name: "Call", inputType: ".google.protobuf.Empty", outputType: ".google.protobuf.Empty" }] },
      { name: "TokenService", method: [{ name: "NoSuchMethod", inputType: ".google.protobuf.Empty", outputType: ".google.protobuf.Empty" }] },
    ],
  });
  const registry = createFileRegistry(file, (name) => (name === "google/protobuf/empty.proto" ? file_google_protobuf_empty : undefined));
  return {
    service: registry.getService("tessera.v1.NoSuchService")!,
    method: registry.getService("tessera.v1.TokenService")!,
  };
})();

/** `prefix`: the client's base URL has this path (a misconfigured client: the service's methods under it are no RPC). */
const UNKNOWN_TARGETS: readonly { what: string; desc: DescService; prefix: string; path: string; message: string }[] = [
  {
    what: "an unknown service",
    desc: UNKNOWN.service,
    prefix: "",
    path: "/tessera.v1.NoSuchService/Call",
    message: "unknown service tessera.v1.NoSuchService",
  },
  {
    what: "an unknown method of TokenService",
    desc: UNKNOWN.method,
    prefix: "",
    path: "/tessera.v1.TokenService/NoSuchMethod",
    message: "unknown method NoSuchMethod for service tessera.v1.TokenService",
  },
  {
    what: "a real method under a path prefix",
    desc: TokenService,
    prefix: "/api/v1",
    path: "/api/v1/tessera.v1.TokenService/Introspect",
    message: "no RPC at /api/v1/tessera.v1.TokenService/Introspect: an RPC's path is /<package>.<Service>/<Method>",
  },
];

const UNKNOWN_KINDS: readonly ClientKind[] = ["connect-grpc", "connect-h1", "connect-h2", "grpc-web", "grpc-js"];

async function callUnknown(kind: ClientKind, url: string, target: (typeof UNKNOWN_TARGETS)[number]): Promise<Outcome> {
  if (kind === "grpc-js") {
    const client = new grpc.Client(new URL(url).host, grpc.credentials.createInsecure());
    try {
      return await new Promise<Outcome>((resolve) => {
        const md = new grpc.Metadata();
        md.set("authorization", `Bearer ${KEYS.admin}`);
        client.makeUnaryRequest(
          target.path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          md,
          { deadline: Date.now() + 10_000 },
          (err, res) => resolve(err ? errorOutcome(new ConnectError(err.details, err.code as number as Code)) : { ok: true, response: res }),
        );
      });
    } finally {
      client.close();
    }
  }
  const t = connectTransport(kind, url + target.prefix);
  try {
    type AnyMethod = (req: object, o: CallOptions) => Promise<unknown>;
    const client = createClient(target.desc, t.transport) as unknown as Record<string, AnyMethod>;
    const method = target.desc.methods.find((m) => target.path.endsWith(`/${m.name}`))!.localName;
    return await outcome(client[method]!({}, { ...callAs("admin"), timeoutMs: 10_000 }));
  } finally {
    t.close();
  }
}

describe.each(UNKNOWN_TARGETS)("$what ($path)", (target) => {
  describe.each(MODES.map((m) => m.name))("on the %s server", (mode) => {
    it.each(UNKNOWN_KINDS)("through %s: UNIMPLEMENTED", async (kind) => {
      const side = mode === "lean" ? lean : conn;
      const got = await callUnknown(kind, side.server.url, target);
      expect(summary(got)).toBe(`Unimplemented: ${target.message}`);
    });
  });

  it.each(UNKNOWN_KINDS)("through %s: both servers say the same", async (kind) => {
    const l = await callUnknown(kind, lean.server.url, target);
    const k = await callUnknown(kind, conn.server.url, target);
    expect(l).toEqual(k);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Afterwards: the same log lines, metrics and audit trail on both servers of the pair

describe("after all the calls above", () => {
  it("both servers wrote the same RPC log lines (method, code, caller, error, request id)", () => {
    const lines = (s: Side) =>
      s.server.logs
        .filter((l) => l.msg === "rpc" || l.msg === "rpc failed")
        .map((l) => ({
          msg: l.msg,
          rpc: l.rpc,
          code: l.code,
          caller: l.caller,
          level: l.level,
          err: (l.err as { message?: string } | undefined)?.message,
          requestId: typeof l.requestId === "string" && l.requestId.startsWith("paths-") ? l.requestId : "<generated>",
        }));
    const l = lines(lean);
    expect(l.length).toBeGreaterThan(CASES.length);
    expect(l).toContainEqual(expect.objectContaining({ requestId: "paths-request-1", code: "ok" }));
    expect(l).toEqual(lines(conn));
  });

  it("both servers count the same RPCs by method and code (GET /metrics, tessera_rpc_total)", async () => {
    const counts = async (s: Side) => {
      const text = await (await fetch(`${s.server.url}/metrics`)).text();
      return text
        .split("\n")
        .filter((line) => line.startsWith("tessera_rpc_total{"))
        .sort();
    };
    const l = await counts(lean);
    expect(l.length).toBeGreaterThan(10);
    expect(l).toEqual(await counts(conn));
  });

  it("both servers stored the same audit trail", async () => {
    const trail = async (s: Side) => {
      await auditWritten(s);
      const events: unknown[] = [];
      let pageToken = "";
      do {
        const page = await s.audit.listAuditEvents({ pageSize: 500, pageToken }, callAs("auditor"));
        events.push(...page.events.map((e) => shape(e)));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return events;
    };
    const l = await trail(lean);
    expect(l.length).toBeGreaterThan(20);
    expect(l).toEqual(await trail(conn));
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Deadlines and a store outage, on a Redis of this file's own (paused, then killed)

describe("on a Redis that is paused, then killed", () => {
  let redis: RedisServer;
  let admin: Redis;
  let pair: Side[] = [];
  const fixtures = new Map<ModeName, Fixture>();

  beforeAll(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.url);
    admin.on("error", () => {}); // it reconnects in vain once the test has killed Redis
    // The same configuration as the first pair, without the rate limits: with them every RPC would fail in the
    // per-caller limiter first, and the handlers' own store access would go untested.
    pair = await Promise.all(MODES.map((m) => startSide(m, redis.url, (r) => sharedEnv(r, false))));
    for (const s of pair) fixtures.set(s.mode, await issue(s, "paths-outage"));
  });
  afterAll(async () => {
    await admin?.client("UNPAUSE").catch(() => {});
    admin?.disconnect();
    await Promise.all(pair.map((s) => s.close()));
    await redis?.stop();
  });

  /**
   * Redis stops answering every client for PAUSE_MS. (CLIENT UNPAUSE is itself held by a PAUSE ALL on Redis 7.0, so
   * the `finally` below waits for the pause to end: the next test starts on an answering Redis.)
   */
  const PAUSE_MS = 1_000;

  /** Both sides at once while Redis is paused: the outcomes and how long each took. */
  async function whilePaused(call: (s: Side, f: Fixture) => Promise<unknown>): Promise<{ outcomes: Outcome[]; ms: number[] }> {
    await admin.client("PAUSE", PAUSE_MS, "ALL");
    try {
      const timed = await Promise.all(
        pair.map(async (s) => {
          const started = performance.now();
          const o = await outcome(call(s, fixtures.get(s.mode)!));
          return { o, ms: performance.now() - started };
        }),
      );
      return { outcomes: timed.map((t) => t.o), ms: timed.map((t) => t.ms) };
    } finally {
      await admin.client("UNPAUSE");
    }
  }

  // A timeout of zero is a deadline that has passed before the call starts (connect-node takes it so; PROTOCOL-HTTP2
  // asks senders for a positive value, but a server must still decide what a zero means, and both paths alike): the
  // call ends DEADLINE_EXCEEDED without being served, however fast the RPC. Five tries each, so a path that lets the
  // call run cannot pass by losing a race once. The RPCs need no store (a malformed token, the key set).
  it.each([
    ["Introspect of a malformed token", (s: Side, o: CallOptions) => s.tokens.introspect({ token: "garbage" }, o)],
    ["GetJwks", (s: Side, o: CallOptions) => s.keys.getJwks({}, o)],
  ] as const)("grpc-timeout: 0m (the deadline has already passed) on %s: DEADLINE_EXCEEDED alike", async (_rpc, call) => {
    const got = new Map<ModeName, string[]>();
    for (const s of pair) {
      const outcomes: string[] = [];
      for (let i = 0; i < 5; i++) outcomes.push(summary(await outcome(call(s, callAs("admin", { "grpc-timeout": "0m" })))));
      got.set(s.mode, outcomes);
    }
    expect(got.get("lean"), "lean path vs connect-node").toEqual(got.get("connect-node"));
    expect(got.get("connect-node")).toEqual(Array(5).fill("DeadlineExceeded: the operation timed out"));
  });

  // The deadline travels as the caller's grpc-timeout header with no client-side timer, so what is compared is the
  // server's own answer, not the client giving up.
  it.each([
    ["1m", "Introspect", (s: Side, f: Fixture, o: CallOptions) => s.tokens.introspect({ token: f.access }, o)],
    ["300m", "Introspect", (s: Side, f: Fixture, o: CallOptions) => s.tokens.introspect({ token: f.access }, o)],
    ["300m", "Issue", (s: Side, _f: Fixture, o: CallOptions) => s.tokens.issue({ subject: "paths-outage", client: PHONE }, o)],
    ["300m", "ListSessions", (s: Side, _f: Fixture, o: CallOptions) => s.sessions.listSessions({ subject: "paths-outage" }, o)],
  ] as const)("grpc-timeout: %s on %s waiting on the paused Redis: DEADLINE_EXCEEDED alike, on time", async (timeout, _rpc, call) => {
    const { outcomes, ms } = await whilePaused((s, f) => call(s, f, callAs("admin", { "grpc-timeout": timeout })));
    expect(outcomes[0], "lean path vs connect-node").toEqual(outcomes[1]);
    expectWanted(outcomes[1]!, { code: Code.DeadlineExceeded, message: "the operation timed out" });
    for (const t of ms) expect(t).toBeLessThan(PAUSE_MS); // answered at the deadline, while Redis was still paused
  });

  it("a call its client cancels while it waits on the store ends alike: the same code and error in the log line", async () => {
    const seen: unknown[] = [];
    await admin.client("PAUSE", 2 * PAUSE_MS, "ALL");
    try {
      for (const s of pair) {
        const before = s.server.logs.length;
        const abort = new AbortController();
        const call = outcome(s.tokens.introspect({ token: fixtures.get(s.mode)!.access }, { ...callAs("admin"), signal: abort.signal }));
        // Nothing outside the process shows that the call has reached the pipeline; app.inFlight() (the pipeline's
        // count of running calls) does.
        await vi.waitFor(() => expect(s.server.app.inFlight()).toBe(1), { timeout: 2_000, interval: 5 });
        abort.abort();
        expect(await call).toMatchObject({ ok: false, code: Code[Code.Canceled] });
        const line = await vi.waitFor(
          () => {
            const l = s.server.logs.slice(before).find((x) => x.msg === "rpc failed");
            expect(l).toBeDefined();
            return l!;
          },
          { timeout: 2_000, interval: 5 },
        );
        seen.push({ rpc: line.rpc, code: line.code, caller: line.caller, err: (line.err as { message?: string } | undefined)?.message });
      }
    } finally {
      await admin.client("UNPAUSE");
    }
    expect(seen[0], "lean path vs connect-node").toEqual(seen[1]);
    expect(seen[1]).toMatchObject({ code: "Canceled", caller: "admin" });
  });

  describe("with Redis killed", () => {
    beforeAll(async () => {
      // Both servers answer again after the pauses (the store is back), then the store goes away for good.
      for (const s of pair) await s.tokens.introspect({ token: fixtures.get(s.mode)!.access }, callAs("admin"));
      await redis.kill();
    });

    const UNAVAILABLE: Want = { code: Code.Unavailable, message: "token store unavailable" };
    const OUTAGE_CASES: { name: string; as?: Who; call: (s: Side, o: CallOptions, f: Fixture) => Promise<unknown>; want: Want }[] = [
      { name: "Issue", call: (s, o) => s.tokens.issue({ subject: "paths-outage", client: PHONE }, o), want: UNAVAILABLE },
      { name: "Refresh", call: (s, o, f) => s.tokens.refresh({ refreshToken: f.refresh, client: PHONE }, o), want: UNAVAILABLE },
      { name: "Revoke a token", call: (s, o, f) => s.tokens.revoke({ target: { case: "token", value: f.access } }, o), want: UNAVAILABLE },
      { name: "Revoke a session", call: (s, o, f) => s.tokens.revoke({ target: { case: "sessionId", value: f.sessionId } }, o), want: UNAVAILABLE },
      { name: "Revoke a subject", call: (s, o) => s.tokens.revoke({ target: { case: "subject", value: "paths-outage" } }, o), want: UNAVAILABLE },
      { name: "Introspect an active token", call: (s, o, f) => s.tokens.introspect({ token: f.access }, o), want: UNAVAILABLE },
      {
        name: "Introspect a refresh token",
        call: (s, o, f) => s.tokens.introspect({ token: f.refresh, expectedType: TokenType.REFRESH }, o),
        want: UNAVAILABLE,
      },
      { name: "Introspect a malformed token (needs no store)", call: (s, o) => s.tokens.introspect({ token: "garbage" }, o), want: "ok" },
      { name: "ListSessions", call: (s, o) => s.sessions.listSessions({ subject: "paths-outage" }, o), want: UNAVAILABLE },
      { name: "GetSession", call: (s, o, f) => s.sessions.getSession({ sessionId: f.sessionId }, o), want: UNAVAILABLE },
      { name: "GetJwks (keys are held in memory)", call: (s, o) => s.keys.getJwks({}, o), want: "ok" },
      { name: "ListKeys (keys are held in memory)", call: (s, o) => s.keys.listKeys({}, o), want: "ok" },
      { name: "RotateKeys", call: (s, o) => s.keys.rotateKeys({}, o), want: UNAVAILABLE },
      { name: "ListAuditEvents", call: (s, o) => s.audit.listAuditEvents({}, o), want: UNAVAILABLE },
      { name: "an invalid request", call: (s, o) => s.tokens.issue({ subject: "" }, o), want: { code: Code.InvalidArgument, field: "subject" } },
      { name: "no credentials", as: "none", call: (s, o) => s.tokens.introspect({ token: "x" }, o), want: { code: Code.Unauthenticated } },
    ];

    it.each(OUTAGE_CASES)("$name: the same answer from both paths", async (c) => {
      const got: Outcome[] = [];
      for (const s of pair) got.push(await outcome(c.call(s, callAs(c.as ?? "admin", { "grpc-timeout": "5S" }), fixtures.get(s.mode)!)));
      expect(got[0], "lean path vs connect-node").toEqual(got[1]);
      expectWanted(got[1]!, c.want);
    });
  });
});
