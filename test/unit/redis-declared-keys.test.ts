/**
 * Every Lua script of the Redis store declares every key it touches, all in one hash slot (what a Redis Cluster
 * needs, and what it is entitled to assume). Watched with MONITOR on a Redis of the test's own: each EVALSHA names its
 * keys, and the commands the script runs follow it as `[0 lua]` lines; every key those lines touch must be among the
 * ones its EVALSHA declared, and the declared keys must share one slot. The operations cover every script: sessions
 * opened past the limit (eviction), by two stores (two processes) on one subject, rotation, grace replay, reuse,
 * every revocation, listing, the feed, the keys, the audit trail with risk and statistics; and all of it twice: with
 * the index of lives (`P{t}:x`) kept from the first session on, and from the eighth (as in production, so here never).
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/domain/audit.js";
import { createRedisClient, RedisStore } from "../../src/store/redis.js";
import { issueFor, LAPTOP, makeAuthority, PHONE } from "../helpers/authority.js";
import { RedisServer } from "../helpers/redis-server.js";

let server: RedisServer;
let monitor: Redis;
const lines: { args: string[]; lua: boolean }[] = [];

beforeAll(async () => {
  server = await RedisServer.start();
  monitor = new Redis(server.url);
  const m = await monitor.monitor();
  m.on("monitor", (_time: string, args: string[], source: string) => lines.push({ args, lua: source === "lua" }));
});

afterAll(async () => {
  monitor?.disconnect();
  await server?.stop();
});

/** What Redis Cluster hashes for a key's slot: its hash tag (the text between the first `{` and the next `}`, if any), else the key. */
function hashed(key: string): string {
  const open = key.indexOf("{");
  const close = open < 0 ? -1 : key.indexOf("}", open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

/** The key a command run inside a script touches (its first key argument). */
function keyOf(args: string[]): string {
  const name = args[0]!.toUpperCase();
  return name === "XINFO" ? args[2]! : args[1]!;
}

describe.each([8, 1])("the Redis store's scripts, the index of lives kept from session %i on", (livesFrom) => {
  it("declare every key they touch, all in one slot", async () => {
    lines.length = 0;
    const prefix = `declared-${livesFrom}:`;
    const stores = [0, 1].map(() => new RedisStore(createRedisClient(server.url, { commandTimeoutMs: 2000 }), { prefix, livesFrom }));
    await Promise.all(stores.map((s) => s.ping()));
    const a = await makeAuthority({ maxSessions: 2 }, { store: stores[0]! });
    const b = await makeAuthority({ maxSessions: 2 }, { store: stores[1]!, clock: a.clock });
    // Sessions of one subject opened by both "processes": each meets sessions it was not told of, and evicts.
    for (let i = 0; i < 3; i++) {
      await issueFor(a, "dora", PHONE);
      await issueFor(b, "dora", LAPTOP);
    }
    const issued = await issueFor(a, "erin");
    const next = await b.authority.refresh(issued.pair.refreshToken, PHONE);
    await a.authority.refresh(issued.pair.refreshToken, PHONE); // grace replay
    await a.authority.refresh(issued.pair.refreshToken, LAPTOP).catch(() => undefined); // reuse: the session dies
    const other = await issueFor(b, "erin");
    expect((await a.authority.introspect(other.pair.accessToken, "access")).active).toBe(true);
    await b.authority.revokeToken(other.pair.accessToken, "test");
    await a.authority.revokeSession(other.sessionId, "test");
    // Each store met the other's sessions undeclared, ran again with them, and kept the subject within the limit.
    expect(await b.authority.listSessions("dora")).toHaveLength(2);
    expect(await a.authority.listSessions("dora")).toHaveLength(2);
    await a.authority.revokeSubject("dora", "test");
    await a.keys.rotate({ immediate: true });
    const audit: AuditEvent = {
      type: "refresh_reuse_detected", severity: "critical", at: a.clock.now(), caller: "c", subject: "erin",
      sessionId: next.sessionId, ip: "203.0.113.9", userAgent: "ua", deviceId: "d", requestId: "r", detail: {},
    };
    await stores[0]!.appendAudit([audit, { ...audit, type: "token_issued", severity: "info", detail: { platform: "ios" } }], {
      now: a.clock.now(), maxEvents: 1000, maxAgeMs: 86_400_000, riskWindowMs: 900_000,
    });
    await stores[1]!.revocations(null, 100);
    await new Promise((r) => setTimeout(r, 200)); // MONITOR lines arrive after the replies
    await Promise.all(stores.map((s) => s.close()));

    const scripts: { declared: string[]; touched: string[] }[] = [];
    for (const line of lines) {
      const name = line.args[0]!.toLowerCase();
      if (!line.lua && (name === "evalsha" || name === "eval")) {
        const n = Number(line.args[2]);
        scripts.push({ declared: line.args.slice(3, 3 + n), touched: [] });
      } else if (line.lua) {
        scripts.at(-1)!.touched.push(keyOf(line.args));
      }
    }
    expect(scripts.length).toBeGreaterThan(20);
    const undeclared = scripts.flatMap((s) => s.touched.filter((k) => !s.declared.includes(k)));
    expect(undeclared).toEqual([]);
    const multiSlot = scripts.filter((s) => new Set(s.declared.map(hashed)).size > 1).map((s) => s.declared);
    expect(multiSlot).toEqual([]);
    // The walk over another process's sessions was exercised: some script met members it had not declared, and ran
    // again declaring more of them.
    expect(scripts.some((s) => s.declared.filter((k) => k.includes("}:s:")).length > 1)).toBe(true);
    // Which way sessions were opened: counting the live ones in `x` (ZCOUNT) only where it is kept.
    const counted = lines.some((l) => l.lua && l.args[0]!.toUpperCase() === "ZCOUNT");
    expect(counted).toBe(livesFrom === 1);
  });
});
