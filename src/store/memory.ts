/**
 * The embedded store: one process, no dependencies. A composite of one part per concern (src/store/memory/): keys,
 * sessions (which append every revocation to the feed and read the risk observations for tokenState), the revocation
 * feed, and the audit trail with the risk observations. Entries carry their own expiry and a sweep drops them, so
 * memory stays bounded by what is live.
 */
import { MemoryAuditStore } from "./memory/audit.js";
import { MemoryRevocationFeed } from "./memory/feed.js";
import { MemoryKeyStore } from "./memory/keys.js";
import { MemorySessionStore } from "./memory/sessions.js";
import { Horizon } from "./memory/shared.js";
import { CompositeStore } from "./composite.js";
import { counterStore } from "./counters.js";
import type { CounterStore } from "../domain/store.js";

const SWEEP_EVERY_MS = 30_000;

export class MemoryStore extends CompositeStore {
  private readonly horizon: Horizon;
  private readonly parts: { sessions: MemorySessionStore; feed: MemoryRevocationFeed; audit: MemoryAuditStore };
  private readonly sweeper: NodeJS.Timeout;
  /** Rate-limit and lockout counters (in this process). */
  readonly counters: CounterStore = counterStore({ memory: true });

  constructor() {
    const horizon = new Horizon();
    const feed = new MemoryRevocationFeed();
    const audit = new MemoryAuditStore(horizon);
    const sessions = new MemorySessionStore(horizon, feed, (subject) => audit.held(subject));
    super({ keys: new MemoryKeyStore(feed), sessions, feed, audit });
    this.horizon = horizon;
    this.parts = { sessions, feed, audit };
    this.sweeper = setInterval(() => this.sweep(), SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }

  /** Drops what has expired. Runs on a timer; exposed for tests. */
  sweep(now = this.horizon.latest): void {
    this.parts.sessions.sweep(now);
    this.parts.feed.trim(now);
    this.parts.audit.sweep(now);
  }

  /** Number of entries held, for tests of boundedness. */
  size(): { sessions: number; revokedJti: number; feed: number; audit: number; risk: number } {
    return { ...this.parts.sessions.size(), feed: this.parts.feed.size, ...this.parts.audit.size() };
  }
}
