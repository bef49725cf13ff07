/**
 * The CounterStore (src/domain/store.ts) on rate-limiter-flexible: in this process's memory, or in Redis under the
 * store's prefix so every process on it shares the counts. Fail closed: a Redis that cannot answer (or is not ready)
 * is a StoreUnavailableError, never a "let through". The memory and Redis counters pass one contract
 * (test/contract/counters.contract.test.ts).
 */
import { Cluster, type Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from "rate-limiter-flexible";
import { StoreUnavailableError } from "../domain/errors.js";
import type { CounterStore, Counters } from "../domain/store.js";

/** Where the counts live: memory, or a Redis client and key prefix. */
export type CounterBackend = { memory: true } | { redis: Redis | Cluster; prefix: string };

export function counterStore(backend: CounterBackend): CounterStore {
  const limiters = new WeakMap<Counters, RateLimiterAbstract>();
  return {
    counters(name, points, windowMs) {
      const opts = { points, duration: windowMs / 1000 };
      const limiter: RateLimiterAbstract =
        "memory" in backend
          ? new RateLimiterMemory({ ...opts, keyPrefix: `rl:${name}` })
          : new RateLimiterRedis({ ...opts, keyPrefix: `${backend.prefix}rl:${name}`, storeClient: backend.redis, rejectIfRedisNotReady: true });
      const counters = countersOn(limiter);
      limiters.set(counters, limiter);
      return counters;
    },
    async countMany(reads) {
      if ("memory" in backend) return Promise.all(reads.map(async ([c, key]) => (await c.get(key))?.count ?? 0));
      // One MGET for all of them (the hot path of every Refresh): rate-limiter-flexible keeps a plain count per key.
      // On a Cluster the keys lie in different slots: one GET each, sent together (one write per node).
      const keys = reads.map(([c, key]) => limiters.get(c)!.getKey(key));
      if (keys.length === 0) return [];
      const redis = backend.redis;
      const values = await (redis instanceof Cluster ? Promise.all(keys.map((k) => redis.get(k))) : redis.mget(...keys)).catch(unavailable);
      return values.map((v) => Number(v ?? 0));
    },
  };
}

function countersOn(limiter: RateLimiterAbstract): Counters {
  return {
    async consume(key) {
      try {
        const res = await limiter.consume(key);
        return { allowed: true, retryAfterMs: res.msBeforeNext };
      } catch (err) {
        if (err instanceof RateLimiterRes) return { allowed: false, retryAfterMs: err.msBeforeNext };
        return unavailable(err);
      }
    },
    async get(key) {
      const res = await limiter.get(key).catch(unavailable);
      return res === null ? null : { count: res.consumedPoints, retryAfterMs: res.msBeforeNext };
    },
    async add(key) {
      return (await limiter.penalty(key).catch(unavailable)).consumedPoints;
    },
    async block(key, ms) {
      await limiter.block(key, ms / 1000).catch(unavailable);
    },
    async delete(key) {
      await limiter.delete(key).catch(unavailable);
    },
  };
}

function unavailable(err: unknown): never {
  throw new StoreUnavailableError(err);
}
