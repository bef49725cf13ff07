/**
 * Two real authority processes (`node --import tsx src/main.ts`) on one Redis and one prefix behave as one authority:
 * the same keys, the same sessions, the same revocations, and refresh reuse detected across them.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { Code, codeOf, statusOf, tesseraClient, TokenType, type TesseraClient } from "../helpers/clients.js";
import { redisScope, spawnAuthority, type RedisScope, type SpawnedAuthority } from "../helpers/server.js";

const PHONE = { deviceId: "phone-m", userAgent: "tessera-e2e/1.0" };
const THIEF = { deviceId: "elsewhere", userAgent: "curl/8" };

let scope: RedisScope;
let authorities: SpawnedAuthority[] = [];
let a: TesseraClient;
let b: TesseraClient;

beforeAll(async () => {
  scope = redisScope(inject("redisUrl"), "multi");
  // Both start at once on an empty prefix: exactly one signing key must come out of it.
  authorities = await Promise.all([spawnAuthority(scope.env), spawnAuthority(scope.env)]);
  a = tesseraClient("connect-h1", authorities[0]!.url);
  b = tesseraClient("grpc-js", authorities[1]!.url);
}, 60_000);

afterAll(async () => {
  a?.close();
  b?.close();
  await Promise.all(authorities.map((p) => p.kill("SIGKILL")));
  await scope?.cleanup();
});

describe("two authority processes on one Redis", () => {
  it("serve the same JWKS", async () => {
    const [ja, jb] = await Promise.all(
      authorities.map(async (p) => (await (await fetch(`${p.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }),
    );
    expect(ja!.keys).toHaveLength(1);
    expect(jb).toEqual(ja);
  });

  it("a token issued by A is active on B, and B's revocation is seen on A at once", async () => {
    const issued = await a.issue({ subject: "multi-user", scopes: ["x"], client: PHONE });
    expect(await b.introspect(issued.tokens.accessToken)).toMatchObject({
      active: true,
      subject: "multi-user",
      scopes: ["x"],
      sessionId: issued.sessionId,
    });
    expect(await statusOf(b, issued.tokens.refreshToken, TokenType.REFRESH)).toBe("ACTIVE");
    expect((await b.listSessions("multi-user")).map((s) => s.sessionId)).toContain(issued.sessionId);

    expect(await b.revoke({ token: issued.tokens.accessToken })).toEqual({ sessionsRevoked: 0, tokenRevoked: true });
    expect(await statusOf(a, issued.tokens.accessToken)).toBe("REVOKED");

    expect(await b.revoke({ sessionId: issued.sessionId })).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    expect(await codeOf(a.refresh(issued.tokens.refreshToken, PHONE))).toBe(Code.Unauthenticated);
    expect(await codeOf(a.getSession(issued.sessionId))).toBe(Code.NotFound);
  });

  it("a refresh rotated on A and replayed on B from another client is reuse: the session dies on both", async () => {
    const issued = await b.issue({ subject: "multi-reuse", client: PHONE });
    const next = await a.refresh(issued.tokens.refreshToken, PHONE);
    expect(await statusOf(b, next.tokens.accessToken)).toBe("ACTIVE");

    expect(await codeOf(b.refresh(issued.tokens.refreshToken, THIEF))).toBe(Code.Unauthenticated);

    for (const c of [a, b]) {
      expect(await statusOf(c, next.tokens.accessToken)).toBe("REVOKED");
      expect(await statusOf(c, next.tokens.refreshToken, TokenType.REFRESH)).toBe("REVOKED");
    }
    expect(await codeOf(a.refresh(next.tokens.refreshToken, PHONE))).toBe(Code.Unauthenticated);
  });

  it("stop cleanly on SIGTERM", async () => {
    const codes = await Promise.all(authorities.map((p) => p.kill("SIGTERM")));
    expect(codes).toEqual([0, 0]);
  });
});
