/**
 * API tier: every edge validation rule, table-driven over the router transport. Each violation is INVALID_ARGUMENT,
 * its message starts with the field, and it carries exactly one google.rpc.BadRequest field violation naming that
 * field. A rejected Issue creates nothing: the store never sees a createSession.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { pino } from "pino";
import { beforeAll, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import {
  IntrospectRequestSchema,
  IssueRequestSchema,
  RefreshRequestSchema,
  RevokeRequestSchema,
  TokenService,
} from "../../gen/tessera/v1/token_pb.js";
import { interceptorsFor } from "../../src/api/pipeline.js";
import { routes, services } from "../../src/api/routes.js";
import * as v from "../../src/api/validate.js";
import type { Store } from "../../src/domain/store.js";
import { MemoryStore } from "../../src/store/memory.js";
import { makeAuthority } from "../helpers/authority.js";

let created = 0;
let tokens: ReturnType<typeof createClient<typeof TokenService>>;
let sessions: ReturnType<typeof createClient<typeof SessionService>>;

beforeAll(async () => {
  const inner = new MemoryStore();
  // Counts session creations, so a rejected Issue can be shown to have created nothing.
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === "createSession") created++;
      return Reflect.get(target, prop, receiver);
    },
  }) as Store;
  const f = await makeAuthority({}, { store }); // access_ttl max 1h, refresh_ttl max 30d
  const transport = createRouterTransport(routes(services({ authority: f.authority, keys: f.keys, maxTokenLength: 8192 })), {
    router: { interceptors: interceptorsFor({ logger: pino({ level: "silent" }) }) },
  });
  tokens = createClient(TokenService, transport);
  sessions = createClient(SessionService, transport);
});

/** The call's INVALID_ARGUMENT as { message, field violations }; fails the test on any other outcome. */
async function badRequest(call: Promise<unknown>) {
  const err = await call.then(
    () => expect.fail("expected INVALID_ARGUMENT, but the call succeeded"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  const ce = err as ConnectError;
  expect(Code[ce.code]).toBe(Code[Code.InvalidArgument]);
  const details = ce.findDetails(BadRequestSchema);
  expect(details).toHaveLength(1);
  return { message: ce.rawMessage, violations: details[0]!.fieldViolations.map((v) => ({ field: v.field, description: v.description })) };
}

const ok = { subject: "v-user", client: { deviceId: "d1", userAgent: "ua", ip: "192.0.2.1", platform: "web" } };
const client = ok.client;
const long = (n: number) => "x".repeat(n);
const ms = (n: number) => ({ seconds: BigInt(Math.floor(n / 1000)), nanos: (n % 1000) * 1_000_000 });

type IssueReq = MessageInitShape<typeof IssueRequestSchema>;
const ISSUE: [string, IssueReq, string][] = [
  ["empty subject", { ...ok, subject: "" }, "subject"],
  ["subject of 257 characters", { ...ok, subject: long(257) }, "subject"],
  ["newline in subject", { ...ok, subject: "a\nb" }, "subject"],
  ["C1 control in subject", { ...ok, subject: "a\u0085b" }, "subject"],
  ["bidi override in subject", { ...ok, subject: "admin\u202etxt" }, "subject"],
  ["17 audiences", { ...ok, audience: Array.from({ length: 17 }, (_, i) => `a${i}`) }, "audience"],
  ["empty audience", { ...ok, audience: ["api", ""] }, "audience[1]"],
  ["audience of 257 characters", { ...ok, audience: [long(257)] }, "audience[0]"],
  ["65 scopes", { ...ok, scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }, "scopes"],
  ["empty scope", { ...ok, scopes: [""] }, "scopes[0]"],
  ["scope of 129 characters", { ...ok, scopes: [long(129)] }, "scopes[0]"],
  ["scope with a space", { ...ok, scopes: ["read", "has space"] }, "scopes[1]"],
  ["scope with a quote", { ...ok, scopes: ['say"hi'] }, "scopes[0]"],
  ["extra claims over 4 KiB", { ...ok, extraClaims: { blob: long(5000) } }, "extra_claims"],
  ["reserved claim exp", { ...ok, extraClaims: { exp: 1 } }, "extra_claims"],
  ["reserved claim sub", { ...ok, extraClaims: { sub: "root" } }, "extra_claims"],
  ["empty claim name", { ...ok, extraClaims: { "": 1 } }, "extra_claims"],
  ["claim name of 65 characters", { ...ok, extraClaims: { [long(65)]: 1 } }, "extra_claims"],
  ["control character in a claim name", { ...ok, extraClaims: { "a\tb": 1 } }, "extra_claims"],
  ["device_id of 129 characters", { ...ok, client: { ...client, deviceId: long(129) } }, "client.device_id"],
  ["control character in device_id", { ...ok, client: { ...client, deviceId: "d\u0000" } }, "client.device_id"],
  ["user_agent of 513 characters", { ...ok, client: { ...client, userAgent: long(513) } }, "client.user_agent"],
  ["platform of 33 characters", { ...ok, client: { ...client, platform: long(33) } }, "client.platform"],
  ["ip that is no address", { ...ok, client: { ...client, ip: "999.1.1.1" } }, "client.ip"],
  ["ip of 46 characters", { ...ok, client: { ...client, ip: long(46) } }, "client.ip"],
  ["negative access_ttl", { ...ok, accessTtl: { seconds: -1n, nanos: 0 } }, "access_ttl"],
  ["zero access_ttl", { ...ok, accessTtl: { seconds: 0n, nanos: 0 } }, "access_ttl"],
  ["access_ttl below 1s", { ...ok, accessTtl: ms(500) }, "access_ttl"],
  ["access_ttl in fractions of a millisecond", { ...ok, accessTtl: { seconds: 60n, nanos: 1 } }, "access_ttl"],
  ["access_ttl with nanos above a second", { ...ok, accessTtl: { seconds: 60n, nanos: 1_000_000_000 } }, "access_ttl"],
  ["access_ttl above its maximum", { ...ok, accessTtl: { seconds: 7200n, nanos: 0 } }, "access_ttl"],
  ["negative refresh_ttl", { ...ok, refreshTtl: { seconds: -1n, nanos: 0 } }, "refresh_ttl"],
  ["refresh_ttl above its maximum", { ...ok, refreshTtl: { seconds: 31n * 86400n, nanos: 0 } }, "refresh_ttl"],
];

type RefreshReq = MessageInitShape<typeof RefreshRequestSchema>;
const REFRESH: [string, RefreshReq, string][] = [
  ["empty refresh_token", { refreshToken: "", client }, "refresh_token"],
  ["refresh_token over TESSERA_MAX_TOKEN_LENGTH", { refreshToken: long(8193), client }, "refresh_token"],
  ["bad client ip", { refreshToken: "a.b.c", client: { ...client, ip: "localhost" } }, "client.ip"],
  ["user_agent with a line separator", { refreshToken: "a.b.c", client: { ...client, userAgent: "a\u2028b" } }, "client.user_agent"],
];

type RevokeReq = MessageInitShape<typeof RevokeRequestSchema>;
const REVOKE: [string, RevokeReq, string][] = [
  ["no target", {}, "target"],
  ["empty token", { target: { case: "token", value: "" } }, "token"],
  ["token over TESSERA_MAX_TOKEN_LENGTH", { target: { case: "token", value: long(8193) } }, "token"],
  ["token that is not a Tessera token", { target: { case: "token", value: "a.b.c" } }, "token"],
  ["empty session_id", { target: { case: "sessionId", value: "" } }, "session_id"],
  ["session_id with a slash", { target: { case: "sessionId", value: "../x" } }, "session_id"],
  ["session_id of 65 characters", { target: { case: "sessionId", value: "A".repeat(65) } }, "session_id"],
  ["empty subject", { target: { case: "subject", value: "" } }, "subject"],
  ["subject of 257 characters", { target: { case: "subject", value: long(257) } }, "subject"],
  ["reason of 257 characters", { target: { case: "subject", value: "a" }, reason: long(257) }, "reason"],
  ["control character in reason", { target: { case: "subject", value: "a" }, reason: "a\rb" }, "reason"],
];

type IntrospectReq = MessageInitShape<typeof IntrospectRequestSchema>;
const INTROSPECT: [string, IntrospectReq, string][] = [
  ["empty token", { token: "" }, "token"],
  ["token over TESSERA_MAX_TOKEN_LENGTH", { token: long(8193) }, "token"],
  ["audience of 257 characters", { token: "a.b.c", audience: long(257) }, "audience"],
  ["control character in audience", { token: "a.b.c", audience: "a\u007f" }, "audience"],
  ["unknown expected_type", { token: "a.b.c", expectedType: 7 as TokenType }, "expected_type"],
];

const SESSIONS: [string, () => Promise<unknown>, string][] = [
  ["ListSessions with an empty subject", () => sessions.listSessions({ subject: "" }), "subject"],
  ["ListSessions with a subject of 257 characters", () => sessions.listSessions({ subject: long(257) }), "subject"],
  ["GetSession with an empty session_id", () => sessions.getSession({ sessionId: "" }), "session_id"],
  ["GetSession with a session_id with a dot", () => sessions.getSession({ sessionId: "a.b" }), "session_id"],
];

function expectNamed(r: { message: string; violations: { field: string; description: string }[] }, field: string) {
  expect(r.violations).toEqual([{ field, description: expect.stringMatching(/\S/) }]);
  expect(r.message.startsWith(field)).toBe(true);
}

describe("edge validation: INVALID_ARGUMENT with a BadRequest naming the field", () => {
  it.each(ISSUE)("Issue with %s", async (_name, req, field) => {
    const before = created;
    expectNamed(await badRequest(tokens.issue(req)), field);
    expect(created).toBe(before); // nothing was created
  });

  it.each(REFRESH)("Refresh with %s", async (_name, req, field) => {
    expectNamed(await badRequest(tokens.refresh(req)), field);
  });

  it.each(REVOKE)("Revoke with %s", async (_name, req, field) => {
    expectNamed(await badRequest(tokens.revoke(req)), field);
  });

  it.each(INTROSPECT)("Introspect with %s", async (_name, req, field) => {
    expectNamed(await badRequest(tokens.introspect(req)), field);
  });

  it.each(SESSIONS)("%s", async (_name, call, field) => {
    expectNamed(await badRequest(call()), field);
  });

  it("the description says what is wrong, without repeating the field", async () => {
    const r = await badRequest(tokens.issue({ ...ok, scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }));
    expect(r.violations).toEqual([{ field: "scopes", description: "more than 64 entries" }]);
    expect(r.message).toBe("scopes: more than 64 entries");
    const ttl = await badRequest(tokens.issue({ ...ok, accessTtl: { seconds: 7200n, nanos: 0 } }));
    expect(ttl.violations).toEqual([{ field: "access_ttl", description: "access_ttl exceeds the maximum of 3600s" }]);
  });

  it("a valid Issue at every bound succeeds and creates exactly one session", async () => {
    const before = created;
    const res = await tokens.issue({
      subject: long(256),
      audience: Array.from({ length: 16 }, (_, i) => `aud-${i}`),
      scopes: Array.from({ length: 64 }, (_, i) => `scope:${i}`),
      extraClaims: { tier: "gold", [long(64)]: "名前 😀" },
      client: { deviceId: long(128), userAgent: long(512), ip: "2001:db8::1", platform: long(32) },
      accessTtl: ms(3_600_000),
      refreshTtl: ms(30 * 86_400_000),
    });
    expect(res.sessionId).not.toBe("");
    expect(created).toBe(before + 1);
  });

  it("a lone surrogate is refused (it reaches the server only through JSON; binary protobuf replaces it)", () => {
    expect(() => v.subject("subject", "a\ud800b")).toThrow(/^subject: contains control characters or invalid Unicode$/);
    expect(v.subject("subject", "a\ud83d\ude00b")).toBe("a😀b");
  });

  it("other errors carry no BadRequest", async () => {
    const err = await tokens.refresh({ refreshToken: "a.b.c", client }).catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect((err as ConnectError).findDetails(BadRequestSchema)).toEqual([]);
  });
});
