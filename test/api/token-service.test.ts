/** API tier: the Connect services over an in-memory router transport (no network). */
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { InactiveReason, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { interceptorsFor } from "../../src/api/pipeline.js";
import { routes, services } from "../../src/api/routes.js";
import { StoreUnavailableError } from "../../src/domain/errors.js";
import type { Store } from "../../src/domain/store.js";
import { MemoryStore } from "../../src/store/memory.js";
import { makeAuthority } from "../helpers/authority.js";

/**
 * The memory store, with a switch that makes every call fail as an unreachable store would, and a record of the
 * methods called on it (in order).
 */
function switchableStore(): { store: Store; setDown: (down: boolean) => void; calls: string[] } {
  const inner = new MemoryStore();
  let down = false;
  const calls: string[] = [];
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function" || prop === "close") return value;
      return (...args: unknown[]) => {
        calls.push(String(prop));
        return down ? Promise.reject(new StoreUnavailableError()) : value.apply(target, args);
      };
    },
  });
  return { store, setDown: (d) => (down = d), calls };
}

async function setup() {
  const { store, setDown, calls } = switchableStore();
  const f = await makeAuthority({}, { store });
  const transport = createRouterTransport(routes(services({ authority: f.authority, keys: f.keys, maxTokenLength: 8192 })), {
    router: { interceptors: interceptorsFor({ logger: pino({ level: "silent" }) }) },
  });
  return {
    ...f,
    setDown,
    storeCalls: calls,
    tokens: createClient(TokenService, transport),
    sessions: createClient(SessionService, transport),
  };
}

async function codeOf(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return { code: (err as ConnectError).code, message: (err as ConnectError).rawMessage };
}

const client = { deviceId: "d1", userAgent: "ua", ip: "192.0.2.1", platform: "web" };

describe("TokenService over the router transport", () => {
  it("issues, introspects, refreshes and revokes", async () => {
    const { tokens } = await setup();
    const issued = await tokens.issue({ subject: "alice", scopes: ["read"], client, extraClaims: { tier: "gold" } });
    expect(issued.tokens?.tokenType).toBe("Bearer");
    const info = await tokens.introspect({ token: issued.tokens!.accessToken });
    expect(info).toMatchObject({
      active: true,
      subject: "alice",
      scopes: ["read"],
      sessionId: issued.sessionId,
      tokenType: TokenType.ACCESS,
      claims: { tier: "gold" },
      inactiveReason: InactiveReason.UNSPECIFIED,
    });
    const refreshed = await tokens.refresh({ refreshToken: issued.tokens!.refreshToken, client });
    expect(refreshed.sessionId).toBe(issued.sessionId);
    expect(await tokens.revoke({ target: { case: "subject", value: "alice" } })).toMatchObject({ sessionsRevoked: 1 });
    const after = await tokens.introspect({ token: refreshed.tokens!.accessToken });
    expect(after).toMatchObject({ active: false, inactiveReason: InactiveReason.REVOKED, subject: "" });
  });

  it("answers a bad token with active=false, not an error", async () => {
    const { tokens } = await setup();
    const r = await tokens.introspect({ token: "not-a-jwt" });
    expect(r.active).toBe(false);
    expect(r.inactiveReason).toBe(InactiveReason.MALFORMED);
  });

  it.each([
    ["empty subject", { subject: "" }, "subject"],
    ["long subject", { subject: "x".repeat(257) }, "subject"],
    ["control character", { subject: "a\nb" }, "subject"],
    ["bad scope", { subject: "a", scopes: ["has space"] }, "scopes[0]"],
    ["too many audiences", { subject: "a", audience: Array.from({ length: 17 }, (_, i) => `a${i}`) }, "audience"],
    ["reserved claim", { subject: "a", extraClaims: { exp: 1 } }, "extra_claims"],
    ["oversized claims", { subject: "a", extraClaims: { blob: "x".repeat(5000) } }, "extra_claims"],
    ["bad ip", { subject: "a", client: { ...client, ip: "999.1.1.1" } }, "client.ip"],
    ["access_ttl too long", { subject: "a", accessTtl: { seconds: 7200n, nanos: 0 } }, "access_ttl"],
    ["negative refresh_ttl", { subject: "a", refreshTtl: { seconds: -1n, nanos: 0 } }, "refresh_ttl"],
  ])("Issue with %s is INVALID_ARGUMENT naming the field", async (_name, req, field) => {
    const { tokens, store, clock, storeCalls, audited } = await setup();
    const before = storeCalls.length;
    const { code, message } = await codeOf(tokens.issue(req));
    expect(code).toBe(Code.InvalidArgument);
    expect(message.startsWith(`${field}`)).toBe(true);
    // Nothing was created: refused before the store was asked anything (however bad the subject, which
    // ListSessions would refuse to look up), no session for the subject, no login audited.
    expect(storeCalls.slice(before)).toEqual([]);
    expect(await store.listSessions((req as { subject: string }).subject, clock.now())).toEqual([]);
    expect(audited.filter((e) => e.type === "token_issued")).toEqual([]);
  });

  it("maps request problems and state to the documented codes", async () => {
    const { tokens, sessions } = await setup();
    expect((await codeOf(tokens.revoke({}))).code).toBe(Code.InvalidArgument);
    expect((await codeOf(tokens.introspect({ token: "" }))).code).toBe(Code.InvalidArgument);
    expect((await codeOf(tokens.introspect({ token: "a".repeat(8193) }))).code).toBe(Code.InvalidArgument);
    expect((await codeOf(tokens.introspect({ token: "a.b.c", expectedType: 7 as TokenType }))).code).toBe(
      Code.InvalidArgument,
    );
    expect((await codeOf(tokens.refresh({ refreshToken: "a.b.c" }))).code).toBe(Code.Unauthenticated);
    expect((await codeOf(sessions.getSession({ sessionId: "AAAAAAAAAAAAAAAAAAAAAA" }))).code).toBe(Code.NotFound);
    expect((await codeOf(sessions.getSession({ sessionId: "../x" }))).code).toBe(Code.InvalidArgument);
  });

  it("fails closed with UNAVAILABLE when the store is down, and recovers", async () => {
    const { tokens, setDown } = await setup();
    const issued = await tokens.issue({ subject: "alice", client });
    setDown(true);
    const token = issued.tokens!.accessToken;
    expect((await codeOf(tokens.introspect({ token }))).code).toBe(Code.Unavailable);
    expect((await codeOf(tokens.issue({ subject: "alice", client }))).code).toBe(Code.Unavailable);
    expect((await codeOf(tokens.refresh({ refreshToken: issued.tokens!.refreshToken, client }))).code).toBe(
      Code.Unavailable,
    );
    expect((await codeOf(tokens.revoke({ target: { case: "token", value: token } }))).code).toBe(Code.Unavailable);
    setDown(false);
    expect((await tokens.introspect({ token })).active).toBe(true);
  });
});
