/**
 * The Redis client writes the commands it is given in one turn of the event loop in one socket write
 * (createRedisClient's writesPerTick), in order, and their answers come back to the right callers; the next turn's
 * commands are a write of their own.
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
});
