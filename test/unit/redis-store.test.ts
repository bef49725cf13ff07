/**
 * What is specific to the Redis store: its key layout, that every key it writes expires, memory per session,
 * one round trip for tokenState, the feed's bounded trimming and its watcher (appends from another process wake a
 * subscriber; one blocking connection, closed with the last subscriber), and failing fast (StoreUnavailableError)
 * when Redis is down or slow.
 * The behaviour shared with the memory store is the contract suite's business.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { StoreUnavailableError } from "../../src/domain/errors.js";
import { newSessionId, subjectTag } from "../../src/domain/ids.js";
import type { AuditEvent } from "../../src/domain/audit.js";
import { FeedCursorError, type RotateInput, type SessionRecord } from "../../src/domain/store.js";
import { RedisStore, createRedisClient, type FeedBacklogReport } from "../../src/store/redis.js";
import { RedisContext, type ScriptBatch } from "../../src/store/redis/client.js";
import { RedisStatsStore } from "../../src/store/redis/stats.js";
import type { StatsOp } from "../../src/domain/stats.js";
import { RedisServer, freePort } from "../helpers/redis-server.js";
import { until } from "../helpers/wait.js";

const prefix = `test:redis-store:${randomUUID().slice(0, 8)}:`;
const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;
const RETENTION = 15 * 60_000;

let redis: Redis;
let store: RedisStore;

beforeAll(async () => {
  redis = createRedisClient(inject("redisUrl"), { commandTimeoutMs: 2000 });
  store = new RedisStore(redis, { prefix });
  await store.ping();
});

afterAll(async () => {
  const keys = await allKeys();
  if (keys.length > 0) await redis.del(...keys);
  await store.close();
});

async function allKeys(under = prefix): Promise<string[]> {
  const out: string[] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${under}*`, "COUNT", 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== "0");
  return out;
}

function tagOf(subject: string): string {
  return `{${subjectTag(subject)}}`;
}

function session(subject: string, now: number, over: Partial<SessionRecord> = {}): SessionRecord {
  const id = newSessionId(subject);
  return {
    id,
    subject,
    client: {
      deviceId: "3f0c9a51-6c4e-4e57-9d43-0a3c1b2e7f88",
      // A real one: long enough that a hash would leave its compact encoding.
      userAgent:
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) " +
        "Version/17.4 Mobile/15E148 Safari/604.1",
      ip: "2001:db8::8a2e:370:7334",
      platform: "ios",
    },
    createdAt: now,
    lastUsedAt: now,
    idleExpiresAt: now + HOUR,
    expiresAt: now + 24 * HOUR,
    currentJti: `${id}-0`,
    ...over,
  };
}

/** The rotation of session `s` from `presented` to `next` at `now`, with a pair about the size of real tokens. */
function rotation(s: SessionRecord, presented: string, next: string, now: number): RotateInput {
  const [accessToken, refreshToken] = ["a".repeat(600), "r".repeat(600)];
  return {
    subject: s.subject,
    sessionId: s.id,
    presentedJti: presented,
    nextJti: next,
    nextPair: { accessToken, refreshToken, accessExpiresAt: now, refreshExpiresAt: now },
    clientFingerprint: "fp",
    now,
    graceMs: 10_000,
    idleTtlMs: HOUR,
    retentionMs: RETENTION,
  };
}

/** Scripts a server ran (EVALSHA and EVAL), from its command statistics: on a server of the test's own. */
async function scriptsRun(client: Redis): Promise<number> {
  const stats = await client.info("commandstats");
  const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
  return calls("evalsha") + calls("eval");
}

/** Counts the calls of one of the store's scripts on `client` (ioredis's command `tessera_<name>`) until restored. */
function countCalls(client: Redis, script: string): { calls(): number; restore(): void } {
  const commands = client as unknown as Record<string, (...args: unknown[]) => unknown>;
  const name = `tessera_${script}`;
  const call = commands[name]!;
  let calls = 0;
  commands[name] = function (this: unknown, ...args: unknown[]) {
    calls++;
    return call.apply(this, args);
  };
  return { calls: () => calls, restore: () => void (commands[name] = call) };
}

/**
 * Makes the (missing) feed stream under prefix `p` as a server whose clock reads `ms` would: an entry at `ms`-0,
 * deleted again, so that the store's next XADD * hands out `ms`-1, `ms`-2, ... whatever the real clock says (a stream
 * never hands out an id below its newest). What a server an hour ahead, or one that regrows the feed within that
 * millisecond, hands out.
 */
async function clockAt(client: Redis, p: string, ms: number): Promise<void> {
  await client.xadd(`${p}{feed}`, `${ms}-0`, "seed", "1");
  await client.xdel(`${p}{feed}`, `${ms}-0`);
}

/** A client on `url`, once connected (the store's clients refuse commands until then: no offline queue). */
async function connectedClient(url: string, commandTimeoutMs = 2000): Promise<Redis> {
  const client = createRedisClient(url, { commandTimeoutMs });
  if (client.status !== "ready") await once(client, "ready");
  return client;
}

/** A Redis server of the test's own, a client on it and a store on that (connected); `close` ends all three. */
async function onOwnServer(commandTimeoutMs = 2000): Promise<{ server: RedisServer; client: Redis; store: RedisStore; close(): Promise<void> }> {
  const server = await RedisServer.start();
  const client = createRedisClient(server.url, { commandTimeoutMs });
  const store = new RedisStore(client, { prefix });
  await store.ping();
  return { server, client, store, close: async () => (await store.close(), await server.stop()) };
}

describe("key layout", () => {
  it("keeps every key of a subject under one hash tag, and nothing else per session", async () => {
    const subject = `layout-${randomUUID()}`;
    const s = session(subject, T0);
    await store.createSession(s, { maxSessions: 5, now: T0, retentionMs: RETENTION });
    await store.rotateRefresh(rotation(s, s.currentJti, "next", T0));
    await store.revokeToken({ subject, jti: "jti-1", expiresAt: T0 + HOUR, now: T0, reason: "test" });

    const tag = tagOf(subject);
    const keys = (await allKeys()).filter((k) => k.includes(tag) || k.includes(s.id));
    expect(keys.sort()).toEqual(
      [
        `${prefix}${tag}:g:${s.id}`,
        `${prefix}${tag}:idx`,
        `${prefix}${tag}:j:jti-1`,
        `${prefix}${tag}:s:${s.id}`,
      ].sort(),
    );
    expect(await redis.zscore(`${prefix}${tag}:idx`, s.id)).toBe(String(T0));
  });

  it("keeps a subject's index of lives (`x`) from its eighth session on, with the index's members", async () => {
    const subject = `lives-${randomUUID()}`;
    const tag = tagOf(subject);
    const opened: SessionRecord[] = [];
    for (let i = 0; i < 8; i++) {
      const s = session(subject, T0 + i);
      await store.createSession(s, { maxSessions: 20, now: T0 + i, retentionMs: RETENTION });
      opened.push(s);
      expect(await redis.exists(`${prefix}${tag}:x`)).toBe(i < 7 ? 0 : 1);
    }
    expect(await redis.zrange(`${prefix}${tag}:x`, 0, -1)).toEqual(opened.map((s) => s.id));
    expect(await redis.zscore(`${prefix}${tag}:x`, opened[3]!.id)).toBe(String(opened[3]!.idleExpiresAt));
    // A rotation moves the session's end in both; a revocation takes it out of both.
    await store.rotateRefresh(rotation(opened[3]!, opened[3]!.currentJti, "next", T0 + 100));
    expect(await redis.zscore(`${prefix}${tag}:x`, opened[3]!.id)).toBe(String(T0 + 100 + HOUR));
    await store.revokeSession({ sessionId: opened[5]!.id, now: T0 + 100, retentionMs: RETENTION, reason: "test" });
    expect(await redis.zscore(`${prefix}${tag}:x`, opened[5]!.id)).toBeNull();
    expect(await redis.zcard(`${prefix}${tag}:x`)).toBe(await redis.zcard(`${prefix}${tag}:idx`));
    const [x, idx] = await Promise.all([redis.pttl(`${prefix}${tag}:x`), redis.pttl(`${prefix}${tag}:idx`)]);
    expect(Math.abs(x - idx)).toBeLessThan(100); // the same expiry, read a moment apart
  });

  it("keeps a session under 1 KiB of Redis memory once the grace window is over", async () => {
    const subject = `memory-${randomUUID()}`;
    const s = session(subject, T0);
    await store.createSession(s, { maxSessions: 5, now: T0, retentionMs: RETENTION });
    await store.rotateRefresh(rotation(s, s.currentJti, "next", T0));
    const tag = tagOf(subject);
    await redis.del(`${prefix}${tag}:g:${s.id}`); // what the grace window's TTL does by itself
    let bytes = 0;
    for (const key of [`${prefix}${tag}:s:${s.id}`, `${prefix}${tag}:idx`, `${prefix}${tag}:x`]) {
      bytes += Number(await redis.memory("USAGE", key, "SAMPLES", 0));
    }
    expect(bytes).toBeLessThan(1024);
  });
});

describe("expiry", () => {
  /** Every key but the signing keys, the feed (trimmed by its entries' until) with its meta, and the audit stream. */
  async function expectAllExpire(step: string): Promise<void> {
    const kept = [`${prefix}keys`, `${prefix}{feed}`, `${prefix}{feed}:m`, `${prefix}audit`];
    for (const key of await allKeys()) {
      if (kept.includes(key)) continue;
      expect(await redis.pttl(key), `${step}: ${key}`).toBeGreaterThan(0);
    }
  }

  it("leaves a TTL on every key after every operation", async () => {
    const subject = `ttl-${randomUUID()}`;
    const opts = { maxSessions: 2, now: T0, retentionMs: RETENTION };
    const [a, b, c] = [session(subject, T0), session(subject, T0 + 1), session(subject, T0 + 2)];
    await store.createSession(a, opts);
    await expectAllExpire("create a");
    await store.createSession(b, { ...opts, now: T0 + 1 });
    await store.createSession(c, { ...opts, now: T0 + 2 }); // evicts a
    await expectAllExpire("evict");
    await store.rotateRefresh(rotation(b, b.currentJti, "b-1", T0 + 3));
    await expectAllExpire("rotate");
    await store.rotateRefresh(rotation(b, "never-issued", "b-2", T0 + 4)); // reuse: b is tombstoned
    await expectAllExpire("reuse");
    await store.revokeToken({ subject, jti: "t-1", expiresAt: T0 + HOUR, now: T0 + 5, reason: "test" });
    await store.revokeSession({ sessionId: c.id, now: T0 + 6, retentionMs: RETENTION, reason: "test" });
    await expectAllExpire("revoke");
    await store.createSession(session(subject, T0 + 7), { ...opts, now: T0 + 7 });
    await store.revokeSubject({ subject, now: T0 + 8, retentionMs: RETENTION, reason: "test" });
    await expectAllExpire("revoke subject");
  });

  it("sets each TTL from the caller's clock, not the server's", async () => {
    const subject = `ttl-values-${randomUUID()}`;
    const tag = tagOf(subject);
    const now = T0 - 10 * 24 * HOUR; // far from the real clock: only the deltas may matter
    const s = session(subject, now, { idleExpiresAt: now + HOUR, expiresAt: now + 2 * HOUR });
    await store.createSession(s, { maxSessions: 5, now, retentionMs: RETENTION });
    await store.revokeToken({ subject, jti: "t-2", expiresAt: now + 600_000, now, reason: "test" });
    const near = (ms: number) => expect.toSatisfy((v: number) => v > ms - 5_000 && v <= ms);
    expect(await redis.pttl(`${prefix}${tag}:s:${s.id}`)).toEqual(near(HOUR));
    expect(await redis.pttl(`${prefix}${tag}:idx`)).toEqual(near(HOUR));
    expect(await redis.pttl(`${prefix}${tag}:j:t-2`)).toEqual(near(600_000));

    await store.rotateRefresh(rotation(s, s.currentJti, "s-1", now + 1000));
    expect(await redis.pttl(`${prefix}${tag}:s:${s.id}`)).toEqual(near(HOUR + 1000));
    expect(await redis.pttl(`${prefix}${tag}:g:${s.id}`)).toEqual(near(10_000));
    await store.revokeSession({ sessionId: s.id, now: now + 2000, retentionMs: RETENTION, reason: "test" });
    expect(await redis.pttl(`${prefix}${tag}:s:${s.id}`)).toEqual(near(RETENTION));
    expect(await redis.exists(`${prefix}${tag}:g:${s.id}`)).toBe(0);
  });
});

describe("scripts", () => {
  it("answers tokenState with one command, also for a revoked token of a revoked session", async () => {
    const subject = `hot-${randomUUID()}`;
    const s = session(subject, T0);
    await store.createSession(s, { maxSessions: 5, now: T0, retentionMs: RETENTION });
    const send = vi.spyOn(redis, "sendCommand");
    try {
      const state = await store.tokenState({ subject, sessionId: s.id, jti: s.currentJti });
      expect(send).toHaveBeenCalledTimes(1);
      const { idleExpiresAt, expiresAt, currentJti } = s;
      expect(state).toEqual({
        jtiRevoked: false,
        session: { status: "active", idleExpiresAt, expiresAt, currentJti },
      });
      await store.revokeToken({ subject, jti: "access-1", expiresAt: T0 + HOUR, now: T0, reason: "test" });
      await store.revokeSubject({ subject, now: T0, retentionMs: RETENTION, reason: "test" });
      send.mockClear();
      const after = await store.tokenState({ subject, sessionId: s.id, jti: "access-1" });
      expect(send).toHaveBeenCalledTimes(1);
      expect(after).toEqual({ jtiRevoked: true, session: { ...state.session, status: "revoked" } });
    } finally {
      send.mockRestore();
    }
  });

  describe("opening a session past the limit", () => {
    let own: Awaited<ReturnType<typeof onOwnServer>>;
    let ownRedis: Redis;
    let ownStore: RedisStore;
    const opts = (now: number) => ({ maxSessions: 20, now, retentionMs: RETENTION });
    /** How many sessions (`s:` keys) the scripts read: GETs run inside them, on a server of this test's own. */
    const reads = async () => Number(/cmdstat_get:calls=(\d+)/.exec(await ownRedis.info("commandstats"))?.[1] ?? 0);
    const lives = (subject: string) => `${prefix}${tagOf(subject)}:x`;
    const index = (subject: string) => `${prefix}${tagOf(subject)}:idx`;

    beforeAll(async () => {
      own = await onOwnServer();
      ({ client: ownRedis, store: ownStore } = own);
    });

    afterAll(() => own?.close());

    /** Opens `n` sessions of `subject`, one a millisecond from `from` on; returns them, oldest first. */
    async function open(subject: string, n: number, from: number): Promise<SessionRecord[]> {
      const out: SessionRecord[] = [];
      for (let i = 0; i < n; i++) {
        const s = session(subject, from + i);
        await ownStore.createSession(s, opts(from + i));
        out.push(s);
      }
      return out;
    }

    it("reads only the least recently used session, not all twenty, and evicts it", async () => {
      const subject = `many-${randomUUID()}`;
      const first = await open(subject, 20, T0);
      await ownRedis.config("RESETSTAT");
      const next = await open(subject, 10, T0 + 100);
      // Each of the ten evicted the oldest, reading it alone (the old script read all twenty, every time).
      expect(await reads()).toBe(10);
      const listed = (await ownStore.listSessions(subject, T0 + 200)).map((s) => s.id).sort();
      expect(listed).toEqual([...first.slice(10), ...next].map((s) => s.id).sort());
      expect(await ownRedis.zcard(lives(subject))).toBe(20);
    });

    it("opens the concurrent sessions of one subject a few scripts at a time, each as if it came alone", async () => {
      const subject = `burst-${randomUUID()}`;
      const first = await open(subject, 20, T0);
      const before = await scriptsRun(ownRedis);
      const openings = countCalls(ownRedis, "createSessions");
      const next = Array.from({ length: 50 }, (_, i) => session(subject, T0 + 100 + i));
      const results = await Promise.all(next.map((s, i) => ownStore.createSession(s, opts(T0 + 100 + i)))).finally(openings.restore);
      // In the order they came, each evicted the least recently used live session of its moment: the twenty older
      // ones first, then the earliest of the burst.
      const expected = [...first, ...next].slice(0, 50).map((s) => [s.id]);
      expect(results.map((r) => r.evicted)).toEqual(expected);
      expect((await ownStore.listSessions(subject, T0 + 200)).map((s) => s.id).sort()).toEqual(next.slice(30).map((s) => s.id).sort());
      // A script a session would be fifty (each declaring every other one in flight); the feed's appends count too.
      expect((await scriptsRun(ownRedis)) - before).toBeLessThanOrEqual(8);
      expect(openings.calls()).toBe(1); // the turn's fifty, in one CREATE_SESSIONS
    });

    /** The feed's entries about `subject`'s sessions, oldest first: kind, target, at, until, reason. */
    async function evictionsInFeed(subject: string): Promise<unknown[]> {
      const { entries } = await ownStore.revocations(null, 100_000);
      return entries.filter((e) => e.subject === subject).map((e) => [e.kind, e.target, e.at, e.until, e.reason]);
    }
    const evictionEntry = (s: SessionRecord, at: number) => ["session", s.id, at, at + RETENTION, "evicted: session limit"];

    it("sends two scripts of a subject at once, the second declaring the first's sessions (Redis runs it first)", async () => {
      const subject = `two-scripts-${randomUUID()}`;
      const first = await open(subject, 20, T0);
      const openings = countCalls(ownRedis, "createSessions");
      const next = Array.from({ length: 128 }, (_, i) => session(subject, T0 + 100 + i));
      const results = await Promise.all(next.map((s, i) => ownStore.createSession(s, opts(T0 + 100 + i)))).finally(openings.restore);
      expect(results.map((r) => r.evicted)).toEqual([...first, ...next].slice(0, 128).map((s) => [s.id]));
      // 64 a script: the second evicts the first's sessions, which it was told of, so it never runs again for them.
      expect(openings.calls()).toBe(2);
    });

    it("opens sessions of one subject from two stores at once (two processes): the limit holds, none lost", async () => {
      const subject = `two-${randomUUID()}`;
      const other = new RedisStore(createRedisClient(own.server.url, { commandTimeoutMs: 2000 }), { prefix });
      try {
        await other.ping();
        const mine = Array.from({ length: 40 }, (_, i) => session(subject, T0 + i));
        const theirs = Array.from({ length: 40 }, (_, i) => session(subject, T0 + i));
        const results = await Promise.all([
          ...mine.map((s, i) => ownStore.createSession(s, opts(T0 + i))),
          ...theirs.map((s, i) => other.createSession(s, opts(T0 + i))),
        ]);
        const evicted = results.flatMap((r) => r.evicted);
        expect(new Set(evicted).size).toBe(evicted.length); // each evicted once
        expect(evicted).toHaveLength(60);
        const live = (await ownStore.listSessions(subject, T0 + 100)).map((s) => s.id);
        expect(live).toHaveLength(20);
        expect(new Set([...live, ...evicted])).toEqual(new Set([...mine, ...theirs].map((s) => s.id)));
      } finally {
        await other.close();
      }
    });

    it("keeps what a batch opened before it met sessions another process opened, and opens the rest once told of them", async () => {
      const subject = `partial-${randomUUID()}`;
      const other = new RedisStore(createRedisClient(own.server.url, { commandTimeoutMs: 2000 }), { prefix });
      try {
        await other.ping();
        const older = await open(subject, 15, T0); // this store has seen these fifteen
        const theirs: SessionRecord[] = [];
        for (let i = 0; i < 5; i++) {
          const s = session(subject, T0 + 50 + i);
          await other.createSession(s, opts(T0 + 50 + i)); // five this store has not seen
          theirs.push(s);
        }
        const burst = Array.from({ length: 20 }, (_, i) => session(subject, T0 + 100 + i));
        const results = await Promise.all(burst.map((s, i) => ownStore.createSession(s, opts(T0 + 100 + i))));
        // One batch: its first fifteen evict the sessions this store knew of; the sixteenth would read one of the other
        // store's, which the script was not told of, so it stops there; the last five run again with those declared.
        expect(results.map((r) => r.evicted)).toEqual([...older, ...theirs].map((s) => [s.id]));
        expect((await ownStore.listSessions(subject, T0 + 200)).map((s) => s.id).sort()).toEqual(burst.map((s) => s.id).sort());
        // Each eviction in the feed once, the stopped script's fifteen and the rerun's five alike.
        expect(await evictionsInFeed(subject)).toEqual([...older, ...theirs].map((s, i) => evictionEntry(s, T0 + 100 + i)));
      } finally {
        await other.close();
      }
    });

    it("refuses, rather than sends later, the openings that waited past the store timeout while Redis stalled", async () => {
      const { server, store: quick, close } = await onOwnServer(300);
      const admin = await connectedClient(server.url, 5000);
      try {
        await quick.createSession(session(`warm-${randomUUID()}`, T0), opts(T0)); // the script is loaded
        const subject = `stalled-${randomUUID()}`;
        await admin.client("PAUSE", 1500, "ALL");
        const many = Array.from({ length: 1000 }, (_, i) => session(subject, T0 + i));
        const outcomes = await Promise.allSettled(many.map((s, i) => quick.createSession(s, { ...opts(T0 + i), maxSessions: 5000 })));
        // Every call is answered UNAVAILABLE (the first scripts timed out; the rest waited as long, and are refused).
        expect(outcomes.every((o) => o.status === "rejected" && o.reason instanceof StoreUnavailableError)).toBe(true);
        // Once a ping on the same connection is answered, Redis has run everything sent on it before: the first two
        // scripts, 64 openings each, and nothing after them.
        await vi.waitFor(() => quick.ping(), { timeout: 5000, interval: 100 });
        expect(await admin.zcard(`${prefix}${tagOf(subject)}:idx`)).toBe(128);
      } finally {
        admin.disconnect();
        await close();
      }
    });

    it("breaks a tie on last use by id, as the memory store does, reading only the session it evicts", async () => {
      const subject = `tied-${randomUUID()}`;
      // Twenty sessions of one instant (a burst of logins): the one with the smallest id goes first, then the next.
      const tied: SessionRecord[] = [];
      for (let i = 0; i < 20; i++) {
        const s = session(subject, T0);
        await ownStore.createSession(s, opts(T0));
        tied.push(s);
      }
      const byId = tied.map((s) => s.id).sort();
      let before = await reads();
      const another = session(subject, T0); // of the same instant too
      const { evicted } = await ownStore.createSession(another, opts(T0));
      expect(evicted).toEqual([byId[0]]);
      expect((await reads()) - before).toBe(1); // the old script read all twenty to compare their creation
      before = await reads();
      const again = await ownStore.createSession(session(subject, T0 + 1), opts(T0 + 1));
      expect(again.evicted).toEqual([[...byId.slice(1), another.id].sort()[0]]);
      expect((await reads()) - before).toBe(1);
    });

    it("makes its index of lives again from the sessions when it is missing (a store written before it)", async () => {
      const subject = `older-${randomUUID()}`;
      const first = await open(subject, 20, T0);
      await ownRedis.del(lives(subject));
      const { evicted } = await ownStore.createSession(session(subject, T0 + 100), opts(T0 + 100));
      expect(evicted).toEqual([first[0]!.id]);
      expect(await ownRedis.zcard(lives(subject))).toBe(20);
      expect(await ownRedis.zscore(lives(subject), first[1]!.id)).toBe(String(first[1]!.idleExpiresAt));
    });

    it("drops a member whose session is gone instead of evicting a live one for it", async () => {
      const subject = `ghost-${randomUUID()}`;
      const first = await open(subject, 20, T0);
      await ownRedis.del(`${prefix}${tagOf(subject)}:s:${first[0]!.id}`); // what maxmemory eviction could do
      const { evicted } = await ownStore.createSession(session(subject, T0 + 100), opts(T0 + 100));
      expect(evicted).toEqual([]);
      expect(await ownRedis.zscore(index(subject), first[0]!.id)).toBeNull();
      expect(await ownRedis.zscore(lives(subject), first[0]!.id)).toBeNull();
      expect(await ownStore.listSessions(subject, T0 + 100)).toHaveLength(20);
    });

    it("counts only live sessions, and forgets members ended five minutes before", async () => {
      const subject = `ended-${randomUUID()}`;
      const idle = await open(subject, 19, T0); // idle-expire at T0 + HOUR (+ i ms)
      const now = T0 + HOUR + 10 * 60_000;
      const later = session(subject, now - 20 * 60_000, { idleExpiresAt: now + HOUR, lastUsedAt: now - 20 * 60_000 });
      await ownStore.createSession(later, opts(now - 20 * 60_000));
      const { evicted } = await ownStore.createSession(session(subject, now), opts(now));
      // Nothing live to evict for: the 19 ended ten minutes ago, and they are out of both indexes now.
      expect(evicted).toEqual([]);
      expect(await ownRedis.zrange(index(subject), 0, -1)).toHaveLength(2);
      expect(await ownRedis.zcard(lives(subject))).toBe(2);
      expect(await ownRedis.zscore(index(subject), idle[0]!.id)).toBeNull();
      expect((await ownStore.listSessions(subject, now)).map((s) => s.id)).toContain(later.id);
    });

    it("sets right, rather than forgets, an entry of x that a process of an older version left behind by rotating", async () => {
      const subject = `stale-${randomUUID()}`;
      const first = await open(subject, 20, T0);
      // What an older version's ROTATE does: the session lives on (its idle expiry moved), its `x` entry does not move.
      const key = `${prefix}${tagOf(subject)}:s:${first[0]!.id}`;
      const stored = JSON.parse((await ownRedis.get(key))!) as unknown[];
      const now = T0 + HOUR + 10 * 60_000;
      stored[2] = now - 60_000; // last used
      stored[3] = now + HOUR; // idle expiry
      await ownRedis.set(key, JSON.stringify(stored), "PX", 2 * HOUR);
      await ownRedis.zadd(index(subject), now - 60_000, first[0]!.id);
      await ownStore.createSession(session(subject, now), opts(now));
      expect(await ownRedis.zscore(index(subject), first[0]!.id)).toBe(String(now - 60_000));
      expect(await ownRedis.zscore(lives(subject), first[0]!.id)).toBe(String(now + HOUR));
      expect((await ownStore.listSessions(subject, now)).map((s) => s.id)).toContain(first[0]!.id);
    });
  });

  it("reloads its scripts after the server forgot them", async () => {
    const subject = `flush-${randomUUID()}`;
    const s = session(subject, T0);
    await redis.script("FLUSH");
    await store.createSession(s, { maxSessions: 5, now: T0, retentionMs: RETENTION });
    await redis.script("FLUSH");
    expect((await store.listSessions(subject, T0)).map((x) => x.id)).toEqual([s.id]);
  });
});

describe("revocation feed", () => {
  /** A store of its own (own prefix, own client): its feed starts empty. */
  async function ownStore(p = `test:redis-feed:${randomUUID()}:`) {
    const client = createRedisClient(inject("redisUrl"), { commandTimeoutMs: 2000 });
    const own = new RedisStore(client, { prefix: p });
    await own.ping();
    return { own, client, prefix: p };
  }
  async function dropUnder(p: string): Promise<void> {
    const keys = await allKeys(p);
    if (keys.length > 0) await redis.del(...keys);
  }
  /** Runs `test` on a store of its own (ownStore), then drops its keys and closes it. */
  async function withOwnFeed(test: (own: Awaited<ReturnType<typeof ownStore>>) => Promise<void>): Promise<void> {
    const store = await ownStore();
    try {
      await test(store);
    } finally {
      await dropUnder(store.prefix);
      await store.own.close();
    }
  }
  const revoke = (s: RedisStore, jti: string, now: number, expiresAt: number) =>
    s.revokeToken({ subject: "alice", jti, expiresAt, now, reason: "r" });

  it("keeps the stream and its meta under one hash tag", async () => {
    await withOwnFeed(async ({ own, client, prefix: p }) => {
      await revoke(own, "j", T0, T0 + HOUR);
      const keys = [];
      for (const k of [`${p}{feed}`, `${p}{feed}:m`]) if ((await client.exists(k)) === 1) keys.push(k);
      expect(keys).toEqual([`${p}{feed}`, `${p}{feed}:m`]);
      expect(await client.type(`${p}{feed}`)).toBe("stream");
    });
  });

  it("drops at most 100 dead entries per append, and a cursor in the dropped part expires", async () => {
    await withOwnFeed(async ({ own, client, prefix: p }) => {
      for (let i = 0; i < 150; i++) await revoke(own, `dead-${i}`, T0, T0 + 10);
      const ids = (await own.revocations(null, 1000)).entries.map((e) => e.id);
      await revoke(own, "live-1", T0 + 20, T0 + HOUR);
      expect(await client.xlen(`${p}{feed}`)).toBe(51);
      await expect(own.revocations(ids[98]!, 10)).rejects.toEqual(new FeedCursorError("expired"));
      expect((await own.revocations(ids[99]!, 1)).entries.map((e) => e.target)).toEqual(["dead-100"]);
      await revoke(own, "live-2", T0 + 21, T0 + HOUR);
      expect((await own.revocations(null, 1000)).entries.map((e) => e.target)).toEqual(["live-1", "live-2"]);
    });
  });

  /** The stream id a cursor `<epoch>.<ms>-<seq>` names (a cursor without an epoch: itself). */
  const streamIdOf = (cursor: string) => cursor.slice(cursor.indexOf(".") + 1);

  it("hands out cursors <epoch>.<ms>-<seq>, the epoch in the meta hash and shared by every process on the prefix", async () => {
    const { own, client, prefix: p } = await ownStore();
    const other = await ownStore(p);
    try {
      // Never appended: no incarnation yet, and a store that looks does not make one.
      expect((await own.revocations(null, 10)).next).toBe("0.0-0");
      expect(await client.exists(`${p}{feed}:m`)).toBe(0);
      await revoke(own, "a", T0, T0 + HOUR);
      await revoke(other.own, "b", T0 + 1, T0 + HOUR);
      const epoch = await client.hget(`${p}{feed}:m`, "epoch");
      expect(epoch).toMatch(/^[0-9a-f]{12}$/);
      const raw = (await client.xrange(`${p}{feed}`, "-", "+")).map(([id]) => id);
      const mine = await own.revocations(null, 10);
      expect(mine.entries.map((e) => e.id)).toEqual(raw.map((id) => `${epoch}.${id}`));
      expect(mine.next).toBe(`${epoch}.${raw[1]}`);
      expect(await other.own.revocations(null, 10)).toEqual(mine);
      // Either process continues from the other's cursor.
      expect((await other.own.revocations(mine.entries[0]!.id, 10)).entries.map((e) => e.target)).toEqual(["b"]);
    } finally {
      await dropUnder(p);
      await other.own.close();
      await own.close();
    }
  });

  it("expires a bare stream id (an older version's cursor) and a memory cursor; refuses other forms as invalid", async () => {
    await withOwnFeed(async ({ own, prefix: p }) => {
      await revoke(own, "a", T0, T0 + HOUR);
      await revoke(own, "b", T0 + 1, T0 + HOUR);
      const [a] = (await own.revocations(null, 10)).entries;
      const id = streamIdOf(a!.id);
      // Each, read as a stream id, names a position of this feed that entries follow: it is answered expired (its
      // consumer takes a new snapshot), never read on from.
      for (const cursor of [id, id.split("-")[0]!, "0-0", "0", "123-4"]) {
        await expect(own.revocations(cursor, 10), cursor).rejects.toEqual(new FeedCursorError("expired"));
      }
      const epoch = a!.id.split(".")[0]!;
      const [ms, seq] = id.split("-");
      // Of the shape of a cursor, but not one this feed hands out (one spelling per number): expired, not a position.
      await expect(own.revocations(`${epoch}.0${ms}-${seq}`, 10)).rejects.toEqual(new FeedCursorError("expired"));
      for (const cursor of [
        `ABCDEF012345.${id}`, // the epoch is lowercase hex
        `abcdef01234.${id}`, // of 12 digits
        `${epoch}.${ms}`, // the seq is not optional
        `${epoch}.${id}.${id}`,
        `${epoch}.${"9".repeat(20)}-0`,
        `.${id}`,
        `${epoch}.`,
        `${epoch}-${id}`,
      ]) {
        const why = await own.revocations(cursor, 10).then(
          () => "none",
          (e: unknown) => (e instanceof FeedCursorError ? e.why : e),
        );
        expect([cursor, why]).toEqual([cursor, "invalid"]);
      }
    });
  });

  it("expires a cursor from before the feed was emptied, even once the feed grew again over the cursor's ids", async () => {
    await withOwnFeed(async ({ own, client, prefix: p }) => {
      // Stream ids come from the server's clock. The feed is made on a server an hour ahead (its ids: F-1, F-2)...
      const F = Date.now() + HOUR;
      await clockAt(client, p, F);
      await revoke(own, "a", T0, T0 + HOUR);
      await revoke(own, "b", T0 + 1, T0 + HOUR);
      const [a] = (await own.revocations(null, 1)).entries; // a reader that has read "a", and not "b"
      // ...then lost (a failover to an empty replica), and made again on a server whose clock reads F too (behind the
      // old one's; or the same millisecond): its ids are those the old feed handed out, and more.
      await client.del(`${p}{feed}`, `${p}{feed}:m`);
      await clockAt(client, p, F);
      for (const [i, jti] of ["x", "y", "z"].entries()) await revoke(own, jti, T0 + 2 + i, T0 + HOUR);
      const raw = (await client.xrange(`${p}{feed}`, "-", "+")).map(([id]) => id);
      expect(raw).toEqual([`${F}-1`, `${F}-2`, `${F}-3`]);
      expect(streamIdOf(a!.id)).toBe(`${F}-1`); // "x" has the id of "a": read on from it, "x" would be skipped
      await expect(own.revocations(a!.id, 10)).rejects.toEqual(new FeedCursorError("expired"));
      // The new snapshot has all of the new feed.
      expect((await own.revocations(null, 10)).entries.map((e) => e.target)).toEqual(["x", "y", "z"]);
    });
  });

  it("a meta hash lost while its stream lived on: a new snapshot's cursor reads on, until the next append's incarnation", async () => {
    await withOwnFeed(async ({ own, client, prefix: p }) => {
      await revoke(own, "a", T0, T0 + HOUR);
      await revoke(own, "b", T0 + 1, T0 + HOUR);
      const before = await own.revocations(null, 10);
      await client.del(`${p}{feed}:m`); // an eviction, a DEL by hand
      await expect(own.revocations(before.next, 10)).rejects.toEqual(new FeedCursorError("expired"));
      const snapshot = await own.revocations(null, 10);
      expect(snapshot.entries.map((e) => e.target)).toEqual(["a", "b"]);
      // Read on from it: nothing new, and not expired (it used to be, on every read, until the next append).
      const again = await own.revocations(snapshot.next, 10);
      expect(again).toEqual({ entries: [], next: snapshot.next });
      // The next append gives the feed an incarnation: the cursor of none expires once, and a snapshot has it all.
      await revoke(own, "c", T0 + 2, T0 + HOUR);
      await expect(own.revocations(again.next, 10)).rejects.toEqual(new FeedCursorError("expired"));
      expect((await own.revocations(null, 10)).entries.map((e) => e.target)).toEqual(["a", "b", "c"]);
    });
  });

  it("a stream lost while its meta hash lived on starts a new incarnation: the old cursors expire", async () => {
    await withOwnFeed(async ({ own, client, prefix: p }) => {
      await revoke(own, "a", T0, T0 + 10);
      await revoke(own, "b", T0 + 1, T0 + HOUR);
      await revoke(own, "c", T0 + 20, T0 + HOUR); // drops "a": the hash holds trimmed, first, last and the epoch
      const before = await own.revocations(null, 1);
      expect(before.entries.map((e) => e.target)).toEqual(["b"]);
      // The stream alone goes (an eviction, a DEL by hand). The stream made again may hand out its ids again (the same
      // millisecond, a clock behind: the test above), which nothing in the hash could tell; so it is a new incarnation,
      // whatever ids it hands out. (Made here by the store itself: a stream made beforehand would not be new to it.)
      await client.del(`${p}{feed}`);
      for (const [i, jti] of ["x", "y"].entries()) await revoke(own, jti, T0 + 30 + i, T0 + HOUR);
      await expect(own.revocations(before.next, 10)).rejects.toEqual(new FeedCursorError("expired"));
      const after = await own.revocations(null, 10);
      expect(after.entries.map((e) => e.target)).toEqual(["x", "y"]);
      expect(after.next.split(".")[0]).not.toBe(before.next.split(".")[0]);
      // What the hash said of the lost stream went with it: the new incarnation has dropped nothing, and begins at "x".
      expect(await client.hget(`${p}{feed}:m`, "trimmed")).toBeNull();
      expect(await client.hget(`${p}{feed}:m`, "first")).toBe(streamIdOf(after.entries[0]!.id));
    });
  });

  it("expires a cursor from before the feed was emptied, once it grew again with later ids", async () => {
    await withOwnFeed(async ({ own, client, prefix: p }) => {
      await revoke(own, "a", T0, T0 + HOUR);
      await revoke(own, "b", T0 + 1, T0 + HOUR);
      const { next } = await own.revocations(null, 10);
      await client.del(`${p}{feed}`, `${p}{feed}:m`); // emptied (a flush, a failover to an empty replica)
      await expect(own.revocations(next, 10)).rejects.toEqual(new FeedCursorError("expired"));
      // The empty feed hands out the cursor of no incarnation, which reads on from the start once it has grown.
      const empty = await own.revocations(null, 10);
      expect(empty).toEqual({ entries: [], next: "0.0-0" });
      await until(() => Date.now() > Number(streamIdOf(next).split("-")[0]));
      await revoke(own, "c", T0 + 2, T0 + HOUR);
      await expect(own.revocations(next, 10)).rejects.toEqual(new FeedCursorError("expired"));
      expect((await own.revocations(empty.next, 10)).entries.map((e) => e.target)).toEqual(["c"]);
    });
  });

  it("a meta hash an older version wrote (no epoch): cursors 0.<id>, good until the first append gives it an epoch", async () => {
    await withOwnFeed(async ({ own, client, prefix: p }) => {
      await revoke(own, "a", T0, T0 + HOUR);
      await revoke(own, "b", T0 + 1, T0 + HOUR);
      await client.hdel(`${p}{feed}:m`, "epoch"); // as an older version left it
      const [a, b] = (await own.revocations(null, 10)).entries;
      expect(a!.id).toMatch(/^0\.\d+-\d+$/);
      expect((await own.revocations(a!.id, 10)).entries.map((e) => e.target)).toEqual(["b"]);
      await revoke(own, "c", T0 + 2, T0 + HOUR); // the stream lives on: the hash gets an epoch
      expect(await client.hget(`${p}{feed}:m`, "epoch")).toMatch(/^[0-9a-f]{12}$/);
      await expect(own.revocations(b!.id, 10)).rejects.toEqual(new FeedCursorError("expired"));
      expect((await own.revocations(null, 10)).entries.map((e) => e.target)).toEqual(["a", "b", "c"]);
    });
  });

  it("wakes a subscriber on an append made through another store (another process) on the same prefix", async () => {
    const { own, prefix: p } = await ownStore();
    const other = await ownStore(p);
    try {
      let calls = 0;
      const unsubscribe = own.subscribe(() => calls++);
      expect(await revoke(other.own, "j", T0, T0 + HOUR)).toBe(true);
      await until(() => calls > 0, 10_000, "the subscriber on the first store to be woken");
      const before = calls;
      expect(await revoke(other.own, "k", T0 + 1, T0 + HOUR)).toBe(true);
      await until(() => calls > before, 10_000, "a second wake");
      unsubscribe();
    } finally {
      await dropUnder(p);
      await other.own.close();
      await own.close();
    }
  });

  it("watches on a connection of its own, without the command timeout, closed with the last subscriber and the store", async () => {
    const { own, client, prefix: p } = await ownStore();
    const duplicate = vi.spyOn(client, "duplicate");
    try {
      const first = own.subscribe(() => {});
      const second = own.subscribe(() => {});
      expect(duplicate).toHaveBeenCalledTimes(1);
      const watcher = duplicate.mock.results[0]!.value as Redis;
      expect(watcher.options.commandTimeout ?? Infinity).toBeGreaterThan(5_000);
      await until(() => watcher.status === "ready", 10_000, "the watcher's connection");
      first();
      expect(watcher.status).toBe("ready");
      second();
      await until(() => watcher.status === "end", 10_000, "the watcher's connection to close");

      own.subscribe(() => {});
      expect(duplicate).toHaveBeenCalledTimes(2);
      const again = duplicate.mock.results[1]!.value as Redis;
      await own.close();
      await until(() => again.status === "end", 10_000, "the watcher's connection to close with the store");
      // Closed: a subscriber is taken, but no connection opened.
      own.subscribe(() => {})();
      expect(duplicate).toHaveBeenCalledTimes(2);
    } finally {
      duplicate.mockRestore();
      await dropUnder(p);
      await own.close();
    }
  });
});

describe("revocation feed appends", () => {
  // On a server of this test's own: the script count is the server's.
  let own: Awaited<ReturnType<typeof onOwnServer>>;
  let client: Redis;
  let store: RedisStore;
  const scripts = () => scriptsRun(client);
  const revokeAll = (jtis: string[]) =>
    Promise.allSettled(jtis.map((jti) => store.revokeToken({ subject: "alice", jti, expiresAt: T0 + HOUR, now: T0, reason: "r" })));
  const targets = async () => (await store.revocations(null, 10_000)).entries.map((e) => e.target);

  beforeAll(async () => {
    own = await onOwnServer();
    ({ client, store } = own);
  });
  afterAll(() => own?.close());

  it("appends the revocations of one turn in one script, in the order they came, at most 128 entries a script", async () => {
    const first = Array.from({ length: 40 }, (_, i) => `turn-${i}`);
    const before = await scripts();
    expect((await revokeAll(first)).every((r) => r.status === "fulfilled")).toBe(true);
    const used = (await scripts()) - before;
    expect(used).toBeGreaterThanOrEqual(1);
    expect(used).toBeLessThanOrEqual(4); // one a turn: the 40 SET replies may come in more than one read
    expect(await targets()).toEqual(first);

    const many = Array.from({ length: 300 }, (_, i) => `many-${i}`);
    const from = await scripts();
    expect((await revokeAll(many)).every((r) => r.status === "fulfilled")).toBe(true);
    expect((await scripts()) - from).toBeGreaterThanOrEqual(3); // 300 entries: never more than 128 in one script
    expect(await targets()).toEqual([...first, ...many]);
  });

  it("fails every call of a script that failed, and a retry appends", async () => {
    const feedKey = `${prefix}{feed}`;
    const kept = await targets();
    await client.del(feedKey);
    await client.set(feedKey, "not a stream"); // XADD now fails: WRONGTYPE
    const jtis = Array.from({ length: 10 }, (_, i) => `failed-${i}`);
    const outcomes = await revokeAll(jtis);
    expect(outcomes.map((r) => r.status)).toEqual(jtis.map(() => "rejected"));
    await client.del(feedKey);
    // The tokens are revoked (the change stays); the retry appends their entries to the new stream.
    expect((await revokeAll(jtis)).every((r) => r.status === "fulfilled")).toBe(true);
    expect(await targets()).toEqual(jtis);
    expect(kept.length).toBeGreaterThan(0);
  });
});

describe("revocation feed backlog", () => {
  // A store of its own on a server of its own, telling the test what it does with its backlog.
  let server: RedisServer;
  let client: Redis;
  let store: RedisStore;
  const reports: FeedBacklogReport[] = [];
  const feedKey = `${prefix}{feed}`;
  const breakFeed = async () => (await client.del(feedKey), await client.set(feedKey, "not a stream")); // XADD: WRONGTYPE
  const entries = async () => (await store.revocations(null, 20_000)).entries;

  beforeAll(async () => {
    server = await RedisServer.start();
    client = createRedisClient(server.url, { commandTimeoutMs: 2000 });
    store = new RedisStore(client, { prefix, onFeedBacklog: (r) => reports.push(r) });
    await store.ping();
  });
  afterAll(async () => (await store.close(), await server.stop()));

  it("reads its own appends: an opening's evictions are in this process's next feed read, though it did not wait for them", async () => {
    const subject = `own-${randomUUID()}`;
    const now = Date.now();
    const opts = { maxSessions: 1, now, retentionMs: RETENTION };
    const first = session(subject, now);
    await store.createSession(first, opts);
    const { evicted } = await store.createSession(session(subject, now + 1), { ...opts, now: now + 1 });
    expect(evicted).toEqual([first.id]);
    // No turn of the event loop in between: the append is still to be sent when the read is asked for.
    expect((await entries()).filter((e) => e.target === first.id)).toHaveLength(1);
  });

  it("opens a session whose evictions' append failed, and appends them by itself once Redis takes it", async () => {
    reports.length = 0;
    const subject = `backlog-${randomUUID()}`;
    const now = Date.now(); // the backlog lets go of entries that no longer matter by the real clock
    const opts = { maxSessions: 2, now, retentionMs: RETENTION };
    const [oldest, second] = [session(subject, now), session(subject, now + 1)];
    await store.createSession(oldest, opts);
    await store.createSession(second, { ...opts, now: now + 1 });
    await breakFeed();
    const third = session(subject, now + 2);
    // Issue does not wait for the feed (no replicas to wait for): the session opens, the eviction stands.
    expect(await store.createSession(third, { ...opts, now: now + 2 })).toEqual({ evicted: [oldest.id] });
    expect((await store.tokenState({ subject, sessionId: oldest.id, jti: "a" })).session?.status).toBe("revoked");
    expect((await store.tokenState({ subject, sessionId: third.id, jti: "a" })).session?.status).toBe("active");
    // The append failed: its entry waits in the backlog.
    await until(() => store.feedBacklog === 1, 5_000, "the failed append's entry in the backlog");
    expect(reports).toEqual([expect.objectContaining({ event: "kept", entries: 1, pending: 1, dropped: 0 })]);

    await client.del(feedKey);
    const entry = await until(async () => (await entries()).find((e) => e.target === oldest.id), 10_000, "the eviction in the feed");
    expect(entry).toMatchObject({ kind: "session", subject, target: oldest.id, at: now + 2 });
    expect(store.feedBacklog).toBe(0);
    expect(reports.at(-1)).toEqual({ event: "appended", appended: 1, expired: 0 });
  });

  it("keeps trying while Redis refuses, and lets go of what no longer matters", async () => {
    reports.length = 0;
    await breakFeed();
    /** Scripts Redis refused: each failed append, the backlog's retries included. */
    const refused = async () => Number(/cmdstat_evalsha:.*failed_calls=(\d+)/.exec(await client.info("commandstats"))?.[1] ?? 0);
    const now = Date.now();
    const revoke = (jti: string, expiresAt: number) => store.revokeToken({ subject: "bob", jti, expiresAt, now, reason: "r" });
    // "dead": a token that expires before the first retry (0.5 s after the failure): its entry no longer matters then.
    const outcomes = await Promise.allSettled([revoke("live", now + HOUR), revoke("dead", now + 300)]);
    expect(outcomes.map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect(store.feedBacklog).toBe(2);
    // Refused at the first retries (after 0.5, then 1 s): the live entry kept, nothing appended.
    const failed = await refused();
    await until(async () => (await refused()) >= failed + 2, 5_000, "two retries refused");
    expect(store.feedBacklog).toBe(1);
    expect(reports.filter((r) => r.event === "appended")).toEqual([]);

    await client.del(feedKey);
    await until(() => store.feedBacklog === 0, 15_000, "the backlog appended");
    expect((await entries()).map((e) => e.target)).toEqual(["live"]);
    expect(reports.at(-1)).toEqual({ event: "appended", appended: 1, expired: 1 });
  });

  it("tries the backlog a last time when the store closes, and says what it could not append", async () => {
    const now = Date.now();
    const closing = async (fixFirst: boolean) => {
      const said: FeedBacklogReport[] = [];
      const other = new RedisStore(createRedisClient(server.url, { commandTimeoutMs: 2000 }), { prefix, onFeedBacklog: (r) => said.push(r) });
      await other.ping();
      await breakFeed();
      const jti = `closing-${fixFirst}`;
      await expect(other.revokeToken({ subject: "dave", jti, expiresAt: now + HOUR, now, reason: "r" })).rejects.toBeInstanceOf(StoreUnavailableError);
      if (fixFirst) await client.del(feedKey);
      await other.close(); // at once: well before the first retry (0.5 s)
      return { said, jti };
    };
    const fixed = await closing(true);
    expect(fixed.said.map((r) => r.event)).toEqual(["kept", "appended"]);
    expect((await entries()).map((e) => e.target)).toContain(fixed.jti);

    const broken = await closing(false);
    expect(broken.said.map((r) => r.event)).toEqual(["kept", "abandoned"]);
    expect(broken.said.at(-1)).toEqual({ event: "abandoned", pending: 1 });
    await client.del(feedKey);
    expect((await entries()).map((e) => e.target)).not.toContain(broken.jti);
  });

  it("holds at most 10 000 entries, dropping the oldest, and says so", async () => {
    await client.del(feedKey);
    await until(() => store.feedBacklog === 0, 15_000, "an earlier test's backlog appended");
    reports.length = 0;
    await breakFeed();
    const now = Date.now();
    const jtis = Array.from({ length: 10_200 }, (_, i) => `many-${i}`);
    const outcomes = await Promise.allSettled(jtis.map((jti) => store.revokeToken({ subject: "carol", jti, expiresAt: now + HOUR, now, reason: "r" })));
    expect(outcomes.every((o) => o.status === "rejected")).toBe(true);
    expect(store.feedBacklog).toBe(10_000);
    const kept = reports.filter((r) => r.event === "kept");
    expect(kept.reduce((n, r) => n + (r.event === "kept" ? r.dropped : 0), 0)).toBe(200);

    await client.del(feedKey);
    await until(() => store.feedBacklog === 0, 15_000, "the backlog appended");
    expect((await entries()).map((e) => e.target)).toEqual(jtis.slice(200));
  });
});

describe("revocation feed watcher across an outage", () => {
  it("wakes a subscriber again once Redis is back, for an append made after the outage", async () => {
    const server = await RedisServer.start();
    const own = new RedisStore(createRedisClient(server.url, { commandTimeoutMs: 500 }), { prefix });
    try {
      await own.ping();
      let calls = 0;
      own.subscribe(() => calls++);
      await revokeOn(own, "before", T0);
      await until(() => calls > 0, 10_000, "the wake before the outage");
      await server.kill();
      await server.start();
      await vi.waitFor(() => own.ping(), { timeout: 5000, interval: 100 });
      const before = calls;
      await revokeOn(own, "after", T0 + 1);
      await until(() => calls > before, 10_000, "the wake after the outage");
    } finally {
      await own.close(); // with the subscriber still there: close stops the watcher
      await server.stop();
    }
  });

  it("wakes a subscriber once Redis is back, with nothing appended, and again for an append to a feed Redis lost", async () => {
    // The key ring listens (src/app.ts): a Redis that came back empty has lost the key set, and it must look again
    // without waiting for an append. And the new stream's ids may lie below the id the watcher saw last (here the old
    // stream's last id is an hour ahead, as on a server whose clock was ahead): it must not wait for those.
    const { server, store: own, close } = await onOwnServer(500);
    const raw = await connectedClient(server.url);
    try {
      let calls = 0;
      own.subscribe(() => calls++);
      await clockAt(raw, prefix, Date.now() + HOUR);
      await revokeOn(own, "before", T0);
      await until(() => calls > 0, 10_000, "the wake before the outage");
      raw.disconnect();
      await server.kill();
      const beforeOutage = calls;
      await server.start();
      await until(() => calls > beforeOutage, 10_000, "a wake once Redis answers again, with nothing appended");
      const before = calls;
      await revokeOn(own, "after", T0 + 1);
      await until(() => calls > before, 10_000, "the wake for an append to the new feed");
    } finally {
      raw.disconnect();
      await close();
    }
  });

  function revokeOn(s: RedisStore, jti: string, now: number) {
    return s.revokeToken({ subject: "alice", jti, expiresAt: now + HOUR, now, reason: "r" });
  }
});

describe("audit trail and risk", () => {
  const event = (subject: string, at: number, over: Partial<AuditEvent> = {}): AuditEvent => ({
    type: "token_issued",
    severity: "info",
    at,
    caller: "gw",
    subject,
    sessionId: "s",
    ip: "198.51.100.1",
    userAgent: "ua",
    deviceId: "d",
    requestId: "r",
    detail: {},
    ...over,
  });
  const WINDOW = 600_000;
  const bounds = (now: number) => ({ now, maxEvents: 1000, maxAgeMs: 24 * HOUR, riskWindowMs: WINDOW });

  it("keeps risk under the subject's hash tag with a TTL of the window, and the trail in one stream", async () => {
    const subject = `risk-${randomUUID()}`;
    const now = T0 - 10 * 24 * HOUR; // far from the real clock: the TTL is a delta of the caller's clock
    await store.appendAudit([event(subject, now), event(subject, now, { type: "token_revoked" })], bounds(now));
    const tag = tagOf(subject);
    expect((await allKeys()).filter((k) => k.includes(tag))).toEqual([`${prefix}${tag}:risk`]);
    const ttl = await redis.pttl(`${prefix}${tag}:risk`);
    expect(ttl).toBeGreaterThan(WINDOW - 5_000);
    expect(ttl).toBeLessThanOrEqual(WINDOW);
    expect(await redis.type(`${prefix}audit`)).toBe("stream");
    await store.claimRiskAlert({ subject, now, windowMs: WINDOW });
    expect(await redis.pttl(`${prefix}${tag}:risk`)).toBeGreaterThan(WINDOW - 5_000);
  });

  it("writes a batch in one pipelined write, whatever the number of events and subjects", async () => {
    const events = Array.from({ length: 50 }, (_, i) => event(`batch-${i % 7}-${randomUUID()}`, T0 + i));
    const write = vi.spyOn(redis.stream, "write");
    try {
      await store.appendAudit(events, bounds(T0 + 50));
      expect(write).toHaveBeenCalledTimes(1);
    } finally {
      write.mockRestore();
    }
  });

  it("answers tokenState with one command that also reads the subject's risk", async () => {
    const subject = `hot-risk-${randomUUID()}`;
    const s = session(subject, T0);
    await store.createSession(s, { maxSessions: 5, now: T0, retentionMs: RETENTION });
    const [written] = await store.appendAudit([event(subject, T0, { type: "refresh_reuse_detected" })], bounds(T0));
    const send = vi.spyOn(redis, "sendCommand");
    try {
      const state = await store.tokenState({ subject, sessionId: s.id, jti: s.currentJti });
      expect(send).toHaveBeenCalledTimes(1);
      expect(state.risk).toEqual(written!.risk);
      expect(state.risk?.reuses).toEqual([T0]);
    } finally {
      send.mockRestore();
    }
  });
});

describe("statistics in parts", () => {
  it("keeps the index until the batch's last part has swept it, however long between the parts", async () => {
    const p = `${prefix}stats-parts-${randomUUID().slice(0, 8)}:`;
    const ctx = new RedisContext(redis, { prefix: p });
    const stats = new RedisStatsStore(ctx);
    // The parts one at a time, 20 ms apart: a Cluster sends a slot's parts a round trip apart, more under load.
    const spaced = (): ScriptBatch => {
      const queued: [string, string[], (string | number)[]][] = [];
      return {
        script: (name, keys, args) => void queued.push([name, keys, args]),
        exec: async () => {
          const out: [Error | null, unknown][] = [];
          for (const [name, keys, args] of queued) {
            if (out.length > 0) await new Promise((resolve) => setTimeout(resolve, 20));
            out.push([null, await ctx.script(name, keys, args)]);
          }
          return out;
        },
      };
    };
    const MIN = 60_000;
    const id = newSessionId("alice");
    // A session opened at T0, idle for a minute at most; then, at T0 + 2 min, 101 counted events and its end at
    // T0 + 30 s: two parts (64 ops, then 38), the first ending with the session's expiry already past.
    let batch = spaced();
    stats.queue(batch, [{ op: "open", id, platform: "ios", createdAt: T0, expiresAt: T0 + 24 * HOUR, expiry: T0 + MIN }], T0);
    await batch.exec();
    batch = spaced();
    const counted = Array.from({ length: 101 }, (_, i) => ({ op: "count" as const, at: T0 + 1000 + i, counter: "token_revocations" as const, n: 1 }));
    stats.queue(batch, [...counted, { op: "end", id, at: T0 + 30_000 }], T0 + 2 * MIN);
    expect((await batch.exec()).length).toBe(2);
    const s = await stats.readStats({ fromHour: T0, toHour: T0, now: T0 + 2 * MIN });
    // Ended by its end (30 s), neither lost with the index nor swept at its expiry (60 s).
    expect(s.hours[0]!.durations).toMatchObject({ count: 1, sumMs: 30_000, maxMs: 30_000 });
    expect(s.hours[0]!.counts.token_revocations).toBe(101);
    expect(s.live).toEqual({ sessions: 0, byPlatform: {}, subjects: 0 });
    const left = await allKeys(p);
    if (left.length > 0) await redis.del(...left);
  });

  it("keeps the sessions a write's sweep left (it stops at its batch) until the next read ends them", async () => {
    const p = `${prefix}stats-sweep-${randomUUID().slice(0, 8)}:`;
    const ctx = new RedisContext(redis, { prefix: p });
    const stats = new RedisStatsStore(ctx);
    const MIN = 60_000;
    const write = async (ops: StatsOp[], now: number) => {
      const batch = ctx.batch();
      stats.queue(batch, ops, now);
      for (const [err] of await batch.exec()) expect(err).toBeNull();
    };
    // 1 500 sessions, each live for a minute; at T0 + 2 min one more write, whose sweep ends 1 000 of them
    // (STATS_SWEEP_BATCH): the other 500 have ended too, and none is live.
    const opened = Array.from({ length: 1500 }, (_, i): StatsOp => ({
      op: "open",
      id: newSessionId(`u${i % 7}`),
      platform: "web",
      createdAt: T0,
      expiresAt: T0 + 24 * HOUR,
      expiry: T0 + MIN,
    }));
    await write(opened, T0);
    await write([{ op: "count", at: T0 + 2 * MIN, counter: "logins", n: 1 }], T0 + 2 * MIN);
    await new Promise((resolve) => setTimeout(resolve, 20)); // time passes before the next read
    const s = await stats.readStats({ fromHour: T0, toHour: T0, now: T0 + 2 * MIN });
    expect(s.hours[0]!.durations).toMatchObject({ count: 1500, sumMs: 1500 * MIN, maxMs: MIN });
    expect(s.live).toEqual({ sessions: 0, byPlatform: {}, subjects: 0 });
    const left = await allKeys(p);
    if (left.length > 0) await redis.del(...left);
  });
});

describe("failing fast", () => {
  const down = (p: Promise<unknown>) => expect(p).rejects.toBeInstanceOf(StoreUnavailableError);

  it("throws StoreUnavailableError at once when nothing listens", async () => {
    const client = createRedisClient(`redis://127.0.0.1:${await freePort()}`, { commandTimeoutMs: 300 });
    const dead = new RedisStore(client, { prefix });
    try {
      const started = Date.now();
      await down(dead.tokenState({ subject: "s", sessionId: newSessionId("s"), jti: "y" }));
      await down(dead.revokeToken({ subject: "s", jti: "y", expiresAt: T0 + 1, now: T0, reason: "r" }));
      await down(dead.rotateRefresh(rotation(session("s", T0), "a", "b", T0)));
      await down(dead.listKeys());
      await down(dead.revocations(null, 10));
      expect(Date.now() - started).toBeLessThan(250);
      await down(dead.ping()); // waits for the connection, at most one command timeout
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await dead.close();
    }
  });

  it("times out on a stalled server, fails while it is down, and recovers when it is back", async () => {
    const server = await RedisServer.start();
    const client = createRedisClient(server.url, { commandTimeoutMs: 200 });
    const own = new RedisStore(client, { prefix });
    const admin = createRedisClient(server.url, { commandTimeoutMs: 2000 });
    try {
      await own.ping();
      await new RedisStore(admin, { prefix }).ping();
      await admin.call("CLIENT", "PAUSE", "700", "ALL");
      const started = Date.now();
      await down(own.tokenState({ subject: "s", sessionId: newSessionId("s"), jti: "y" }));
      expect(Date.now() - started).toBeLessThan(600);

      await server.kill();
      await vi.waitFor(() => expect(client.status).not.toBe("ready"));
      await down(own.tokenState({ subject: "s", sessionId: newSessionId("s"), jti: "y" }));
      await down(own.ping());

      await server.start();
      await vi.waitFor(() => own.ping(), { timeout: 5000, interval: 100 });
      expect((await own.tokenState({ subject: "s", sessionId: newSessionId("s"), jti: "y" })).jtiRevoked).toBe(false);
    } finally {
      admin.disconnect();
      await own.close();
      await server.stop();
    }
  });
});
