/**
 * The memory store's revocation feed (RevocationFeed): consecutive numeric ids from 1, each cursor `<epoch>-<id>`,
 * where the epoch is drawn at random when the feed is made, so a cursor from an earlier process (whose ids started at
 * 1 too) is never taken for one of this feed's: it is expired, as is a cursor of the Redis feed's form (domain
 * FEED_CURSOR_SHAPE: another store's). An entry is dropped once its `until` has passed, oldest first, on the next
 * append, as Redis's feed drops it (nothing else trims it: a read never depends on a sweep).
 */
import { randomInt } from "node:crypto";
import {
  FEED_CURSOR_SHAPE,
  FeedCursorError,
  type FeedPage,
  type RevocationEvent,
  type RevocationFeed,
} from "../../domain/store.js";

/**
 * At most this many dead entries are dropped per append, as Redis's APPEND_FEED drops them (src/store/redis/feed.ts
 * TRIM_MAX; keep both alike), so both feeds hold the same entries.
 */
const TRIM_MAX = 100;

/** A cursor of a memory feed: `<epoch>-<id>`, decimal integers, short enough to be exact as numbers. */
const CURSOR = /^(\d{1,15})-(\d{1,16})$/;

export class MemoryRevocationFeed implements RevocationFeed {
  private feed: RevocationEvent[] = [];
  /** The newest id ever handed out ("last"); 0: none yet. */
  private last = 0;
  /** The newest id ever dropped ("trimmed through"); 0: none yet. */
  private trimmed = 0;
  private readonly listeners = new Set<{ listener: () => void }>();
  private readonly epoch = randomInt(1, 2 ** 47);

  /** Appends one entry (the session part calls this for every revocation it makes), after dropping the dead head. */
  append(e: Omit<RevocationEvent, "id">, now: number): void {
    this.trim(now);
    this.feed.push({ ...e, id: this.cursorOf(++this.last), sessions: [...e.sessions] });
    // Never synchronously: a listener runs after the revocation's step, and its failure is not the appender's.
    if (this.listeners.size > 0) queueMicrotask(() => this.notify());
  }

  /**
   * Drops from the oldest end every entry whose `until` is at or before `now`, up to the first still live (a dead
   * entry behind a live one stays until the live one goes: the feed only ever loses its head), at most TRIM_MAX.
   */
  private trim(now: number): void {
    let dead = 0;
    while (dead < this.feed.length && dead < TRIM_MAX && this.feed[dead]!.until <= now) dead++;
    if (dead === 0) return;
    this.trimmed = this.last - this.feed.length + dead;
    this.feed.splice(0, dead);
  }

  async revocations(cursor: string | null, limit: number): Promise<FeedPage> {
    if (!Number.isInteger(limit) || limit < 1) throw new Error("revocations: limit must be an integer of at least 1");
    let after = this.trimmed;
    if (cursor !== null) {
      const m = CURSOR.exec(cursor);
      // Not this feed's form: another feed's (the Redis store's), or none at all.
      if (!m) throw new FeedCursorError(FEED_CURSOR_SHAPE.test(cursor) ? "expired" : "invalid");
      after = Number(m[2]);
      // Another epoch: from another feed (an earlier process). Before the trimmed entries: some of what follows it is
      // gone. Beyond last: never handed out.
      if (Number(m[1]) !== this.epoch || after < this.trimmed || after > this.last) throw new FeedCursorError("expired");
    }
    // Ids are consecutive and nothing is kept before `trimmed`, so the first entry after the cursor is found by
    // arithmetic.
    const first = this.last - this.feed.length + 1;
    const start = Math.max(0, after + 1 - first);
    const entries = this.feed.slice(start, start + limit).map((e) => ({ ...e, sessions: [...e.sessions] }));
    // Nothing returned: the cursor is at most `last`, so max(cursor, last) is `last`.
    return { entries, next: entries.length > 0 ? entries[entries.length - 1]!.id : this.cursorOf(this.last) };
  }

  subscribe(listener: () => void): () => void {
    const entry = { listener };
    this.listeners.add(entry);
    return () => void this.listeners.delete(entry);
  }

  private cursorOf(id: number): string {
    return `${this.epoch}-${id}`;
  }

  get size(): number {
    return this.feed.length;
  }

  private notify(): void {
    for (const entry of [...this.listeners]) {
      if (!this.listeners.has(entry)) continue; // unsubscribed by an earlier listener
      try {
        entry.listener();
      } catch {
        // a hint was not taken; the others still get it
      }
    }
  }
}
