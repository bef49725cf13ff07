/** The memory store's revocation feed (RevocationFeed): consecutive numeric ids, capped at FEED_MAX entries. */
import type { RevocationEvent, RevocationFeed, RevocationKind } from "../../domain/store.js";

const FEED_MAX = 100_000;

export class MemoryRevocationFeed implements RevocationFeed {
  private feed: RevocationEvent[] = [];
  private seq = 0;

  /** Appends one entry (the session part calls this for every revocation it makes). */
  append(kind: RevocationKind, subject: string, target: string, at: number, reason: string): void {
    this.feed.push({ id: String(++this.seq), kind, subject, target, at, reason });
    if (this.feed.length > FEED_MAX) this.feed.splice(0, this.feed.length - FEED_MAX);
  }

  async revocations(cursor: string | null, limit: number): Promise<RevocationEvent[]> {
    const after = cursor === null ? 0 : Number(cursor);
    if (!Number.isSafeInteger(after) || after < 0 || limit <= 0) return [];
    // Feed ids are consecutive, so the first entry after the cursor is found by arithmetic.
    const first = this.feed.length === 0 ? 0 : Number(this.feed[0]!.id);
    const start = Math.max(0, after + 1 - first);
    return this.feed.slice(start, start + limit).map((e) => ({ ...e }));
  }

  get size(): number {
    return this.feed.length;
  }
}
