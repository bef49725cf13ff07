/**
 * The Redis client writes the commands it is given in one turn of the event loop in one socket write
 * (createRedisClient's writesPerTick), in order, and their answers come back to the right callers; the next turn's
 * commands are a write of their own. A turn that gives it more than 16 KiB writes as it goes, a write per 16 KiB.
 */
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRedisClient } from "../../src/store/redis.js";
import { countWrites, RedisServer } from "../helpers/redis-server.js";

let server: RedisServer;
let redis: Redis;

beforeAll(async () => {
  server = await RedisServer.start();
  redis = createRedisClient(server.url, { commandTimeoutMs: 2000 });
  if (redis.status !== "ready") await new Promise((ready) => redis.once("ready", ready));
});

afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

describe("createRedisClient", () => {
  it("sends one turn's commands in one write, in order, each answer to its caller", async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `writes-test:{t}:${i}`);
    await redis.mset(keys.flatMap((k, i) => [k, `v${i}`]));
    const writes = countWrites(redis.stream);
    try {
      const answers = await Promise.all(keys.map((k) => redis.get(k)));
      expect(answers).toEqual(keys.map((_, i) => `v${i}`));
      expect(writes.count).toBe(1);
      // A later turn: a write of its own.
      expect(await redis.mget(keys[0]!, keys[49]!)).toEqual(["v0", "v49"]);
      expect(writes.count).toBe(2);
    } finally {
      writes.restore();
    }
  });

  it("writes a turn's commands as they pass 16 KiB, in order, each answer to its caller", async () => {
    const value = "x".repeat(4000);
    const keys = Array.from({ length: 20 }, (_, i) => `writes-test:{t}:big:${i}`);
    const writes = countWrites(redis.stream);
    try {
      // 20 SETs of about 4 KB in one turn: every fifth passes 16 KiB and writes, the twentieth leaving nothing over.
      const answers = await Promise.all(keys.map((k, i) => redis.set(k, `${i}:${value}`)));
      expect(answers).toEqual(keys.map(() => "OK"));
      expect(writes.count).toBe(4);
      const back = await redis.mget(keys);
      expect(back.map((v) => Number(v!.split(":")[0]))).toEqual(keys.map((_, i) => i));
      expect(writes.count).toBe(5);
    } finally {
      writes.restore();
      await redis.del(keys);
    }
  });
});
