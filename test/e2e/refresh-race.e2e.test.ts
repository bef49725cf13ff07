/**
 * Concurrent refreshes of one refresh token against a real server, on the memory store and on Redis.
 * With a grace window, every concurrent retry from the same client gets the one successor pair, byte for byte.
 * Without one, exactly one call wins; every other call is reuse.
 */
import { afterEach, describe, expect, inject, it } from "vitest";
import { Code, ConnectError, statusOf, tesseraClient, TokenType, type TesseraClient } from "../helpers/clients.js";
import { countKeys, redisScope, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";

const CALLS = 20;
const PHONE = { deviceId: "phone-race", userAgent: "tessera-e2e/1.0", platform: "android" };

describe.each(["memory", "redis"] as const)("concurrent Refresh on the %s store", (backend) => {
  let server: StartedServer | undefined;
  let scope: RedisScope | undefined;
  const clients: TesseraClient[] = [];

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await server?.close();
    await scope?.cleanup();
    server = scope = undefined;
  });

  async function start(grace: string): Promise<TesseraClient[]> {
    scope = backend === "redis" ? redisScope(inject("redisUrl"), "race") : undefined;
    server = await startServer({ TESSERA_REFRESH_GRACE: grace, ...scope?.env });
    // Two connections of two client kinds, so the calls really arrive side by side.
    clients.push(tesseraClient("connect-grpc", server.url), tesseraClient("grpc-js", server.url));
    return clients;
  }

  function refreshAll(cs: TesseraClient[], refreshToken: string) {
    return Promise.allSettled(Array.from({ length: CALLS }, (_, i) => cs[i % cs.length]!.refresh(refreshToken, PHONE)));
  }

  it("TESSERA_REFRESH_GRACE=10s: every concurrent retry succeeds with the identical pair", async () => {
    const cs = await start("10s");
    const c = cs[0]!;
    const issued = await c.issue({ subject: `race-${backend}-grace`, scopes: ["read"], client: PHONE });
    if (scope) expect(await countKeys(scope.env.TESSERA_REDIS_URL!, scope.prefix)).toBeGreaterThan(0);

    const results = await refreshAll(cs, issued.tokens.refreshToken);
    const rejected = results.filter((r) => r.status === "rejected");
    expect(rejected.map((r) => ConnectError.from(r.reason).code)).toEqual([]);
    const pairs = results.map((r) => (r.status === "fulfilled" ? r.value : undefined));
    const first = pairs[0]!;
    expect(first.sessionId).toBe(issued.sessionId);
    expect(first.tokens.refreshToken).not.toBe(issued.tokens.refreshToken);
    for (const p of pairs) expect(p).toEqual(first);

    expect(await statusOf(c, first.tokens.accessToken)).toBe("ACTIVE");
    expect(await statusOf(c, first.tokens.refreshToken, TokenType.REFRESH)).toBe("ACTIVE");
    expect(await statusOf(c, issued.tokens.refreshToken, TokenType.REFRESH)).toBe("ROTATED");
    // The family goes on: the successor rotates normally.
    const next = await c.refresh(first.tokens.refreshToken, PHONE);
    expect(await statusOf(c, next.tokens.accessToken)).toBe("ACTIVE");
  });

  it("TESSERA_REFRESH_GRACE=0s: exactly one concurrent refresh succeeds, the rest are UNAUTHENTICATED", async () => {
    const cs = await start("0s");
    const c = cs[0]!;
    const issued = await c.issue({ subject: `race-${backend}-nograce`, client: PHONE });

    const results = await refreshAll(cs, issued.tokens.refreshToken);
    const won = results.filter((r) => r.status === "fulfilled");
    const codes = results.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason).code] : []));
    expect(won).toHaveLength(1);
    expect(codes).toEqual(Array(CALLS - 1).fill(Code.Unauthenticated));

    // The losers presented a rotated-out token: that is reuse, so the family the winner got is dead too.
    const winner = won[0]!.value;
    expect(await statusOf(c, winner.tokens.accessToken)).toBe("REVOKED");
    expect(await statusOf(c, winner.tokens.refreshToken, TokenType.REFRESH)).toBe("REVOKED");
  });
});
