/**
 * The Redis store's revocation feed (RevocationFeed): the stream `P feed`, capped at ~100 000 entries; stream ids
 * are the cursors. The session part appends right after the atomic script that revoked (docs/architecture.md §3.4:
 * the feed lives in another cluster slot than the subject's keys), then waits for replicas if configured.
 */
import type { RevocationEvent, RevocationFeed, RevocationKind } from "../../domain/store.js";
import { isStreamIdRefusal, type RedisContext } from "./client.js";

const FEED_MAXLEN = "100000";
const STREAM_ID = /^\d{1,19}(-\d{1,19})?$/;

export class RedisRevocationFeed implements RevocationFeed {
  private readonly key: string;

  constructor(private readonly ctx: RedisContext) {
    this.key = `${ctx.prefix}feed`;
  }

  /**
   * Appends to the feed after the change it reports succeeded, then waits for replicas if configured; a failure
   * fails the call (the change stays). Runs inside the caller's guard.
   */
  async publish(events: Omit<RevocationEvent, "id">[]): Promise<void> {
    if (events.length === 0) return;
    await Promise.all(
      events.map((e) =>
        this.ctx.redis.xadd(this.key, "MAXLEN", "~", FEED_MAXLEN, "*",
          "k", e.kind, "s", e.subject, "t", e.target, "a", String(e.at), "r", e.reason),
      ),
    );
    await this.ctx.replicated(undefined);
  }

  async revocations(cursor: string | null, limit: number): Promise<RevocationEvent[]> {
    const count = Math.floor(limit);
    if (count <= 0 || (cursor !== null && !STREAM_ID.test(cursor))) return [];
    return this.ctx.guard(async () => {
      let entries: [string, string[]][];
      try {
        entries = await this.ctx.redis.xrange(this.key, cursor === null ? "-" : `(${cursor}`, "+", "COUNT", count);
      } catch (err) {
        // A well-formed cursor Redis still refuses (past the largest id): nothing follows it.
        if (isStreamIdRefusal(err)) return [];
        throw err;
      }
      return entries.map(([id, fields]) => {
        const f = new Map<string, string>();
        for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
        return {
          id,
          kind: f.get("k") as RevocationKind,
          subject: f.get("s") ?? "",
          target: f.get("t") ?? "",
          at: Number(f.get("a")),
          reason: f.get("r") ?? "",
        };
      });
    });
  }
}
