/**
 * The Redis store's revocation feed (RevocationFeed): the stream `P{feed}`, and beside it the hash `P{feed}:m` (same
 * hash tag, so one script may touch both in a cluster) holding `epoch` (the feed's incarnation), `last` (the newest id
 * ever handed out), `trimmed` (the newest id ever dropped) and `first` (the first id the incarnation handed out). An entry is
 * dropped once its `until` has passed, oldest first, by the script that appends; nothing else trims the stream.
 *
 * Cursors are `<epoch>.<ms>-<seq>`: a stream id of the incarnation it names. Stream ids alone cannot tell a feed from
 * the one Redis made after losing it (a restart without persistence, a failover to an empty replica): ids come from the
 * server's clock, so a feed that grows again within the millisecond of a cursor, or on a server whose clock is behind,
 * hands out the cursor's ids again, and a reader would skip what they now name. The epoch tells them apart: drawn at
 * random (48 bits, node:crypto) by the appending process and set by the append that makes the stream, so every process
 * on one Redis shares it, and a stream made again (lost, or dropped while its hash lived on) starts a new one. The
 * rules READ_FEED applies:
 * - a cursor of another incarnation is expired (its entries may be gone, and its position means nothing here);
 * - `0.0-0`, the cursor of a feed that never had an incarnation (nothing appended yet, or nothing since Redis lost
 *   it), continues in whatever incarnation the feed has by then, from its start: its reader saw nothing, so it misses
 *   nothing, unless entries were dropped since (then expired, like any cursor from before `trimmed`). Any other `0.`
 *   cursor (from a feed whose hash an older version wrote, read before anything was appended since) is expired once
 *   the feed has an incarnation;
 * - a bare stream id (what versions before the epoch handed out) or a memory feed's cursor is expired, never taken for
 *   a position of this feed: its consumer takes a new snapshot once rather than maybe skip entries.
 * The watcher (FeedWatcher) reads raw stream ids: it only wakes listeners, who read through cursors.
 *
 * The session part appends right after the atomic script that revoked (docs/architecture.md §3.4: the feed lives in
 * another cluster slot than the subject's keys), then waits for replicas if configured. If that append fails the call
 * fails, and its retry appends again (the session part appends for a revocation already made too); its entries also
 * wait in a bounded backlog, which this process appends again by itself until they land or no longer matter.
 */
import { randomBytes } from "node:crypto";
import {
  FEED_CURSOR_SHAPE,
  FeedCursorError,
  type FeedPage,
  type RevocationEvent,
  type RevocationFeed,
  type RevocationKind,
} from "../../domain/store.js";
import { blockingConnection, commandTimeoutOf, LUA_LAST_GENERATED_ID, type RedisClient, type RedisContext, type Script } from "./client.js";

/**
 * A cursor of this feed: `<epoch>.<ms>-<seq>`, the incarnation (12 lowercase hex digits, or `0`: none yet) and a stream
 * id of it, each number in its one spelling (no leading zero; 19 digits always fit Redis's 64 bits). At most 52
 * characters; a dot, so never a memory feed's cursor nor a bare stream id.
 */
const CURSOR = /^(0|[0-9a-f]{12})\.((?:0|[1-9]\d{0,18})-(?:0|[1-9]\d{0,18}))$/;
/** The epoch of a feed without an incarnation (nothing appended since its hash was made, or since Redis lost it). */
const NO_EPOCH = "0";
/** How long the watcher's XREAD blocks; and the pause after it failed before it tries again. */
const BLOCK_MS = 5_000;
const RETRY_MS = 500;
/** At most this many dead entries are dropped per append, so one script's work is bounded (memory/feed.ts: alike). */
const TRIM_MAX = 100;

/** Lua: compares two stream ids (`ms-seq` or `ms`) by their ms, then seq parts, as exact decimal numbers. */
const ID_CMP = `
local function num_cmp(a, b)
  a, b = (string.gsub(a, '^0+', '')), (string.gsub(b, '^0+', ''))
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if ms then return ms, seq end
  return id, '0'
end
local function id_cmp(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  local c = num_cmp(am, bm)
  if c ~= 0 then return c end
  return num_cmp(as, bs)
end
`;

/**
 * APPEND_FEED. KEYS[1] = the stream `P{feed}`, KEYS[2] = its meta hash `P{feed}:m`. ARGV[1] = now, ARGV[2] = a fresh
 * epoch (12 lowercase hex digits, drawn for this call), then 7 per entry (appendArgs): kind, subject, target,
 * sessions (JSON array), at, until, reason.
 * Guarantees: atomically, gives the feed its incarnation: if the stream does not exist (the first append, or the
 * stream was lost), sets `epoch` to ARGV[2] and forgets `trimmed` and `first` (they spoke of the lost stream);
 * otherwise keeps `epoch`, set to ARGV[2] only if the hash has none (it was lost, or an older version wrote it). Then
 * drops from the head every entry whose until <= now up to the first live one (at most TRIM_MAX), records the newest
 * dropped id as `trimmed`, appends the entries in order (ids from XADD *), and records the newest id as `last` (and
 * the first id of the incarnation as `first`). Returns the newest id.
 */
const APPEND_FEED = `
local stream, meta, now, fresh = KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2]
local TRIM_MAX = ${TRIM_MAX}
-- A stream made anew may hand out ids an earlier one did (XADD * counts from the server's clock): a new incarnation.
if redis.call('EXISTS', stream) == 0 then
  redis.call('HDEL', meta, 'trimmed', 'first')
  redis.call('HSET', meta, 'epoch', fresh)
else
  redis.call('HSETNX', meta, 'epoch', fresh)
end
local function until_of(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'u' then return tonumber(fields[i + 1]) or 0 end
  end
  return 0
end
-- The oldest entry alone first: it is live on most appends, and reading 101 entries each time cost more than the rest.
local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if #head == 1 and until_of(head[1][2]) <= now then
  head = redis.call('XRANGE', stream, '-', '+', 'COUNT', TRIM_MAX + 1)
end
local dead = 0
while dead < #head and dead < TRIM_MAX and until_of(head[dead + 1][2]) <= now do dead = dead + 1 end
if dead > 0 then
  -- Exact trims: up to the entry that stays, or all of it when every entry read was dead and there is no more.
  if dead < #head then redis.call('XTRIM', stream, 'MINID', head[dead + 1][1])
  else redis.call('XTRIM', stream, 'MAXLEN', 0) end
  redis.call('HSET', meta, 'trimmed', head[dead][1])
end
local first, last
for i = 3, #ARGV, 7 do
  last = redis.call('XADD', stream, '*', 'k', ARGV[i], 's', ARGV[i + 1], 't', ARGV[i + 2], 'n', ARGV[i + 3],
    'a', ARGV[i + 4], 'u', ARGV[i + 5], 'r', ARGV[i + 6])
  first = first or last
end
redis.call('HSET', meta, 'last', last)
redis.call('HSETNX', meta, 'first', first)
return last
`;

/**
 * READ_FEED. Read only. KEYS[1] = the stream `P{feed}`, KEYS[2] = its meta hash `P{feed}:m`. ARGV[1] = the cursor's
 * epoch ('' for no cursor: from the oldest kept), ARGV[2] = the cursor's stream id, ARGV[3] = limit.
 * Guarantees: one consistent answer. A cursor of another epoch than the feed's (`0` when it has none) is expired,
 * except `0` with 0-0 (its reader saw nothing: it reads from the start). A cursor before `trimmed`, beyond `last`, or
 * between 0-0 and `first` (never handed out in this incarnation) is expired. Without the hash but with the stream (the
 * hash alone lost), `last` is the stream's newest id. Returns {'expired'} or {'ok', epoch, last, entries}; epoch is
 * '0' and last '0-0' when nothing was appended since the hash was made.
 */
const READ_FEED = `${ID_CMP}${LUA_LAST_GENERATED_ID}
local m = redis.call('HMGET', KEYS[2], 'epoch', 'last', 'trimmed', 'first')
local epoch, last, trimmed, first = m[1] or '${NO_EPOCH}', m[2] or '0-0', m[3] or '0-0', m[4]
-- The hash lost while the stream lived on: the stream's own newest id stands for \`last\`, so the cursors this read
-- hands out (of no incarnation) read on instead of expiring at once, until the next append gives one.
if not m[2] then last = last_generated_id(KEYS[1]) or last end
local start = '-'
if ARGV[1] ~= '' then
  local e, c = ARGV[1], ARGV[2]
  if e ~= epoch and (e ~= '${NO_EPOCH}' or c ~= '0-0') then return { 'expired' } end
  if id_cmp(c, trimmed) < 0 or id_cmp(c, last) > 0 or (first and id_cmp(c, '0') > 0 and id_cmp(c, first) < 0) then
    return { 'expired' }
  end
  start = '(' .. c
end
return { 'ok', epoch, last, redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[3]) }
`;

/** A revocation as appended: the feed gives it its id. */
export type FeedEntry = Omit<RevocationEvent, "id">;

/** Entries waiting for their turn's APPEND_FEED (RedisRevocationFeed.append), and the promise of its outcome. */
interface PendingAppend {
  now: number;
  entries: FeedEntry[];
  done: Promise<void>;
}

/**
 * At most this many entries in one APPEND_FEED that a turn's publishes share (a bounded script, as the audit's).
 * Measured under one-subject Issue (h2load, 64 in flight, every call evicts a session), four alternating pairs against
 * a script per call: 44 % fewer scripts on Redis; main thread 216-224 against 220-250 µs of CPU a call, 3 646-3 814
 * against 3 382-3 837 calls/s.
 */
const ENTRIES_PER_APPEND = 128;
/** The backlog's retries (RedisRevocationFeed.retryBacklog): the first RETRY_MS after a failure, doubling up to this. */
const BACKLOG_RETRY_MAX_MS = 5_000;
/**
 * At most this many entries wait in the backlog; beyond, the oldest are dropped (and reported). An entry is a few
 * hundred bytes, so about 3 MB at most, whatever an outage lasts.
 */
const BACKLOG_MAX = 10_000;

/** What the feed says of its backlog (RedisStoreOptions.onFeedBacklog). */
export type FeedBacklogReport =
  /** An append failed: its entries wait in the backlog (`pending` entries in all now), and `dropped` were pushed out. */
  | { event: "kept"; entries: number; pending: number; dropped: number; error: unknown }
  /** The store closed with `pending` entries its last attempt could not append: they never reach the feed. */
  | { event: "abandoned"; pending: number }
  /** The backlog was appended: `appended` entries; `expired` that no longer mattered were let go since the last one. */
  | { event: "appended"; appended: number; expired: number };

const SCRIPTS: Record<string, Script> = {
  appendFeed: { numberOfKeys: 2, lua: APPEND_FEED },
  readFeed: { numberOfKeys: 2, lua: READ_FEED },
};

type StreamEntry = [id: string, fields: string[]];

export class RedisRevocationFeed implements RevocationFeed {
  private readonly key: string;
  private readonly metaKey: string;
  private readonly listeners = new Set<{ listener: () => void }>();
  private watcher: FeedWatcher | null = null;
  private closed = false;
  /** The append this turn's publishes join (append), until it is sent. */
  private turn: PendingAppend | null = null;
  /** The latest append (sent or to be sent this turn): settled, every earlier one of this process is (one connection). */
  private latest: Promise<void> = Promise.resolve();
  /** Entries whose append failed, oldest first, until they are appended again (retryBacklog) or no longer matter. */
  private backlog: FeedEntry[] = [];
  private backlogTimer: NodeJS.Timeout | undefined;
  private backlogDelayMs = RETRY_MS;
  /** The backlog's retry under way. */
  private retrying: Promise<void> | undefined;
  /** Entries let go since the backlog was last appended (their `until` had passed). */
  private backlogExpired = 0;

  constructor(
    private readonly ctx: RedisContext,
    private readonly onBacklog: (report: FeedBacklogReport) => void = () => {},
  ) {
    this.key = `${ctx.prefix}{feed}`;
    this.metaKey = `${ctx.prefix}{feed}:m`;
    ctx.define(SCRIPTS);
  }

  /**
   * Appends to the feed (dropping its dead head) after the change it reports succeeded, then waits for replicas if
   * configured (on the node of `written`, a key in the slot of the change, and on the feed's); a failure fails the call
   * (the change stays). Runs inside the caller's guard.
   */
  async publish(now: number, events: FeedEntry[], written: string): Promise<void> {
    if (events.length === 0) return;
    await this.append(now, events);
    await this.ctx.replicated(undefined, written, this.key);
  }

  /**
   * Appends the entries with those of every other publish of this turn of the event loop: one APPEND_FEED when the
   * turn's I/O callbacks are done (setImmediate, as the client's writes, client.ts writesPerTick), in the order the
   * calls came, with at most ENTRIES_PER_APPEND entries a script (a call's own entries are never split). Resolves once
   * the script that holds them succeeded; if it failed, every call in it fails (each one's retry appends again), and
   * its entries go to the backlog, which this process appends again by itself until they land or no longer matter:
   * so a change whose append failed reaches the feed even when no retry comes (an eviction's: a retried Issue opens
   * another session). Duplicates are harmless to consumers. Under a burst of evictions or revocations, one script a
   * turn instead of one a call (see ENTRIES_PER_APPEND).
   */
  private append(now: number, events: FeedEntry[]): Promise<void> {
    let turn = this.turn;
    if (turn === null || (turn.entries.length > 0 && turn.entries.length + events.length > ENTRIES_PER_APPEND)) {
      const next: PendingAppend = { now, entries: [], done: this.sendAfterTurn(() => next) };
      this.turn = turn = next;
      this.latest = next.done;
    }
    // The latest instant of the turn's calls drops the dead head: whatever was dead for an earlier one is dead still.
    turn.now = Math.max(turn.now, now);
    turn.entries.push(...events);
    return turn.done;
  }

  /** Sends the append at the end of the turn (setImmediate), when no more publishes can join it. */
  private async sendAfterTurn(pending: () => PendingAppend): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    const sent = pending();
    if (this.turn === sent) this.turn = null;
    try {
      await this.appendFeed(sent.now, sent.entries);
    } catch (err) {
      this.keep(sent.entries, err);
      throw err;
    }
  }

  /** One APPEND_FEED of `entries`. */
  private appendFeed(now: number, entries: readonly FeedEntry[]): Promise<unknown> {
    const args: (string | number)[] = [];
    for (const e of entries) args.push(e.kind, e.subject, e.target, JSON.stringify(e.sessions), e.at, e.until, e.reason);
    // A fresh epoch on every script: it becomes the feed's only if this append makes the stream (or finds the hash
    // without one), and a process that made an incarnation must not give the next one (after a loss) the same.
    return this.ctx.script("appendFeed", [this.key, this.metaKey], [now, randomBytes(6).toString("hex"), ...args]);
  }

  /** Entries waiting to be appended again (the backlog), for tests and operators. */
  get backlogSize(): number {
    return this.backlog.length;
  }

  /** Puts a failed append's entries in the backlog, bounded, and schedules its retry. */
  private keep(entries: readonly FeedEntry[], error: unknown): void {
    this.backlog.push(...entries);
    const dropped = Math.max(0, this.backlog.length - BACKLOG_MAX);
    if (dropped > 0) this.backlog.splice(0, dropped);
    this.onBacklog({ event: "kept", entries: entries.length, pending: this.backlog.length, dropped, error });
    this.scheduleBacklog();
  }

  /** The backlog's next retry, unless one is waiting or under way (it schedules the next when it ends). */
  private scheduleBacklog(): void {
    if (this.backlogTimer !== undefined || this.retrying !== undefined || this.closed || this.backlog.length === 0) return;
    this.backlogTimer = setTimeout(() => {
      this.backlogTimer = undefined;
      void this.retryBacklog().then(() => this.scheduleBacklog());
    }, this.backlogDelayMs);
    this.backlogTimer.unref();
  }

  /**
   * Appends the backlog again, oldest first, ENTRIES_PER_APPEND a script; entries whose `until` has passed are let go
   * (the feed would drop them at once). After a failure, tries again later (RETRY_MS, doubling up to
   * BACKLOG_RETRY_MAX_MS); entries that fail meanwhile join the backlog's end.
   */
  private retryBacklog(): Promise<void> {
    this.retrying ??= (async () => {
      let appended = 0;
      const now = Date.now();
      const live = this.backlog.filter((e) => e.until > now);
      this.backlogExpired += this.backlog.length - live.length;
      this.backlog = live;
      try {
        while (this.backlog.length > 0) {
          // Taken from the backlog's head by identity: a failed append meanwhile adds at its end, a full one drops
          // from its head.
          const part = this.backlog.slice(0, ENTRIES_PER_APPEND);
          await this.appendFeed(now, part);
          const sent = new Set(part);
          this.backlog = this.backlog.filter((e) => !sent.has(e));
          appended += part.length;
        }
        this.backlogDelayMs = RETRY_MS;
        this.onBacklog({ event: "appended", appended, expired: this.backlogExpired });
        this.backlogExpired = 0;
      } catch {
        this.backlogDelayMs = Math.min(this.backlogDelayMs * 2, BACKLOG_RETRY_MAX_MS);
      } finally {
        this.retrying = undefined;
      }
    })();
    return this.retrying;
  }

  async revocations(cursor: string | null, limit: number): Promise<FeedPage> {
    if (!Number.isInteger(limit) || limit < 1) throw new Error("revocations: limit must be an integer of at least 1");
    // This process reads what it appended: an eviction's append, which Issue does not wait for, has landed (or failed,
    // and waits in the backlog) before the read goes out.
    await this.latest.catch(() => undefined);
    let at: [epoch: string, id: string] = ["", ""];
    if (cursor !== null) {
      const m = CURSOR.exec(cursor);
      // Not this feed's form: a bare stream id (an older version's), another store's, or none at all.
      if (!m) throw new FeedCursorError(FEED_CURSOR_SHAPE.test(cursor) ? "expired" : "invalid");
      at = [m[1]!, m[2]!];
    }
    const reply = (await this.ctx.guard(() =>
      this.ctx.script("readFeed", [this.key, this.metaKey], [...at, limit]),
    )) as ["expired"] | ["ok", string, string, StreamEntry[]];
    // Outside the guard: an expired cursor is an answer, not an outage.
    if (reply[0] === "expired") throw new FeedCursorError("expired");
    const [, epoch, last, page] = reply;
    const entries = page.map((entry) => toEvent(epoch, entry));
    // Nothing returned: the cursor is at most `last` (else it expired), so max(cursor, last) is `last`.
    return { entries, next: entries.length > 0 ? entries[entries.length - 1]!.id : `${epoch}.${last}` };
  }

  /**
   * Listeners are woken by one blocking connection per feed (FeedWatcher), opened for the first listener and closed
   * after the last, so appends from every process on this Redis wake them.
   */
  subscribe(listener: () => void): () => void {
    const entry = { listener };
    this.listeners.add(entry);
    if (this.watcher === null && !this.closed) {
      this.watcher = new FeedWatcher(this.ctx, this.key, this.metaKey, () => this.notify());
    }
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.listeners.delete(entry);
      if (this.listeners.size === 0) this.stopWatching();
    };
  }

  /**
   * Stops the watcher and the backlog's retries for good (the store is closing), after one last attempt to append the
   * backlog (or the end of the one under way); what is still in it then is reported abandoned.
   */
  async close(): Promise<void> {
    this.closed = true; // no retry is scheduled from now on
    clearTimeout(this.backlogTimer);
    if (this.backlog.length > 0) await this.retryBacklog();
    this.stopWatching();
    if (this.backlog.length > 0) this.onBacklog({ event: "abandoned", pending: this.backlog.length });
  }

  private stopWatching(): void {
    this.watcher?.stop();
    this.watcher = null;
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

/**
 * Waits for the stream to grow on a connection of its own (XREAD BLOCK would hold up every command of the shared
 * client) and calls `wake` whenever it has. After a failed read (Redis unreachable, restarted, failed over) it wakes
 * once as soon as Redis answers again, and reads on from the feed's `last` as it is then: what changed meanwhile may be
 * anything (a Redis that came back empty has lost the key set and the feed, and its new stream's ids may lie below the
 * id seen last, which a read from there would wait for in vain), so every listener looks again.
 */
class FeedWatcher {
  private readonly conn: RedisClient;
  private stopped = false;
  private pause: { timer: NodeJS.Timeout; resolve: () => void } | null = null;

  constructor(
    ctx: RedisContext,
    private readonly key: string,
    private readonly metaKey: string,
    private readonly wake: () => void,
  ) {
    // Where to start: `last`, asked on the shared client now, so that it is answered before any read the subscriber
    // makes after subscribing; whatever that read misses comes after it, and wakes the watcher.
    const start = ctx.redis.hget(metaKey, "last").then(
      (last) => last ?? "0-0",
      () => null,
    );
    const main = commandTimeoutOf(ctx.redis);
    // A blocked read is no slow server: time it out only well after the block ends. Failures show as failed reads,
    // retried below.
    this.conn = blockingConnection(ctx.redis, main === undefined ? undefined : BLOCK_MS + Math.max(main, 1_000));
    void this.run(start);
  }

  stop(): void {
    this.stopped = true;
    this.conn.disconnect(); // fails the blocked read at once
    if (this.pause) {
      clearTimeout(this.pause.timer);
      this.pause.resolve();
    }
  }

  private async run(start: Promise<string | null>): Promise<void> {
    let after = await start;
    while (!this.stopped) {
      try {
        if (after === null) {
          // At the start, when the shared client could not say where the feed was, and after a failed read: ask
          // here, and wake once, since something may have been appended (or lost) since the subscriber's read.
          after = (await this.conn.hget(this.metaKey, "last")) ?? "0-0";
          this.wake();
        }
        const reply = (await this.conn.xread("COUNT", 1000, "BLOCK", BLOCK_MS, "STREAMS", this.key, after)) as
          | [string, StreamEntry[]][]
          | null;
        if (this.stopped) return;
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length > 0) {
          after = entries[entries.length - 1]![0];
          this.wake();
        }
      } catch {
        if (this.stopped) return;
        after = null; // ask where the feed is, and wake, once Redis answers again
        await new Promise<void>((resolve) => {
          this.pause = { timer: setTimeout(resolve, RETRY_MS), resolve };
        });
        this.pause = null;
      }
    }
  }
}

/** An entry of the stream, its id a cursor of incarnation `epoch`. */
function toEvent(epoch: string, [id, fields]: StreamEntry): RevocationEvent {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
  return {
    id: `${epoch}.${id}`,
    kind: f.get("k") as RevocationKind,
    subject: f.get("s") ?? "",
    target: f.get("t") ?? "",
    sessions: JSON.parse(f.get("n") ?? "[]") as string[],
    at: Number(f.get("a")),
    until: Number(f.get("u")),
    reason: f.get("r") ?? "",
  };
}
