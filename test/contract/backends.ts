/**
 * The backends every contract suite runs against: the in-memory store, and Redis (the throwaway server that
 * test/helpers/global-setup.ts starts), each Redis store on its own key prefix, deleted afterwards. Each suite
 * types the store as the interface it holds to (KeyStore, SessionStore, ...), so it can use nothing else.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { inject } from "vitest";
import type { CounterStore, Store } from "../../src/domain/store.js";
import { MemoryStore } from "../../src/store/memory.js";
import { createRedisClient, RedisStore } from "../../src/store/redis.js";
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
  {
    name: "redis",
    make: async () => {
      const client = createRedisClient(inject("redisUrl"), { commandTimeoutMs: 2000 });
      const prefix = `test:contract:${randomUUID()}:`;
      const store = new RedisStore(client, { prefix });
      // The client fails fast (no offline queue): wait for the connection, as app.ts does, before the first command.
      await store.ping();
      return {
        store,
        cleanup: async () => {
          await deleteUnder(client, prefix);
          await store.close();
        },
      };
    },
  },
];

/** Deletes every key whose name starts with `prefix` (SCAN, then DEL in batches). */
async function deleteUnder(client: Redis, prefix: string): Promise<void> {
  // The prefix is a fixed string plus a UUID: no glob metacharacters to escape.
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    if (keys.length > 0) await client.del(...keys);
    cursor = next;
  } while (cursor !== "0");
}
