/**
 * The backends every contract suite runs against: the in-memory store, Redis, and a Redis Cluster of three primaries
 * (the throwaway servers that test/helpers/global-setup.ts starts), each Redis store on its own key prefix, deleted
 * afterwards. Each suite
 * types the store as the interface it holds to (KeyStore, SessionStore, ...), so it can use nothing else.
 */
import { randomUUID } from "node:crypto";
import { Cluster, type Redis } from "ioredis";
import { afterAll, beforeAll, inject } from "vitest";
import type { CounterStore, Store } from "../../src/domain/store.js";
import { MemoryStore } from "../../src/store/memory.js";
import { createRedisClient, RedisStore, type RedisConnection } from "../../src/store/redis.js";
import type { StoreFactory } from "./fixtures.js";

/** A backend: the store, and beside it the rate-limit counters on the same memory or Redis. */
export type Backend = Store & { readonly counters: CounterStore };

export const BACKENDS: ReadonlyArray<{ name: string; make: StoreFactory<Backend> }> = [
  {
    name: "memory",
    make: async () => {
      const store = new MemoryStore();
      return { store, cleanup: () => store.close() };
    },
  },
  { name: "redis", make: () => redisBackend(inject("redisUrl")) },
  { name: "redis-cluster", make: () => redisBackend({ cluster: seedsOf(inject("redisClusterSeeds")) }) },
];

async function redisBackend(conn: RedisConnection): ReturnType<StoreFactory<Backend>> {
  const client = createRedisClient(conn, { commandTimeoutMs: 2000 });
  const prefix = `test:contract:${randomUUID()}:`;
  const store = new RedisStore(client, { prefix });
  // The client fails fast (no offline queue): wait for the connection, as app.ts does, before the first command.
  await store.ping();
  return {
    store,
    cleanup: async () => {
      if (client instanceof Cluster) await Promise.all(client.nodes("master").map((node) => deleteUnder(node, prefix)));
      else await deleteUnder(client, prefix);
      await store.close();
    },
  };
}

/** `host:port,host:port` as seed nodes. */
export function seedsOf(seeds: string): { host: string; port: number }[] {
  return seeds.split(",").map((s) => {
    const [host, port] = s.split(":");
    return { host: host!, port: Number(port) };
  });
}

/** Deletes every key whose name starts with `prefix` (SCAN, then DEL in batches). */
async function deleteUnder(client: Redis, prefix: string): Promise<void> {
  // The prefix is a fixed string plus a UUID: no glob metacharacters to escape.
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    // One key per DEL: on a Cluster node the keys lie in several slots.
    await Promise.all(keys.map((k) => client.del(k)));
    cursor = next;
  } while (cursor !== "0");
}

/**
 * One Redis client (the suite's Redis) for the many runs of a property test, each run a store of its own on it under
 * `prefix` + a run number. Call inside `describe`; `client` is there from beforeAll on.
 */
export function sharedRedis(label: string): { readonly client: Redis; readonly prefix: string } {
  let client: Redis | undefined;
  beforeAll(async () => {
    client = createRedisClient(inject("redisUrl"), { commandTimeoutMs: 5000 });
    // Every run makes a RedisStore on this one client, and each adds its (no-op) error listener.
    client.setMaxListeners(0);
    // The client fails fast (no offline queue): wait for the connection before the first command.
    await new RedisStore(client, { prefix: "test:" }).ping();
  });
  afterAll(async () => {
    await client?.quit();
  });
  return {
    get client() {
      if (!client) throw new Error("sharedRedis: the client exists from beforeAll on");
      return client;
    },
    prefix: `test:${label}:${randomUUID()}:`,
  };
}
