/**
 * The production store on Redis. Behaves exactly like the memory store (the reference semantics). A composite of one
 * part per concern (src/store/redis/), all on one ioredis client and key prefix (client.ts, which also lists the key
 * layout): keys, sessions (whose revocations are appended to the feed part, and whose tokenState reads the subject's
 * risk key in the same MGET), the revocation feed, and the audit trail with the risk observations. Every multi-step
 * change is one Lua script, kept in the file of the part that runs it; every key expires by itself; every failure to
 * reach Redis is a StoreUnavailableError so callers fail closed.
 */
import type { CounterStore } from "../domain/store.js";
import { CompositeStore } from "./composite.js";
import { counterStore } from "./counters.js";
import { RedisAuditStore } from "./redis/audit.js";
import { RedisContext, type RedisClient, type RedisStoreOptions } from "./redis/client.js";
import { RedisRevocationFeed } from "./redis/feed.js";
import { RedisKeyStore } from "./redis/keys.js";
import { RedisSessionStore } from "./redis/sessions.js";
import { RedisStatsStore } from "./redis/stats.js";

export { createRedisClient, type RedisClient, type RedisConnection, type RedisStoreOptions } from "./redis/client.js";
export type { FeedBacklogReport } from "./redis/feed.js";

export class RedisStore extends CompositeStore {
  private readonly ctx: RedisContext;
  private readonly feed: RedisRevocationFeed;
  /** Rate-limit and lockout counters, on the same client and prefix (shared by every process on this Redis). */
  readonly counters: CounterStore;

  /**
   * `waitReplicas` > 0: a revocation is acknowledged only once that many replicas have it (Redis WAIT, up to
   * `waitTimeoutMs`); fewer in time fails the call with UNAVAILABLE (the revocation stays applied on the primary, and
   * a retry waits again).
   */
  constructor(redis: RedisClient, opts: RedisStoreOptions) {
    const ctx = new RedisContext(redis, opts);
    const feed = new RedisRevocationFeed(ctx, opts.onFeedBacklog);
    const stats = new RedisStatsStore(ctx);
    super({ keys: new RedisKeyStore(ctx, feed), sessions: new RedisSessionStore(ctx, feed, opts.livesFrom), feed, audit: new RedisAuditStore(ctx, stats), stats });
    this.ctx = ctx;
    this.feed = feed;
    this.counters = counterStore({ redis, prefix: opts.prefix });
  }

  /** Revocation feed entries whose append failed, waiting to be appended again (src/store/redis/feed.ts). */
  get feedBacklog(): number {
    return this.feed.backlogSize;
  }

  /** Resolves when Redis answers PING. While the first connection is still being made, waits for it (bounded). */
  ping(): Promise<void> {
    return this.ctx.ping();
  }

  /**
   * Tries the feed's backlog a last time, stops the feed's watcher (its connection is cut at once), then QUIT, so
   * replies in flight arrive; a server that does not answer within a second (or the command timeout) is cut off.
   */
  async close(): Promise<void> {
    await this.feed.close();
    return this.ctx.close();
  }
}
