/**
 * Usage statistics (StatsService), kept up to date from the audit events as the store appends them (AuditStore
 * appendAudit feeds the StatsStore in the same write), never computed by scanning sessions or the trail:
 *
 * - hourly counters per kind (STATS_COUNTERS), one record per UTC hour, kept STATS_KEEP_MS (8 days): exact for every
 *   event the audit trail stored (an event dropped from a full audit buffer is not counted);
 * - a live-session index: each session opened (token_issued) with its platform, creation and expiry (the earlier of
 *   its idle and absolute expiry, moved on by every token_refreshed), removed when it ends (session_revoked,
 *   session_evicted, refresh_reuse_detected, subject_revoked for exactly the sessions it ended: the event carries
 *   their ids, AuditEvent.endedSessions) or expires (swept at every read and write). Live sessions in total, by
 *   platform and distinct subjects are exact counts of that index; bounded by the live sessions. Only ids shaped as
 *   ids.newSessionId makes them are indexed (indexableSessionId): the Redis index keeps an id as its 28 bytes;
 * - the durations of sessions that ended, per hour of their end (an expired session: its expiry), in a fixed
 *   log-spaced histogram (DURATION_BUCKETS_MS): count, sum and max exact; median and p95 approximate (the upper
 *   bound of the bucket the rank falls in, never above the max).
 *
 * Pure functions here; src/store/memory/stats.ts applies the ops in memory, src/store/redis/stats.ts in one Lua script
 * (the twin of applyStatsOps), and test/contract/stats.contract.test.ts holds both to the same answers.
 */
import type { AuditEvent } from "./audit.js";
import { subjectTag } from "./ids.js";

export const HOUR_MS = 3_600_000;
export const DAY_MS = 24 * HOUR_MS;
/** How long the hourly records are kept. */
export const STATS_KEEP_MS = 8 * DAY_MS;
/** Expired sessions ended per store call at most (the rest at the next one); reads sweep until none is left. */
export const STATS_SWEEP_BATCH = 1000;
/**
 * Sessions of one subject the live-session index holds at most (the Redis index numbers them in 2 bytes); a session
 * opened beyond is not indexed. TESSERA_MAX_SESSIONS is at most 10 000, so only lost end events could reach it.
 */
export const STATS_SUBJECT_SESSIONS_MAX = 65_535;

/** What the hourly records count. */
export const STATS_COUNTERS = [
  /** token_issued */
  "logins",
  /** token_refreshed (grace replays included) */
  "refreshes",
  "token_revocations",
  "session_revocations",
  "subject_revocations",
  "evictions",
  "reuse_detections",
  /** rate_limited events of the refresh lockout (detail.limit session_lockout or subject_lockout) */
  "lockouts",
  /** every rate_limited event (lockouts included) */
  "rate_limited",
  "suspicious_activity",
] as const;
export type StatsCounter = (typeof STATS_COUNTERS)[number];

/** Upper bounds (ms, inclusive) of the duration buckets: 1 s doubling to 2^24 s (194 days); one more bucket beyond. */
export const DURATION_BUCKETS_MS: readonly number[] = Array.from({ length: 25 }, (_, i) => 1000 * 2 ** i);

export interface DurationStats {
  count: number;
  sumMs: number;
  /** 0 when count is 0. */
  maxMs: number;
  /** Counts per bucket: DURATION_BUCKETS_MS.length + 1 (the last: beyond the last bound). */
  buckets: number[];
}

export interface HourStats {
  /** The hour's first instant (ms, a multiple of HOUR_MS). */
  hour: number;
  counts: Record<StatsCounter, number>;
  durations: DurationStats;
}

export interface LiveStats {
  sessions: number;
  byPlatform: Record<string, number>;
  subjects: number;
}

export interface StatsSnapshot {
  live: LiveStats;
  /** One per hour asked, oldest first (zeros for an hour with nothing recorded). */
  hours: HourStats[];
}

/** A change to the statistics, in event order. */
export type StatsOp =
  | { op: "count"; at: number; counter: StatsCounter; n: number }
  | { op: "open"; id: string; platform: string; createdAt: number; expiresAt: number; expiry: number }
  | { op: "touch"; id: string; expiry: number }
  /** Ends the session at `at` (at its expiry if that came first); nothing if it is not indexed. */
  | { op: "end"; id: string; at: number }
  /**
   * Logout everywhere of the subject whose sessions' ids start with `tag`: ends the indexed sessions of `ids` (the
   * sessions the revocation ended, all of that tag) at `at`. Without `ids` (an event recorded before subject_revoked
   * carried them): every indexed session of the tag opened at or before `at`.
   */
  | { op: "end_subject"; tag: string; at: number; ids?: readonly string[] }
  /**
   * A session its batch both opened and ended (compactStatsOps), at `at`: if the index holds it (a batch written again
   * after part of it was applied), ends it as `end` does; otherwise counts its duration, from `createdAt` to `at` or
   * to `expiry` if that came first, in the hour it ended.
   */
  | { op: "closed"; id: string; at: number; createdAt: number; expiry: number };

/** Reads statistics; written only through AuditStore.appendAudit. */
export interface StatsStore {
  /**
   * The live-session figures and the hourly records of the hours starting at `fromHour` to `toHour` (inclusive,
   * multiples of HOUR_MS, at most STATS_KEEP_MS apart), after ending the sessions expired at `now`.
   */
  readStats(q: { fromHour: number; toHour: number; now: number }): Promise<StatsSnapshot>;
}

export function hourOf(at: number): number {
  return Math.floor(at / HOUR_MS) * HOUR_MS;
}

const num = (s: string | undefined) => {
  const n = Number(s);
  return s !== undefined && s !== "" && Number.isFinite(n) ? n : undefined;
};

/** Instants the index keeps (the Redis index packs them into 6 bytes): whole ms from the epoch, below 2^48. */
const instant = (n: number | undefined): n is number => n !== undefined && Number.isSafeInteger(n) && n >= 0 && n < 2 ** 48;

/**
 * Whether the index keeps a session of this id: one shaped as ids.newSessionId makes it, 38 base64url characters
 * that decode to exactly 28 bytes (the last character's 4 low bits are 0), which is how the Redis index keeps it.
 * Other strings never name a session; skipping them keeps both stores' indexes alike.
 */
export function indexableSessionId(id: string): boolean {
  return SESSION_ID_BYTES.test(id);
}
const SESSION_ID_BYTES = /^[A-Za-z0-9_-]{37}[AQgw]$/;

/**
 * The index's order of session ids: the order of their bytes (base64url-decoded), which is the order of the characters'
 * base64url values (A-Z, a-z, 0-9, -, _), not of their char codes. Redis sorts the sweep's ties (same expiry) so.
 */
export function compareIndexedIds(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = B64.indexOf(a[i]!) - B64.indexOf(b[i]!);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** The statistics ops an audit event carries, if any. */
export function statsOpsOf(e: AuditEvent): StatsOp[] {
  const count = (counter: StatsCounter): StatsOp => ({ op: "count", at: e.at, counter, n: 1 });
  const indexed = indexableSessionId(e.sessionId);
  switch (e.type) {
    case "token_issued": {
      const expiresAt = num(e.detail.expires_at);
      const idle = num(e.detail.idle_expires_at) ?? expiresAt;
      const ops: StatsOp[] = [count("logins")];
      if (indexed && instant(e.at) && instant(expiresAt) && instant(idle)) {
        ops.push({
          op: "open",
          id: e.sessionId,
          platform: e.detail.platform ?? "",
          createdAt: e.at,
          expiresAt,
          expiry: Math.min(idle, expiresAt),
        });
      }
      return ops;
    }
    case "token_refreshed": {
      const idle = num(e.detail.idle_expires_at);
      return !instant(idle) || !indexed ? [count("refreshes")] : [count("refreshes"), { op: "touch", id: e.sessionId, expiry: idle }];
    }
    case "token_revoked":
      return [count("token_revocations")];
    case "session_revoked":
      // detail.sessions: 1 if this call ended a live session, 0 if there was none to end.
      return !indexed || e.detail.sessions === "0"
        ? [count("session_revocations")]
        : [count("session_revocations"), { op: "end", id: e.sessionId, at: e.at }];
    case "session_evicted":
      return indexed ? [count("evictions"), { op: "end", id: e.sessionId, at: e.at }] : [count("evictions")];
    case "refresh_reuse_detected":
      return indexed ? [count("reuse_detections"), { op: "end", id: e.sessionId, at: e.at }] : [count("reuse_detections")];
    case "subject_revoked": {
      if (e.subject === "") return [count("subject_revocations")];
      const tag = subjectTag(e.subject);
      if (e.endedSessions === undefined) return [count("subject_revocations"), { op: "end_subject", tag, at: e.at }];
      const ids = e.endedSessions.filter((id) => indexableSessionId(id) && id.startsWith(tag));
      return ids.length === 0 ? [count("subject_revocations")] : [count("subject_revocations"), { op: "end_subject", tag, at: e.at, ids }];
    }
    case "rate_limited": {
      // A folded event (audit-trail.ts) stands for detail.count more.
      const n = e.detail.first_at !== undefined ? (num(e.detail.count) ?? 1) : 1;
      const ops: StatsOp[] = [{ op: "count", at: e.at, counter: "rate_limited", n }];
      if ((e.detail.limit ?? "").endsWith("_lockout")) ops.push({ op: "count", at: e.at, counter: "lockouts", n });
      return ops;
    }
    case "suspicious_activity":
      return [count("suspicious_activity")];
    default:
      return [];
  }
}

/**
 * The statistics ops of a batch of audit events appended at `now`, compacted (compactStatsOps): what both stores
 * apply.
 */
export function statsOps(events: readonly AuditEvent[], now: number): StatsOp[] {
  return compactStatsOps(events.flatMap(statsOpsOf), now);
}

/**
 * The same changes as `ops` applied in order at `now`, in fewer ops: a store's index need never hold a session that
 * the batch both opens and ends.
 * - A session opened (expiry after `now`, so it would be indexed) and ended later in the batch (end, end_subject with
 *   its id, or end_subject without ids covering it) loses its open, and its end becomes a `closed` op, which counts
 *   its duration without indexing it (touches in between move its expiry as they would in the index; they stay, as
 *   they change nothing where the session is not indexed). A session opened twice in the batch is left as it is.
 * - Counts of the same counter and hour become one, where the first was.
 * Under one-subject Issue (each login evicts a session opened 20 logins before) this leaves about a third of the ops,
 * and the statistics' scripts a fifth of the Redis time (SLOWLOG: 15 against 67 µs a call); under Refresh (a count and
 * a touch a call), about half the ops. The one difference from applying `ops` one by one: a session opened while its
 * subject already has STATS_SUBJECT_SESSIONS_MAX sessions indexed (only lost end events can get there) is not
 * indexed, so its end would count no duration; compacted, it counts one.
 */
export function compactStatsOps(ops: readonly StatsOp[], now: number): StatsOp[] {
  const out: (StatsOp | null)[] = [];
  // Sessions this batch opened, by id: where their open is in `out`, their expiry as the index would hold it.
  const opened = new Map<string, { at: number; createdAt: number; expiresAt: number; expiry: number }>();
  // Ids opened twice in the batch: left as they are (the second open finds the first indexed).
  const twice = new Set<string>();
  const counts = new Map<string, number>();
  const ended = (id: string, at: number): boolean => {
    const o = opened.get(id);
    if (o === undefined) return false;
    opened.delete(id);
    out[o.at] = null;
    out.push({ op: "closed", id, at, createdAt: o.createdAt, expiry: o.expiry });
    return true;
  };
  for (const op of ops) {
    switch (op.op) {
      case "count": {
        const key = `${hourOf(op.at)} ${op.counter}`;
        const i = counts.get(key);
        if (i === undefined) {
          counts.set(key, out.length);
          out.push({ ...op });
        } else (out[i] as { n: number }).n += op.n;
        continue;
      }
      case "open":
        if (opened.delete(op.id)) twice.add(op.id);
        else if (op.expiry > now && !twice.has(op.id)) {
          opened.set(op.id, { at: out.length, createdAt: op.createdAt, expiresAt: op.expiresAt, expiry: op.expiry });
        }
        out.push(op);
        continue;
      case "touch": {
        const o = opened.get(op.id);
        if (o !== undefined) o.expiry = Math.min(op.expiry, o.expiresAt);
        out.push(op);
        continue;
      }
      case "end":
        if (!ended(op.id, op.at)) out.push(op);
        continue;
      case "end_subject":
        if (op.ids !== undefined) {
          // An empty list ends nothing, in either store.
          const rest = op.ids.filter((id) => !ended(id, op.at));
          if (rest.length > 0) out.push(rest.length === op.ids.length ? op : { ...op, ids: rest });
        } else {
          for (const [id, o] of opened) if (id.startsWith(op.tag) && o.createdAt <= op.at) ended(id, op.at);
          out.push(op);
        }
        continue;
      default:
        out.push(op); // closed: already compacted
    }
  }
  return out.filter((op): op is StatsOp => op !== null);
}

export function emptyCounts(): Record<StatsCounter, number> {
  return Object.fromEntries(STATS_COUNTERS.map((c) => [c, 0])) as Record<StatsCounter, number>;
}

export function emptyDurations(): DurationStats {
  return { count: 0, sumMs: 0, maxMs: 0, buckets: new Array<number>(DURATION_BUCKETS_MS.length + 1).fill(0) };
}

/** The bucket of a duration: the first whose bound it does not exceed. Lua twin: `bucket` in STATS_APPLY. */
export function durationBucket(ms: number): number {
  const i = DURATION_BUCKETS_MS.findIndex((b) => ms <= b);
  return i < 0 ? DURATION_BUCKETS_MS.length : i;
}

/** Adds a duration to a histogram (in place). */
export function addDuration(d: DurationStats, ms: number): void {
  const v = Math.max(0, Math.floor(ms));
  d.count++;
  d.sumMs += v;
  d.maxMs = Math.max(d.maxMs, v);
  d.buckets[durationBucket(v)]!++;
}

/** Sums hourly records (counts and histograms). */
export function sumHours(hours: readonly HourStats[]): { counts: Record<StatsCounter, number>; durations: DurationStats } {
  const counts = emptyCounts();
  const durations = emptyDurations();
  for (const h of hours) {
    for (const c of STATS_COUNTERS) counts[c] += h.counts[c];
    durations.count += h.durations.count;
    durations.sumMs += h.durations.sumMs;
    durations.maxMs = Math.max(durations.maxMs, h.durations.maxMs);
    h.durations.buckets.forEach((n, i) => (durations.buckets[i]! += n));
  }
  return { counts, durations };
}

export interface DurationSummary {
  count: number;
  meanMs: number;
  /** Approximate: the upper bound of the bucket holding the median, never above maxMs. */
  medianMs: number;
  /** Approximate, as medianMs. */
  p95Ms: number;
  maxMs: number;
}

/** Mean (exact), median and p95 (from the buckets), max (exact). All zero without durations. */
export function summarizeDurations(d: DurationStats): DurationSummary {
  if (d.count === 0) return { count: 0, meanMs: 0, medianMs: 0, p95Ms: 0, maxMs: 0 };
  const quantile = (q: number) => {
    const rank = Math.max(1, Math.ceil(q * d.count));
    let seen = 0;
    for (let i = 0; i < d.buckets.length; i++) {
      seen += d.buckets[i]!;
      if (seen >= rank) return Math.min(DURATION_BUCKETS_MS[i] ?? d.maxMs, d.maxMs);
    }
    return d.maxMs;
  };
  return { count: d.count, meanMs: Math.round(d.sumMs / d.count), medianMs: quantile(0.5), p95Ms: quantile(0.95), maxMs: d.maxMs };
}

/** The hour starts from `fromHour` to `toHour` inclusive. */
export function hoursBetween(fromHour: number, toHour: number): number[] {
  const out: number[] = [];
  for (let h = hourOf(fromHour); h <= toHour; h += HOUR_MS) out.push(h);
  return out;
}
