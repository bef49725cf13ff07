/**
 * The embedded store: one process, no dependencies. A composite of one part per concern (src/store/memory/): keys,
 * sessions (which append every revocation to the feed and read the risk observations for tokenState), the revocation
 * feed, and the audit trail with the risk observations. Entries carry their own expiry, measured by the store's clock
 * as Redis measures a key's PX by its own (memory/shared.ts Lifetimes), and judged at every read, so an entry is gone
 * exactly when a Redis key written alike would be; a sweep then frees its memory, so memory stays bounded by what is
 * live. A sweep is never observable: the feed, like Redis's, drops its dead head only on an append.
 * test/contract/differential.property.test.ts holds both stores to the same answers.
 */
import { MemoryAuditStore } from "./memory/audit.js";
import { MemoryRevocationFeed } from "./memory/feed.js";
import { MemoryKeyStore } from "./memory/keys.js";
import { MemorySessionStore } from "./memory/sessions.js";
import { Lifetimes } from "./memory/shared.js";
import { MemoryStatsStore } from "./memory/stats.js";
import { CompositeStore } from "./composite.js";
import { counterStore } from "./counters.js";
import type { Clock } from "../domain/clock.js";
import type { CounterStore } from "../domain/store.js";

const SWEEP_EVERY_MS = 30_000;

export class MemoryStore extends CompositeStore {
  private readonly parts: { sessions: MemorySessionStore; feed: MemoryRevocationFeed; audit: MemoryAuditStore; stats: MemoryStatsStore };
  private readonly clock: Clock | undefined;
  private readonly sweeper: NodeJS.Timeout;
  /** Rate-limit and lockout counters (in this process). */
  readonly counters: CounterStore = counterStore({ memory: true });

  /**
   * `clock`: the store's own clock, by which it measures how long what it holds lives, as a Redis server measures its
   * keys' PX by its own (the system clock unless given; a test whose callers pass instants of a clock it moves gives
   * the store that clock, so that the store's expiry follows it). `maxSessions`: how many sessions it holds at most,
   * live or revoked (TESSERA_MEMORY_MAX_SESSIONS; unbounded unless given); opening one more is RESOURCE_EXHAUSTED.
   */
  constructor(opts: { clock?: Clock; maxSessions?: number } = {}) {
    const lifetimes = new Lifetimes(opts.clock);
    const feed = new MemoryRevocationFeed();
    const stats = new MemoryStatsStore();
    const audit = new MemoryAuditStore(lifetimes, stats);
    const sessions = new MemorySessionStore(lifetimes, feed, (tag) => audit.held(tag), opts.maxSessions);
    super({ keys: new MemoryKeyStore(feed), sessions, feed, audit, stats });
    this.parts = { sessions, feed, audit, stats };
    this.clock = opts.clock;
    this.sweeper = setInterval(() => this.sweep(), SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  /**
   * Frees what has expired (reads already ignore it). Runs on a timer; exposed for tests. The feed is left alone: it
   * drops its dead head on an append, as Redis's does, so what a feed read returns never depends on a sweep.
   */
  sweep(): void {
    this.parts.sessions.sweep();
    this.parts.audit.sweep();
    this.parts.stats.sweep((this.clock ?? { now: Date.now }).now());
  }

  /** Number of entries held, for tests of boundedness. */
  size(): { sessions: number; revokedJti: number; feed: number; audit: number; risk: number; statsHours: number; statsSessions: number } {
    return { ...this.parts.sessions.size(), feed: this.parts.feed.size, ...this.parts.audit.size(), ...this.parts.stats.size() };
  }
}
