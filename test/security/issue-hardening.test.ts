/**
 * Issue 12, points 1 and 2: what Issue (and Refresh) will sign.
 *
 * 1. No token is ever issued that Tessera itself refuses: a request inside every field bound can still add up to
 *    tokens longer than TESSERA_MAX_TOKEN_LENGTH, which Introspect, Refresh and Revoke then answer INVALID_ARGUMENT.
 *    Issue (and Refresh, whose successor carries the same grant) refuse such a pair with INVALID_ARGUMENT and a
 *    google.rpc.BadRequest, before anything is signed or stored.
 * 2. Claim values: every string inside `extra_claims` (object keys at every depth too) follows the free-text rule,
 *    every number is finite (a google.protobuf.Value can carry NaN and Infinity on the wire; JSON cannot), and
 *    nesting is bounded. Sent by real clients: @grpc/grpc-js and connect's gRPC transport (both binary protobuf).
 */
import { create, fromBinary, type JsonObject } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport, type Client } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import fc from "fast-check";
import { decodeJwt } from "jose";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { IssueRequestSchema, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { interceptorsFor } from "../../src/api/pipeline.js";
import { routes, services } from "../../src/api/routes.js";
import { LIMITS } from "../../src/api/validate.js";
import { Authority } from "../../src/domain/authority.js";
import { ManualClock } from "../../src/domain/clock.js";
import { randomId } from "../../src/domain/ids.js";
import { KeyRing, SIGNING_ALGORITHMS, type SigningAlgorithm } from "../../src/domain/keys.js";
import type { Store } from "../../src/domain/store.js";
import { TokenCodec } from "../../src/domain/tokens.js";
import { MemoryStore } from "../../src/store/memory.js";
import { DEFAULT_CONFIG, ISSUER } from "../helpers/authority.js";
import { connectClients, grpcJsClient, toGrpcStruct, unary, type ConnectClients } from "../helpers/clients.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const DEVICE = { deviceId: "d1", userAgent: "hardening/1.0", ip: "192.0.2.7", platform: "web" };
const long = (n: number, c = "x") => c.repeat(n);
let seq = 0;
/** A fresh subject; its length depends only on the label (the size tests need fixed lengths). */
const subjectName = (label: string) => `hardening-${label}-${String(++seq).padStart(5, "0")}-${randomId()}`;

/** The call's INVALID_ARGUMENT: its message and its one BadRequest field violation. Fails on any other outcome. */
async function badRequest(call: Promise<unknown>): Promise<{ message: string; field: string; description: string }> {
  const err = await call.then(
    () => expect.fail("expected INVALID_ARGUMENT, but the call succeeded"),
    (e: unknown) => ConnectError.from(e),
  );
  expect(Code[err.code], err.rawMessage).toBe(Code[Code.InvalidArgument]);
  const details = err.findDetails(BadRequestSchema);
  expect(details).toHaveLength(1);
  expect(details[0]!.fieldViolations).toHaveLength(1);
  const [v] = details[0]!.fieldViolations;
  return { message: err.rawMessage, field: v!.field, description: v!.description };
}

/** The same from a grpc-js call (the helper's ConnectError keeps the grpc-js error, whose metadata has the details). */
async function grpcBadRequest(call: Promise<unknown>): Promise<{ message: string; field: string; description: string }> {
  const err = await call.then(
    () => expect.fail("expected INVALID_ARGUMENT, but the call succeeded"),
    (e: unknown) => e as ConnectError,
  );
  expect(Code[err.code], err.rawMessage).toBe(Code[Code.InvalidArgument]);
  const se = err.cause as grpc.ServiceError;
  const bin = se.metadata.get("grpc-status-details-bin")[0] as Buffer;
  const status = fromBinary(StatusSchema, bin);
  const bad = status.details.map((a) => anyUnpack(a, BadRequestSchema)).filter((d) => d !== undefined);
  expect(bad).toHaveLength(1);
  const [v] = bad[0]!.fieldViolations;
  return { message: err.rawMessage, field: v!.field, description: v!.description };
}

// -------------------------------------------------------------------------------------------------------------------
// 1. The size of what Issue and Refresh sign

describe("no token is ever issued that Tessera itself refuses (TESSERA_MAX_TOKEN_LENGTH, default 8192)", () => {
  let server: StartedServer;
  let lean: ConnectClients; // gRPC: the lean unary path
  let h1: ConnectClients; // Connect over HTTP/1.1: connect-node
  let grpcJs: grpc.Client;

  beforeAll(async () => {
    server = await startServer({ TESSERA_ISSUER: "https://auth.hardening.test" });
    lean = connectClients("connect-grpc", server.url);
    h1 = connectClients("connect-h1", server.url);
    grpcJs = grpcJsClient("TokenService", server.url);
  });
  afterAll(async () => {
    lean?.close();
    h1?.close();
    grpcJs?.close();
    await server?.close();
  });

  // Each request is inside every documented field bound, and (as a whole) inside TESSERA_MAX_REQUEST_BYTES (16384).
  const OVERSIZED: [string, { audience?: string[]; scopes?: string[]; extraClaims?: JsonObject }, string][] = [
    ["64 scopes of 128 characters", { scopes: Array.from({ length: 64 }, (_, i) => `${i}`.padEnd(LIMITS.scope, "s")) }, "scopes"],
    [
      "16 audiences of 256 characters and 4 KiB of extra claims",
      {
        audience: Array.from({ length: 16 }, (_, i) => `${i}`.padEnd(LIMITS.audience, "a")),
        extraClaims: { blob: long(LIMITS.claimsBytes - 20) },
      },
      "audience",
    ],
    [
      "4 KiB of extra claims and 24 scopes of 128 characters",
      { extraClaims: { blob: long(LIMITS.claimsBytes - 20) }, scopes: Array.from({ length: 24 }, (_, i) => `${i}`.padEnd(LIMITS.scope, "s")) },
      "extra_claims",
    ],
    [
      "4 KiB of extra claims in 3-byte characters (within the 4096 bytes, 5.4 KiB of base64)",
      { extraClaims: { blob: long(1360, "名") }, scopes: Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(LIMITS.scope, "s")) },
      "extra_claims",
    ],
  ];

  it.each(OVERSIZED)("Issue with %s: INVALID_ARGUMENT naming the largest part, nothing stored (both server paths)", async (_name, req, field) => {
    for (const c of [lean, h1]) {
      const subject = subjectName("big").padEnd(LIMITS.subject, "u");
      const r = await badRequest(c.tokens.issue({ subject, client: DEVICE, ...req }));
      expect(r.field).toBe(field);
      expect(r.description).toMatch(/^the tokens would be \d+ characters, over TESSERA_MAX_TOKEN_LENGTH \(8192\): fewer or shorter scopes, audiences or extra claims$/);
      expect(Number(/would be (\d+)/.exec(r.description)![1])).toBeGreaterThan(8192);
      expect(r.message).toBe(`${field}: ${r.description}`);
      expect((await c.sessions.listSessions({ subject })).sessions).toEqual([]); // no session opened
    }
  });

  it("through @grpc/grpc-js too, with the BadRequest in grpc-status-details-bin", async () => {
    const subject = subjectName("grpcjs");
    const r = await grpcBadRequest(
      unary(grpcJs, "issue")({ subject, scopes: OVERSIZED[0]![1].scopes, client: DEVICE }),
    );
    expect(r.field).toBe("scopes");
    expect(r.description).toMatch(/over TESSERA_MAX_TOKEN_LENGTH \(8192\)/);
    expect((await lean.sessions.listSessions({ subject })).sessions).toEqual([]);
  });

  it("at the edge: the largest claims that fit are issued and every token works (Introspect, Refresh, Revoke); one character more is refused", async () => {
    const scopes = Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(LIMITS.scope, "s"));
    const issue = (n: number, subject: string) => lean.tokens.issue({ subject, scopes, extraClaims: { blob: long(n) }, client: DEVICE });
    const fits = async (n: number) => {
      const subject = subjectName("edge");
      try {
        await issue(n, subject);
        return true;
      } catch (e) {
        expect(ConnectError.from(e).code).toBe(Code.InvalidArgument);
        expect((await lean.sessions.listSessions({ subject })).sessions).toEqual([]);
        return false;
      }
    };
    // Binary search for the largest blob that fits (the answer depends on the subject's and ids' lengths, all fixed).
    let lo = 0;
    let hi = LIMITS.claimsBytes - 20;
    expect(await fits(lo)).toBe(true);
    expect(await fits(hi)).toBe(false);
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (await fits(mid)) lo = mid;
      else hi = mid;
    }
    // The pair at the edge: its longer token is within 3 characters of the limit (base64 grows 4 characters per 3 bytes).
    const subject = subjectName("edge");
    const res = await issue(lo, subject);
    const { accessToken, refreshToken } = res.tokens!;
    const longest = Math.max(accessToken.length, refreshToken.length);
    expect(longest).toBeLessThanOrEqual(8192);
    expect(longest).toBeGreaterThan(8192 - 4);
    for (const c of [lean, h1]) {
      expect((await c.tokens.introspect({ token: accessToken })).active).toBe(true);
      expect((await c.tokens.introspect({ token: refreshToken, expectedType: TokenType.REFRESH })).active).toBe(true);
    }
    const next = await h1.tokens.refresh({ refreshToken, client: DEVICE });
    expect(Math.max(next.tokens!.accessToken.length, next.tokens!.refreshToken.length)).toBeLessThanOrEqual(8192);
    expect((await lean.tokens.revoke({ target: { case: "token", value: next.tokens!.accessToken } })).tokenRevoked).toBe(true);
    expect((await lean.tokens.revoke({ target: { case: "token", value: next.tokens!.refreshToken } })).sessionsRevoked).toBe(1);
    expect((await lean.tokens.introspect({ token: next.tokens!.accessToken })).active).toBe(false);
  });

  it("the log line of a refused Issue says why, and nothing was signed into the log", async () => {
    const before = server.logs.length;
    await badRequest(lean.tokens.issue({ subject: subjectName("log"), scopes: OVERSIZED[0]![1].scopes, client: DEVICE }));
    const lines = server.logs.slice(before).filter((l) => l.msg === "rpc failed");
    expect(lines).toContainEqual(
      expect.objectContaining({
        code: "InvalidArgument",
        err: expect.objectContaining({ message: expect.stringMatching(/^the tokens would be \d+ characters, over TESSERA_MAX_TOKEN_LENGTH/) }),
      }),
    );
    expect(JSON.stringify(server.logs.slice(before))).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}\./);
  });
});

/** An Authority and its API on a shared store, with its own TESSERA_MAX_TOKEN_LENGTH and signing algorithm. */
async function authorityOn(store: Store, clock: ManualClock, maxTokenLength: number, alg: SigningAlgorithm = "ES256") {
  const keys = new KeyRing(store, alg, clock);
  await keys.init();
  const codec = new TokenCodec(keys, { issuer: ISSUER, clockSkewMs: 0, maxTokenLength, verifiedCacheSize: 100 });
  const authority = new Authority({ store, codec, clock, config: DEFAULT_CONFIG });
  const transport = createRouterTransport(routes(services({ authority, keys, maxTokenLength })), {
    router: { interceptors: interceptorsFor({ logger: pino({ level: "silent" }) }) },
  });
  return {
    authority,
    codec,
    keys,
    tokens: createClient(TokenService, transport) as Client<typeof TokenService>,
    sessions: createClient(SessionService, transport) as Client<typeof SessionService>,
  };
}

describe("Refresh never signs a successor Tessera would refuse", () => {
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 0, 500));

  it("a session issued under a larger TESSERA_MAX_TOKEN_LENGTH, refreshed after it was lowered: INVALID_ARGUMENT, nothing rotated", async () => {
    const store = new MemoryStore();
    const before = await authorityOn(store, clock, 16_384);
    const after = await authorityOn(store, clock, 8192);
    const subject = subjectName("lowered");
    const issued = await before.tokens.issue({ subject, scopes: Array.from({ length: 64 }, (_, i) => `${i}`.padEnd(LIMITS.scope, "s")), client: DEVICE });
    const { refreshToken } = issued.tokens!;
    expect(refreshToken.length).toBeGreaterThan(8192);

    const r = await badRequest(after.tokens.refresh({ refreshToken, client: DEVICE }));
    expect(r.field).toBe("refresh_token");
    // Nothing rotated: the presented token is still its session's current one, the session is untouched.
    const still = await before.tokens.introspect({ token: refreshToken, expectedType: TokenType.REFRESH });
    expect(still.active).toBe(true);
    const [session] = (await before.sessions.listSessions({ subject })).sessions;
    expect(session?.sessionId).toBe(issued.sessionId);
    // The way out is the session's own: Revoke by session id (or subject) works under the lowered limit.
    expect((await after.tokens.revoke({ target: { case: "sessionId", value: issued.sessionId } })).sessionsRevoked).toBe(1);
  });

  it("a successor that would outgrow the limit (the signing algorithm became RS256): INVALID_ARGUMENT naming refresh_token, nothing rotated", async () => {
    const store = new MemoryStore();
    const es256 = await authorityOn(store, clock, 8192, "ES256");
    const subject = subjectName("alg");
    // Claims sized so the refresh token is just under 8192 with an ES256 signature (86 characters); RS256's is 342.
    const scopes = Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(LIMITS.scope, "s"));
    let n = 2000;
    let issued = await es256.tokens.issue({ subject, scopes, extraClaims: { blob: long(n) }, client: DEVICE });
    while (issued.tokens!.refreshToken.length < 8192 - 150) {
      n += 30;
      issued = await es256.tokens.issue({ subject, scopes, extraClaims: { blob: long(n) }, client: DEVICE });
    }
    const { refreshToken } = issued.tokens!;
    expect(refreshToken.length).toBeLessThanOrEqual(8192);
    expect(refreshToken.length).toBeGreaterThan(8192 - 256);

    const rs256 = await authorityOn(store, clock, 8192, "RS256");
    expect(rs256.keys.signingKey().alg).toBe("RS256");
    const r = await badRequest(rs256.tokens.refresh({ refreshToken, client: DEVICE }));
    expect(r.field).toBe("refresh_token");
    expect(r.description).toMatch(/^the successor tokens would be \d+ characters, over TESSERA_MAX_TOKEN_LENGTH \(8192\)/);
    // Nothing rotated: the same token still refreshes (under ES256, where its successor fits).
    expect((await es256.tokens.introspect({ token: refreshToken, expectedType: TokenType.REFRESH })).active).toBe(true);
    const next = await es256.tokens.refresh({ refreshToken, client: DEVICE });
    expect(next.sessionId).toBe(issued.sessionId);
  });
});

describe("the predicted length is the signed length", () => {
  it.each(SIGNING_ALGORITHMS)("%s: prepare(kind, input).length equals the length of the token signed from it", async (alg) => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 0, 500));
    const keys = new KeyRing(new MemoryStore(), alg, clock);
    await keys.init();
    const codec = new TokenCodec(keys, { issuer: "https://issuer.example/ü", clockSkewMs: 0, maxTokenLength: 65_536 });
    const grants = [
      { audience: [], scopes: [], claims: {}, accessTtlMs: 1000 },
      { audience: ["a"], scopes: ["read"], claims: { n: 1.5, neg: -0, big: 1e21, t: true, z: null }, accessTtlMs: 900_000 },
      { audience: ["ünï", "😀"], scopes: ["x:y", "a/b"], claims: { s: 'quote " back \\ slash 名 😀', deep: { a: [1, [2, { b: "c" }]] } }, accessTtlMs: 3_600_000 },
    ];
    for (const grant of grants) {
      for (const subject of ["a", "名前 😀 \"quoted\"", long(256)]) {
        const input = { subject, sessionId: `${"t".repeat(16)}${randomId()}`, jti: randomId(), grant, now: clock.now(), expiresAt: clock.now() + 7 * 86_400_000 };
        expect(codec.prepare("access", input).length).toBe((await codec.signAccess(input)).length);
        expect(codec.prepare("refresh", input).length).toBe((await codec.signRefresh(input)).length);
      }
    }
  });
});

describe("property: whatever Issue hands out, Introspect, Refresh and Revoke accept", () => {
  it("any request within the field bounds is refused INVALID_ARGUMENT or yields tokens that work everywhere", async () => {
    const clock = new ManualClock(Date.UTC(2026, 0, 1, 12, 0, 0, 500));
    const api = await authorityOn(new MemoryStore(), clock, 8192);
    // 😀 is two UTF-16 units: half the bound in units keeps most requests inside the field bounds.
    const text = (max: number) =>
      fc.string({ unit: fc.constantFrom("a", "é", "名", "😀", "\"", "\\", "z"), minLength: 1, maxLength: max / 2, size: "large" });
    const scope = fc.string({ unit: fc.constantFrom("a", "b", ":", "/", "!", "~"), minLength: 1, maxLength: LIMITS.scope, size: "large" });
    const seen = { issued: 0, tooLarge: 0 };
    await fc.assert(
      fc.asyncProperty(
        text(LIMITS.subject),
        fc.array(text(LIMITS.audience), { maxLength: LIMITS.audienceItems, size: "large" }),
        fc.array(scope, { maxLength: LIMITS.scopeItems, size: "large" }),
        fc.nat({ max: 1300 }),
        async (subject, audience, scopes, claimChars) => {
          const req = create(IssueRequestSchema, { subject, audience, scopes, extraClaims: { blob: long(claimChars, "名") }, client: DEVICE });
          let issued;
          try {
            issued = await api.tokens.issue(req);
          } catch (e) {
            const err = ConnectError.from(e);
            expect(Code[err.code], err.rawMessage).toBe(Code[Code.InvalidArgument]);
            if (/would be \d+ characters/.test(err.rawMessage)) {
              seen.tooLarge++;
              expect((await api.sessions.listSessions({ subject })).sessions).toEqual([]);
            }
            return;
          }
          seen.issued++;
          const { accessToken, refreshToken } = issued.tokens!;
          for (const [token, expectedType] of [[accessToken, TokenType.ACCESS], [refreshToken, TokenType.REFRESH]] as const) {
            expect((await api.tokens.introspect({ token, expectedType })).active).toBe(true);
          }
          expect(decodeJwt(accessToken).sub).toBe(subject);
          const next = await api.tokens.refresh({ refreshToken, client: DEVICE });
          expect((await api.tokens.revoke({ target: { case: "token", value: next.tokens!.accessToken } })).tokenRevoked).toBe(true);
          expect((await api.tokens.revoke({ target: { case: "token", value: next.tokens!.refreshToken } })).sessionsRevoked).toBe(1);
        },
      ),
      { numRuns: 60, endOnFailure: true }, // no shrinking: each run signs and stores
    );
    // Both outcomes were exercised.
    expect(seen.issued).toBeGreaterThan(0);
    expect(seen.tooLarge).toBeGreaterThan(0);
  });
});

// -------------------------------------------------------------------------------------------------------------------
// 2. Claim values

describe("extra_claims values are checked, recursively, through real clients", () => {
  let server: StartedServer;
  let grpcJs: grpc.Client;
  let grpcSessions: grpc.Client;
  let connectGrpc: ConnectClients;
  let connectJson: ConnectClients;

  beforeAll(async () => {
    server = await startServer();
    grpcJs = grpcJsClient("TokenService", server.url);
    grpcSessions = grpcJsClient("SessionService", server.url);
    connectGrpc = connectClients("connect-grpc", server.url);
    connectJson = connectClients("connect-h1", server.url);
  });
  afterAll(async () => {
    grpcJs?.close();
    grpcSessions?.close();
    connectGrpc?.close();
    connectJson?.close();
    await server?.close();
  });

  type GrpcValue = Record<string, unknown>;
  const num = (numberValue: number): GrpcValue => ({ numberValue });
  const str = (stringValue: string): GrpcValue => ({ stringValue });
  const list = (...values: GrpcValue[]): GrpcValue => ({ listValue: { values } });
  const obj = (fields: Record<string, GrpcValue>): GrpcValue => ({ structValue: { fields } });

  /** Raw google.protobuf.Struct values grpc-js puts on the wire as they are (proto3 doubles carry NaN and Infinity). */
  const RAW: [string, Record<string, GrpcValue>, string][] = [
    ["Infinity", { n: num(Infinity) }, "extra_claims.n"],
    ["-Infinity", { n: num(-Infinity) }, "extra_claims.n"],
    ["NaN", { n: num(NaN) }, "extra_claims.n"],
    ["Infinity deep in a list", { a: obj({ b: list(num(1), num(2), num(Infinity)) }) }, "extra_claims.a.b[2]"],
    ["NUL in a value", { s: str("a\u0000b") }, "extra_claims.s"],
    ["ESC in a value", { s: str("\u001b[31mred") }, "extra_claims.s"],
    ["a right-to-left override in a value", { s: str("admin\u202etxt") }, "extra_claims.s"],
    ["a line separator in a nested value", { a: obj({ b: obj({ c: str("x\u2028y") }) }) }, "extra_claims.a.b.c"],
    ["a control character in a list of strings", { roles: list(str("ok"), str("bad\u0085")) }, "extra_claims.roles[1]"],
    ["a control character in a nested object key", { a: obj({ "k\u0007": str("v") }) }, "extra_claims.a"],
    ["a bidi isolate in a key under a list", { a: list(obj({ "\u2066k": num(1) })) }, "extra_claims.a[0]"],
    ["an empty nested key", { a: obj({ "": num(1) }) }, "extra_claims.a"],
    ["a nested key of 65 characters", { a: obj({ [long(65)]: num(1) }) }, "extra_claims.a"],
    ["a non-identifier key on the path", { "https://example.com/roles": list(str("\u0000")) }, 'extra_claims["https://example.com/roles"][0]'],
    ["objects and lists nested 9 deep", { d: Array.from({ length: 8 }).reduce<GrpcValue>((v) => list(v), list(num(1))) }, "extra_claims.d[0][0][0][0][0][0][0][0]"],
  ];

  it.each(RAW)("grpc-js (lean path), %s: INVALID_ARGUMENT naming the path", async (_name, fields, field) => {
    const subject = subjectName("claims");
    const r = await grpcBadRequest(unary(grpcJs, "issue")({ subject, extraClaims: { fields }, client: DEVICE }));
    expect(r.field).toBe(field);
    expect(r.message.startsWith(`${field}: `)).toBe(true);
    expect(r.message).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/); // nothing echoed
    expect((await unary<{ sessions: unknown[] }>(grpcSessions, "listSessions")({ subject })).sessions).toEqual([]);
  });

  it("connect's gRPC transport: Infinity and NaN (binary protobuf carries them) are refused", async () => {
    for (const [claims, field] of [
      [{ n: Infinity }, "extra_claims.n"],
      [{ list: [1, Number.NaN] }, "extra_claims.list[1]"],
      [{ a: { b: [{ c: -Infinity }] } }, "extra_claims.a.b[0].c"],
    ] as const) {
      const r = await badRequest(connectGrpc.tokens.issue({ subject: subjectName("cg"), extraClaims: claims as unknown as JsonObject, client: DEVICE }));
      expect(r.field).toBe(field);
      expect(r.description).toBe("must be a finite number");
    }
  });

  it("the Connect protocol's JSON: control characters in values and keys, at any depth", async () => {
    for (const [claims, field] of [
      [{ s: "a\u0000b" }, "extra_claims.s"],
      [{ a: { b: ["ok", "\u001b"] } }, "extra_claims.a.b[1]"],
      [{ a: { "x\u202ey": 1 } }, "extra_claims.a"],
    ] as const) {
      const r = await badRequest(connectJson.tokens.issue({ subject: subjectName("cj"), extraClaims: claims as unknown as JsonObject, client: DEVICE }));
      expect(r.field).toBe(field);
    }
  });

  it("valid nested claims (8 deep, Unicode, every JSON type) are signed and read back unchanged", async () => {
    const deep = Array.from({ length: 7 }).reduce<unknown>((v) => [v], [1]); // 8 lists
    const claims = { tenant: "acme", n: 1.5, neg: -3, ok: true, none: null, deep, nested: { "https://example.com/x": ["名前 😀", { k: "v" }] } } as JsonObject;
    const subject = subjectName("valid");
    const res = await connectGrpc.tokens.issue({ subject, extraClaims: claims, client: DEVICE });
    const info = await connectGrpc.tokens.introspect({ token: res.tokens!.accessToken });
    expect(info.active).toBe(true);
    expect(info.claims).toEqual(claims);
    const grpcRes = await unary<{ tokens: { accessToken: string } }>(grpcJs, "issue")({ subject, extraClaims: toGrpcStruct(claims), client: DEVICE });
    expect(decodeJwt(grpcRes.tokens.accessToken)).toMatchObject(claims);
  });
});
