/**
 * The four TokenService RPCs and SessionService against a real server on port 0 (memory store), through every client
 * kind: Connect client over gRPC, over the Connect protocol on HTTP/1.1 and HTTP/2, and @grpc/grpc-js.
 */
import { randomUUID } from "node:crypto";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CLIENT_KINDS,
  Code,
  codeOf,
  InactiveReason,
  statusOf,
  tesseraClient,
  TokenType,
  type TesseraClient,
} from "../helpers/clients.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const PHONE = { deviceId: "phone-1", userAgent: "tessera-e2e/1.0", ip: "192.0.2.10", platform: "ios" };
const LAPTOP = { deviceId: "laptop-9", userAgent: "tessera-e2e/1.0", ip: "2001:db8::1", platform: "web" };

let server: StartedServer;

beforeAll(async () => {
  server = await startServer({ TESSERA_MAX_SESSIONS: "2", TESSERA_ISSUER: "https://auth.test", TESSERA_AUDIENCE: "api" });
});
afterAll(async () => {
  await server?.close();
});

describe.each(CLIENT_KINDS)("through %s", (kind) => {
  let c: TesseraClient;
  const subject = () => `user-${kind}-${randomUUID()}`;

  beforeAll(() => {
    c = tesseraClient(kind, server.url);
  });
  afterAll(() => c?.close());

  it("Issue returns typed, kid-bearing JWTs with every claim and the caller's extra claims", async () => {
    const sub = subject();
    const before = Math.floor(Date.now() / 1000);
    const res = await c.issue({
      subject: sub,
      audience: ["orders", "billing"],
      scopes: ["read", "write"],
      extraClaims: { tenant: "acme", tier: 3, beta: true },
      client: PHONE,
    });
    expect(res.sessionId).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(res.tokens.tokenType).toBe("Bearer");

    const ah = decodeProtectedHeader(res.tokens.accessToken);
    const rh = decodeProtectedHeader(res.tokens.refreshToken);
    expect(ah.typ).toBe("at+jwt");
    expect(rh.typ).toBe("rt+jwt");
    expect(ah.kid).toEqual(expect.any(String));
    expect(rh.kid).toBe(ah.kid);
    // The access token is signed (ES256, in the JWKS); the refresh token, read by Tessera alone, carries an HMAC.
    expect([ah.alg, rh.alg]).toEqual(["ES256", "HS256"]);

    const at = decodeJwt(res.tokens.accessToken);
    expect(at).toMatchObject({
      iss: "https://auth.test",
      sub,
      aud: ["orders", "billing"],
      sid: res.sessionId,
      scope: "read write",
      tenant: "acme",
      tier: 3,
      beta: true,
    });
    expect(at.jti).toMatch(/^[A-Za-z0-9_-]{22,}$/);
    expect(at.iat).toBeGreaterThanOrEqual(before);
    expect(at.nbf).toBe(at.iat);
    expect(at.exp).toBe(res.tokens.accessExpiresAt / 1000);
    expect(at.exp! - at.iat!).toBeLessThanOrEqual(15 * 60);
    const rt = decodeJwt(res.tokens.refreshToken);
    expect(rt).toMatchObject({ iss: "https://auth.test", sub, sid: res.sessionId });
    expect(rt.jti).not.toBe(at.jti);
    expect(rt.exp).toBe(res.tokens.refreshExpiresAt / 1000);
  });

  it("Introspect: access active with its fields, refresh only as REFRESH, garbage MALFORMED", async () => {
    const sub = subject();
    const { tokens, sessionId } = await c.issue({
      subject: sub,
      scopes: ["profile"],
      extraClaims: { tenant: "acme", roles: ["admin", "ops"] },
      client: PHONE,
    });
    const at = decodeJwt(tokens.accessToken);

    const a = await c.introspect(tokens.accessToken);
    expect(a).toMatchObject({
      active: true,
      subject: sub,
      scopes: ["profile"],
      audience: ["api"],
      issuer: "https://auth.test",
      jti: at.jti,
      sessionId,
      tokenType: TokenType.ACCESS,
      claims: { tenant: "acme", roles: ["admin", "ops"] },
      inactiveReason: InactiveReason.UNSPECIFIED,
    });
    expect(a.expiresAt).toBe(at.exp! * 1000);
    expect(a.issuedAt).toBe(at.iat! * 1000);
    expect(a.notBefore).toBe(at.nbf! * 1000);
    expect(await statusOf(c, tokens.accessToken, TokenType.ACCESS, "api")).toBe("ACTIVE");
    expect(await statusOf(c, tokens.accessToken, TokenType.ACCESS, "elsewhere")).toBe("WRONG_AUDIENCE");

    expect(await c.introspect(tokens.refreshToken)).toMatchObject({
      active: false,
      subject: "",
      inactiveReason: InactiveReason.WRONG_TYPE,
    });
    expect(await statusOf(c, tokens.accessToken, TokenType.REFRESH)).toBe("WRONG_TYPE");
    expect(await c.introspect(tokens.refreshToken, TokenType.REFRESH)).toMatchObject({
      active: true,
      subject: sub,
      sessionId,
      tokenType: TokenType.REFRESH,
    });

    for (const garbage of ["garbage", "a.b.c", "not a token at all"]) {
      expect(await statusOf(c, garbage)).toBe("MALFORMED");
    }
    const [header, , signature] = tokens.accessToken.split(".");
    const forged = Buffer.from(JSON.stringify({ ...at, sub: "someone-else" })).toString("base64url");
    expect(await statusOf(c, `${header}.${forged}.${signature}`)).toBe("BAD_SIGNATURE");
  });

  it("Refresh returns a new pair and retires the old refresh token (ROTATED)", async () => {
    const { tokens, sessionId } = await c.issue({ subject: subject(), scopes: ["a"], client: PHONE });
    const next = await c.refresh(tokens.refreshToken, PHONE);
    expect(next.sessionId).toBe(sessionId);
    expect(next.tokens.accessToken).not.toBe(tokens.accessToken);
    expect(next.tokens.refreshToken).not.toBe(tokens.refreshToken);
    expect(decodeJwt(next.tokens.accessToken)).toMatchObject({ sid: sessionId, scope: "a" });
    expect(next.tokens.refreshExpiresAt).toBe(tokens.refreshExpiresAt);

    expect(await statusOf(c, tokens.refreshToken, TokenType.REFRESH)).toBe("ROTATED");
    expect(await statusOf(c, next.tokens.refreshToken, TokenType.REFRESH)).toBe("ACTIVE");
    expect(await statusOf(c, next.tokens.accessToken)).toBe("ACTIVE");
  });

  it("Refresh reuse from another device is UNAUTHENTICATED and kills the whole session", async () => {
    const { tokens, sessionId } = await c.issue({ subject: subject(), client: PHONE });
    const next = await c.refresh(tokens.refreshToken, PHONE);

    expect(await codeOf(c.refresh(tokens.refreshToken, LAPTOP))).toBe(Code.Unauthenticated);

    expect(await statusOf(c, next.tokens.accessToken)).toBe("REVOKED");
    expect(await statusOf(c, next.tokens.refreshToken, TokenType.REFRESH)).toBe("REVOKED");
    expect(await codeOf(c.refresh(next.tokens.refreshToken, PHONE))).toBe(Code.Unauthenticated);
    expect(await codeOf(c.getSession(sessionId))).toBe(Code.NotFound);
  });

  it("Revoke by access token: that token is REVOKED, its session lives on", async () => {
    const { tokens } = await c.issue({ subject: subject(), client: PHONE });
    expect(await c.revoke({ token: tokens.accessToken }, "lost device")).toEqual({ sessionsRevoked: 0, tokenRevoked: true });
    expect(await statusOf(c, tokens.accessToken)).toBe("REVOKED");
    expect(await c.revoke({ token: tokens.accessToken })).toEqual({ sessionsRevoked: 0, tokenRevoked: false });
    expect(await statusOf(c, tokens.accessToken)).toBe("REVOKED");

    const next = await c.refresh(tokens.refreshToken, PHONE);
    expect(await statusOf(c, next.tokens.accessToken)).toBe("ACTIVE");
  });

  it("Revoke by refresh token ends the session", async () => {
    const { tokens, sessionId } = await c.issue({ subject: subject(), client: PHONE });
    expect(await c.revoke({ token: tokens.refreshToken })).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    expect(await statusOf(c, tokens.accessToken)).toBe("REVOKED");
    expect(await codeOf(c.refresh(tokens.refreshToken, PHONE))).toBe(Code.Unauthenticated);
    expect(await codeOf(c.getSession(sessionId))).toBe(Code.NotFound);
  });

  it("Revoke by session_id ends that session and no other", async () => {
    const sub = subject();
    const one = await c.issue({ subject: sub, client: PHONE });
    const two = await c.issue({ subject: sub, client: LAPTOP });
    expect(await c.revoke({ sessionId: one.sessionId })).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    expect(await c.revoke({ sessionId: one.sessionId })).toEqual({ sessionsRevoked: 0, tokenRevoked: false });

    expect(await statusOf(c, one.tokens.accessToken)).toBe("REVOKED");
    expect(await statusOf(c, one.tokens.refreshToken, TokenType.REFRESH)).toBe("REVOKED");
    expect(await codeOf(c.refresh(one.tokens.refreshToken, PHONE))).toBe(Code.Unauthenticated);
    expect(await statusOf(c, two.tokens.accessToken)).toBe("ACTIVE");
    expect((await c.listSessions(sub)).map((s) => s.sessionId)).toEqual([two.sessionId]);
  });

  it("Revoke by subject ends every session; an Issue right after is active", async () => {
    const sub = subject();
    const one = await c.issue({ subject: sub, client: PHONE });
    const two = await c.issue({ subject: sub, client: LAPTOP });
    const bystander = await c.issue({ subject: subject(), client: PHONE });

    expect(await c.revoke({ subject: sub }, "logout everywhere")).toEqual({ sessionsRevoked: 2, tokenRevoked: false });
    for (const s of [one, two]) {
      expect(await statusOf(c, s.tokens.accessToken)).toBe("REVOKED");
      expect(await statusOf(c, s.tokens.refreshToken, TokenType.REFRESH)).toBe("REVOKED");
      expect(await codeOf(c.refresh(s.tokens.refreshToken, s === one ? PHONE : LAPTOP))).toBe(Code.Unauthenticated);
    }
    expect(await c.listSessions(sub)).toEqual([]);
    expect(await statusOf(c, bystander.tokens.accessToken)).toBe("ACTIVE");

    const again = await c.issue({ subject: sub, client: PHONE });
    expect(await statusOf(c, again.tokens.accessToken)).toBe("ACTIVE");
    const refreshed = await c.refresh(again.tokens.refreshToken, PHONE);
    expect(await statusOf(c, refreshed.tokens.accessToken)).toBe("ACTIVE");
    expect((await c.listSessions(sub)).map((s) => s.sessionId)).toEqual([again.sessionId]);
  });

  it("Revoke with no target is INVALID_ARGUMENT", async () => {
    expect(await codeOf(c.revoke({}, "nothing"))).toBe(Code.InvalidArgument);
  });

  it("ListSessions and GetSession show the sessions with their client; unknown is NOT_FOUND", async () => {
    const sub = subject();
    const one = await c.issue({ subject: sub, client: PHONE });
    const two = await c.issue({ subject: sub, client: LAPTOP });
    await c.refresh(one.tokens.refreshToken, PHONE); // one is now the most recently used

    const list = await c.listSessions(sub);
    expect(list.map((s) => s.sessionId)).toEqual([one.sessionId, two.sessionId]);
    expect(list[0]).toMatchObject({ subject: sub, client: PHONE });
    expect(list[1]).toMatchObject({ subject: sub, client: LAPTOP });

    const got = await c.getSession(two.sessionId);
    expect(got).toEqual(list[1]);
    expect(got.createdAt).toBeLessThanOrEqual(got.lastUsedAt!);
    expect(got.idleExpiresAt).toBeLessThanOrEqual(got.expiresAt!);
    expect(got.expiresAt).toBe(two.tokens.refreshExpiresAt);

    expect(await c.listSessions(subject())).toEqual([]);
    expect(await codeOf(c.getSession("no-such-session"))).toBe(Code.NotFound);
  });

  it("access_ttl above TESSERA_ACCESS_TTL_MAX and reserved claim names are INVALID_ARGUMENT", async () => {
    const sub = subject();
    expect(await codeOf(c.issue({ subject: sub, accessTtlSeconds: 2 * 3600 }))).toBe(Code.InvalidArgument);
    for (const name of ["sub", "exp", "sid", "scope"]) {
      expect(await codeOf(c.issue({ subject: sub, extraClaims: { [name]: "x" } }))).toBe(Code.InvalidArgument);
    }
    expect(await c.listSessions(sub)).toEqual([]);

    const ok = await c.issue({ subject: sub, accessTtlSeconds: 3600 });
    const at = decodeJwt(ok.tokens.accessToken);
    expect(at.exp! - at.iat!).toBe(3600);
  });

  it("TESSERA_MAX_SESSIONS=2: a third Issue evicts the least recently used session", async () => {
    const sub = subject();
    const first = await c.issue({ subject: sub, client: PHONE });
    const second = await c.issue({ subject: sub, client: LAPTOP });
    const third = await c.issue({ subject: sub, client: { deviceId: "tablet-3" } });

    expect(await statusOf(c, first.tokens.accessToken)).toBe("REVOKED");
    expect(await codeOf(c.refresh(first.tokens.refreshToken, PHONE))).toBe(Code.Unauthenticated);
    expect(await statusOf(c, second.tokens.accessToken)).toBe("ACTIVE");
    expect(await statusOf(c, third.tokens.accessToken)).toBe("ACTIVE");
    expect((await c.listSessions(sub)).map((s) => s.sessionId).sort()).toEqual([second.sessionId, third.sessionId].sort());
  });
});

describe("the log of all the calls above", () => {
  it("has one line per RPC, reports refresh reuse, and never holds a token", () => {
    const rpcLines = server.logs.filter((l) => l.msg === "rpc" || l.msg === "rpc failed");
    expect(rpcLines.length).toBeGreaterThan(CLIENT_KINDS.length * 40);
    expect(rpcLines).toContainEqual(
      expect.objectContaining({ rpc: { service: "tessera.v1.TokenService", method: "Refresh" }, code: "Unauthenticated" }),
    );
    const auditType = (l: Record<string, unknown>) => (l.audit as { type?: string } | undefined)?.type;
    expect(server.logs.filter((l) => auditType(l) === "refresh_reuse_detected")).toHaveLength(CLIENT_KINDS.length);
    expect(server.logs.filter((l) => l.event === "refresh_reuse")).toEqual([]); // logged once, by the audit trail
    const jwt = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/;
    expect(server.logs.map((l) => JSON.stringify(l)).filter((line) => jwt.test(line))).toEqual([]);
  });
});
