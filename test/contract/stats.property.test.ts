/**
 * The statistics of the memory and the Redis store (src/store/memory/stats.ts and its Lua twin, src/store/redis/stats.ts)
 * held to each other: random sequences of audit events (logins on a few subjects with several platforms, one or many
 * at once, so that a subject has more sessions than the Redis index looks up one by one; refreshes moving the idle
 * expiry either way; revocations, evictions, reuse; logout everywhere with the ids of some of the subject's sessions
 * or without ids; counted-only events), appended one or several per batch, some late, between clock moves; every
 * readStats (live sessions, platforms, subjects, hourly counts and durations) must answer the same on both.
 *
 * Every instant is a whole minute, so no Redis TTL the scripts set (index keys: until their latest session; hourly
 * keys: 8 days after their hour) is shorter than a minute of real time: Redis never expires a key during a run that
 * the memory store, which has no clock of its own here, would still hold.
 *
 * Replay a failure: TESSERA_STATS_DIFF_SEED=<seed> npx vitest run <this file>. More runs: TESSERA_STATS_DIFF_RUNS=<n>.
 */
import fc from "fast-check";
import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { AUDIT_TYPES, type AuditEvent, type AuditType } from "../../src/domain/audit.js";
import { newSessionId } from "../../src/domain/ids.js";
import { HOUR_MS, hourOf } from "../../src/domain/stats.js";
import { MemoryStore } from "../../src/store/memory.js";
import { RedisStore } from "../../src/store/redis.js";
import { sharedRedis } from "./backends.js";

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;
const SUBJECTS = ["alice", "bob", "carol"];
const PLATFORMS = ["ios", "web", "", "andrôid-tablet"];
const RUNS = Number(process.env.TESSERA_STATS_DIFF_RUNS ?? 60);
const SEED = process.env.TESSERA_STATS_DIFF_SEED === undefined ? undefined : Number(process.env.TESSERA_STATS_DIFF_SEED);

type Op =
  | { op: "issue"; subject: number; platform: number; idle: number; life: number; times: number }
  | { op: "refresh"; s: number; idle: number; replay: boolean }
  | { op: "end"; s: number; type: "session_revoked" | "session_evicted" | "refresh_reuse_detected"; none: boolean }
  | { op: "logout"; subject: number; ids: boolean[] | null }
  | { op: "count"; type: "token_revoked" | "suspicious_activity" | "rate_limited" }
  | { op: "flush"; lateMin: number }
  | { op: "advance"; min: number }
  | { op: "read"; hours: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant("issue" as const),
      subject: fc.nat({ max: 2 }),
      platform: fc.nat({ max: 3 }),
      idle: fc.constantFrom(5, 30, 120, 1500),
      life: fc.constantFrom(60, 600, 3000),
      times: fc.oneof(fc.constant(1), fc.integer({ min: 2, max: 14 })),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ op: fc.constant("refresh" as const), s: fc.nat(), idle: fc.integer({ min: -10, max: 200 }), replay: fc.boolean() }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant("end" as const),
      s: fc.nat(),
      type: fc.constantFrom("session_revoked" as const, "session_evicted" as const, "refresh_reuse_detected" as const),
      none: fc.boolean(),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant("logout" as const),
      subject: fc.nat({ max: 2 }),
      ids: fc.option(fc.array(fc.boolean(), { maxLength: 8 }), { nil: null }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constant("count" as const),
      type: fc.constantFrom("token_revoked" as const, "suspicious_activity" as const, "rate_limited" as const),
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant("flush" as const), lateMin: fc.nat({ max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant("advance" as const), min: fc.constantFrom(1, 4, 29, 60, 181, 1441) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant("read" as const), hours: fc.nat({ max: 30 }) }) },
);

class Run {
  now = T0;
  readonly memory = new MemoryStore();
  readonly redis: RedisStore;
  /** Sessions opened so far (ended ones too: events may name them again). */
  private readonly sessions: { id: string; subject: string }[] = [];
  /** Events recorded since the last flush. */
  private pending: AuditEvent[] = [];
  readonly log: string[] = [];

  constructor(
    client: Redis,
    readonly prefix: string,
  ) {
    this.redis = new RedisStore(client, { prefix });
  }

  async step(o: Op): Promise<void> {
    this.log.push(`T0+${(this.now - T0) / MIN}m ${JSON.stringify(o)}`);
    switch (o.op) {
      case "issue": {
        // `times` logins of the subject at once (several sessions expiring together), platforms taken in turn.
        const subject = SUBJECTS[o.subject]!;
        for (let i = 0; i < o.times; i++) {
          const id = newSessionId(subject);
          this.sessions.push({ id, subject });
          this.event("token_issued", subject, id, {
            platform: PLATFORMS[(o.platform + i) % PLATFORMS.length]!,
            expires_at: String(this.now + o.life * MIN),
            idle_expires_at: String(this.now + o.idle * MIN),
          });
        }
        break;
      }
      case "refresh": {
        const s = this.pick(o.s);
        const detail: Record<string, string> = o.replay ? { grace_replay: "true" } : { idle_expires_at: String(this.now + o.idle * MIN) };
        if (s) this.event("token_refreshed", s.subject, s.id, detail);
        break;
      }
      case "end": {
        const s = this.pick(o.s);
        if (s) this.event(o.type, s.subject, s.id, o.type === "session_revoked" ? { sessions: o.none ? "0" : "1" } : {});
        break;
      }
      case "logout": {
        const subject = SUBJECTS[o.subject]!;
        const mine = this.sessions.filter((s) => s.subject === subject).map((s) => s.id);
        const ended = o.ids === null ? undefined : mine.filter((_, i) => o.ids![i % o.ids!.length] ?? false);
        this.event("subject_revoked", subject, "", { sessions: String(ended?.length ?? 0) }, ended);
        break;
      }
      case "count":
        this.event(o.type, SUBJECTS[0]!, "", o.type === "rate_limited" ? { limit: "subject_lockout" } : {});
        break;
      case "flush": {
        const events = this.pending;
        this.pending = [];
        if (events.length === 0) break;
        // A late batch: its events happened up to lateMin minutes before the flush.
        const bounds = { now: this.now + o.lateMin * MIN, maxEvents: 100_000, maxAgeMs: 30 * 24 * HOUR_MS, riskWindowMs: 15 * MIN };
        await this.memory.appendAudit(events.map(copy), bounds);
        await this.redis.appendAudit(events.map(copy), bounds);
        this.now = bounds.now;
        break;
      }
      case "advance":
        this.now += o.min * MIN;
        break;
      case "read":
        await this.compare(hourOf(this.now) - o.hours * HOUR_MS, hourOf(this.now));
        break;
    }
  }

  async compare(fromHour: number, toHour: number): Promise<void> {
    const q = { fromHour, toHour, now: this.now };
    const [mine, theirs] = [await this.memory.readStats(q), await this.redis.readStats(q)];
    expect(theirs, `readStats ${JSON.stringify(q)} after:\n${this.log.join("\n")}`).toEqual(mine);
  }

  /** The `n`th session opened (modulo how many), or none yet. */
  private pick(n: number): { id: string; subject: string } | undefined {
    return this.sessions.length === 0 ? undefined : this.sessions[n % this.sessions.length];
  }

  private event(type: AuditType, subject: string, sessionId: string, detail: Record<string, string>, endedSessions?: string[]): void {
    this.pending.push({
      type,
      severity: AUDIT_TYPES[type],
      at: this.now,
      caller: "gateway",
      subject,
      sessionId,
      ip: "203.0.113.7",
      userAgent: "ua",
      deviceId: "d",
      requestId: "r",
      detail,
      ...(endedSessions !== undefined && { endedSessions }),
    });
  }

  async close(client: Redis): Promise<void> {
    await this.memory.close();
    let cursor = "0";
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `${this.prefix}*`, "COUNT", 1000);
      if (keys.length > 0) await client.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  }
}

function copy(e: AuditEvent): AuditEvent {
  return { ...e, detail: { ...e.detail }, ...(e.endedSessions !== undefined && { endedSessions: [...e.endedSessions] }) };
}

describe("statistics of the memory and Redis stores, differentially", () => {
  const redis = sharedRedis("stats-diff");
  let runs = 0;

  it("answer every readStats alike under random events, batches and clock moves", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 60 }), async (ops) => {
        const run = new Run(redis.client, `${redis.prefix}${++runs}:`);
        try {
          for (const o of ops) await run.step(o);
          await run.step({ op: "flush", lateMin: 0 });
          await run.compare(hourOf(run.now) - 48 * HOUR_MS, hourOf(run.now));
          // Everything expired: every session ended at its expiry, in the hour of it.
          run.now += 4 * 24 * HOUR_MS;
          await run.compare(hourOf(run.now) - 7 * 24 * HOUR_MS, hourOf(run.now));
        } finally {
          await run.close(redis.client);
        }
      }),
      { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
    );
  }, 120_000);
});
