/**
 * The memory store's statistics (StatsStore): the reference semantics of src/domain/stats.ts, applied by the audit
 * part's appendAudit (applyStatsOps) in the same call as the append. Bounded: at most STATS_KEEP_MS / HOUR_MS + 1
 * hourly records, and one index entry per live session (an expired one is ended at the next write or read).
 * Redis twin: src/store/redis/stats.ts (STATS_APPLY, STATS_READ).
 */
import {
  STATS_KEEP_MS,
  STATS_SUBJECT_SESSIONS_MAX,
  STATS_SWEEP_BATCH,
  addDuration,
  compareIndexedIds,
  emptyCounts,
  emptyDurations,
  hourOf,
  hoursBetween,
  type HourStats,
  type StatsOp,
  type StatsSnapshot,
  type StatsStore,
} from "../../domain/stats.js";

interface Indexed {
  platform: string;
  createdAt: number;
  expiresAt: number;
  /** The earlier of the idle and the absolute expiry. */
  expiry: number;
}

export class MemoryStatsStore implements StatsStore {
  private readonly hours = new Map<number, HourStats>();
  private readonly sessions = new Map<string, Indexed>();
  private readonly platforms = new Map<string, number>();
  private readonly subjects = new Map<string, number>();
  /** No indexed session expires before this (a lower bound), so most writes skip the sweep. */
  private nextExpiry = Infinity;

  /** Applies the ops of a batch of audit events, in order, then ends (a batch of) the sessions expired at `now`. */
  apply(ops: readonly StatsOp[], now: number): void {
    for (const o of ops) {
      switch (o.op) {
        case "count": {
          const h = this.hour(o.at, now);
          if (h) h.counts[o.counter] += o.n;
          break;
        }
        case "open":
          if (o.expiry > now && !this.sessions.has(o.id) && (this.subjects.get(o.id.slice(0, TAG)) ?? 0) < STATS_SUBJECT_SESSIONS_MAX) {
            this.sessions.set(o.id, { platform: o.platform, createdAt: o.createdAt, expiresAt: o.expiresAt, expiry: o.expiry });
            this.nextExpiry = Math.min(this.nextExpiry, o.expiry);
            bump(this.platforms, o.platform, 1);
            bump(this.subjects, o.id.slice(0, TAG), 1);
          }
          break;
        case "touch": {
          const s = this.sessions.get(o.id);
          if (s) s.expiry = Math.min(o.expiry, s.expiresAt);
          if (s) this.nextExpiry = Math.min(this.nextExpiry, s.expiry);
          break;
        }
        case "end":
          this.finish(o.id, o.at, now);
          break;
        case "closed":
          if (this.sessions.has(o.id)) this.finish(o.id, o.at, now);
          else this.ended(o.at, o, now);
          break;
        case "end_subject":
          if (o.ids !== undefined) {
            for (const id of o.ids) this.finish(id, o.at, now);
          } else {
            for (const [id, s] of this.sessions) if (id.startsWith(o.tag) && s.createdAt <= o.at) this.finish(id, o.at, now);
          }
          break;
      }
    }
    this.sweep(now, STATS_SWEEP_BATCH);
    for (const h of this.hours.keys()) if (h + STATS_KEEP_MS <= now) this.hours.delete(h);
  }

  async readStats(q: { fromHour: number; toHour: number; now: number }): Promise<StatsSnapshot> {
    while (this.sweep(q.now, STATS_SWEEP_BATCH) === STATS_SWEEP_BATCH);
    const hours = hoursBetween(q.fromHour, q.toHour).map((hour) => {
      const h = hour + STATS_KEEP_MS > q.now ? this.hours.get(hour) : undefined;
      return h ? structuredClone(h) : { hour, counts: emptyCounts(), durations: emptyDurations() };
    });
    return {
      live: { sessions: this.sessions.size, byPlatform: Object.fromEntries(this.platforms), subjects: this.subjects.size },
      hours,
    };
  }

  /**
   * Ends up to `limit` sessions expired at `now` (earliest expiry first, then by id in the index's order, as Redis's
   * sweep takes them), each at its expiry; returns how many.
   */
  sweep(now: number, limit = Infinity): number {
    if (now < this.nextExpiry) return 0;
    let next = Infinity;
    for (const s of this.sessions.values()) if (s.expiry > now) next = Math.min(next, s.expiry);
    const dead = [...this.sessions]
      .filter(([, s]) => s.expiry <= now)
      .sort(([a, x], [b, y]) => x.expiry - y.expiry || compareIndexedIds(a, b))
      .slice(0, limit);
    for (const [id, s] of dead) this.finish(id, s.expiry, now);
    // Sessions left over (beyond the limit) are still due: sweep again next time.
    this.nextExpiry = dead.length === limit ? now : next;
    return dead.length;
  }

  size(): { statsHours: number; statsSessions: number } {
    return { statsHours: this.hours.size, statsSessions: this.sessions.size };
  }

  private finish(id: string, at: number, now: number): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    bump(this.platforms, s.platform, -1);
    bump(this.subjects, id.slice(0, TAG), -1);
    this.ended(at, s, now);
  }

  /** Counts the duration of a session ended at `at`, or at its expiry if that came first, in the hour it ended. */
  private ended(at: number, s: { createdAt: number; expiry: number }, now: number): void {
    const end = Math.min(at, s.expiry);
    const h = this.hour(end, now);
    if (h) addDuration(h.durations, end - s.createdAt);
  }

  /** The record of the hour of `at`, made if needed; undefined if that hour is no longer kept at `now`. */
  private hour(at: number, now: number): HourStats | undefined {
    const hour = hourOf(at);
    if (hour + STATS_KEEP_MS <= now) return undefined;
    let h = this.hours.get(hour);
    if (!h) this.hours.set(hour, (h = { hour, counts: emptyCounts(), durations: emptyDurations() }));
    return h;
  }
}

/** Characters of the subject tag a session id starts with (ids.ts). */
const TAG = 16;

function bump(m: Map<string, number>, key: string, by: number): void {
  const n = (m.get(key) ?? 0) + by;
  if (n > 0) m.set(key, n);
  else m.delete(key);
}
