/**
 * Composition root: config -> store -> keys -> authority -> routes -> listener. The only module that knows every
 * piece. Returns { listen, close } plus the parts tests want to reach.
 */
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { interceptorsFor } from "./api/pipeline.js";
import { routes } from "./api/routes.js";
import type { Config } from "./config/config.js";
import { Authority } from "./domain/authority.js";
import { systemClock, type Clock } from "./domain/clock.js";
import { KeyRing } from "./domain/keys.js";
import type { Store } from "./domain/store.js";
import { TokenCodec } from "./domain/tokens.js";
import { createLogger, type Logger } from "./observability/logger.js";
import { httpRoutes } from "./server/http-routes.js";
import { Listener } from "./server/listener.js";
import { MemoryStore } from "./store/memory.js";

export interface AppOptions {
  logger?: Logger;
  clock?: Clock;
}

export interface App {
  listen(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  readonly authority: Authority;
  readonly store: Store;
  readonly keys: KeyRing;
  readonly logger: Logger;
}

export async function createApp(config: Readonly<Config>, opts: AppOptions = {}): Promise<App> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const clock = opts.clock ?? systemClock;
  const store = await openStore(config, logger);
  const keys = new KeyRing(store, config.signingAlg, clock);
  await keys.init();
  // Pick up keys rotated by other processes on the same store (an unknown kid also triggers a reload).
  const keyReload = setInterval(() => {
    keys.reload().catch((err: unknown) => logger.warn({ err }, "key set reload failed"));
  }, 60_000);
  keyReload.unref();
  const codec = new TokenCodec(keys, {
    issuer: config.issuer,
    clockSkewMs: config.clockSkewMs,
    maxTokenLength: config.maxTokenLength,
  });
  const authority = new Authority({
    store,
    codec,
    clock,
    config: {
      defaultAudience: config.audience,
      accessTtlMs: config.accessTtlMs,
      accessTtlMaxMs: config.accessTtlMaxMs,
      refreshTtlMs: config.refreshTtlMs,
      refreshTtlMaxMs: config.refreshTtlMaxMs,
      refreshIdleTtlMs: config.refreshIdleTtlMs,
      refreshGraceMs: config.refreshGraceMs,
      maxSessions: config.maxSessions,
      clockSkewMs: config.clockSkewMs,
    },
    onEvent: (e) => logger.warn({ event: e.type, subject: e.subject, sessionId: e.sessionId }, e.type),
  });
  const handler = connectNodeAdapter({
    routes: routes({ authority, keys, maxTokenLength: config.maxTokenLength }),
    interceptors: interceptorsFor({ logger }),
    readMaxBytes: config.maxRequestBytes,
    maxTimeoutMs: 30_000,
    fallback: httpRoutes({ jwks: () => keys.publicKeys() }),
  });
  const listener = new Listener({ host: config.listen.host, port: config.listen.port, handler });

  return {
    authority,
    store,
    keys,
    logger,
    listen: () => listener.listen(),
    async close() {
      clearInterval(keyReload);
      listener.drain();
      listener.destroy();
      await store.close();
    },
  };
}

async function openStore(config: Readonly<Config>, logger: Logger): Promise<Store> {
  if (config.redisUrl === undefined) {
    logger.info({ store: "memory" }, "using the embedded in-memory store: state lives in this process only and is lost on restart");
    return new MemoryStore();
  }
  const { RedisStore, createRedisClient } = await import("./store/redis.js");
  const store = new RedisStore(createRedisClient(config.redisUrl, { commandTimeoutMs: config.storeTimeoutMs }), {
    prefix: config.redisPrefix,
  });
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await store.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await store.close();
        throw new Error("TESSERA_REDIS_URL: Redis did not answer within 10s", { cause: err });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  logger.info({ store: "redis", prefix: config.redisPrefix }, "using the Redis store");
  return store;
}
