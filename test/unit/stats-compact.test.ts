/**
 * compactStatsOps (src/domain/stats.ts): a batch's statistics ops, compacted, change the statistics exactly as the
 * ops applied one by one. Random batches of raw ops (logins, touches moving the expiry either way, ends, logout
 * everywhere with or without ids, counts across hours, the same session opened twice) go to two memory statistics
 * stores, one as they are, one compacted; every read (live sessions, platforms, subjects, hourly counts and
 * durations), at the batch's instant and later, must answer the same. The Redis twin applies the same ops
 * (test/contract/stats.property.test.ts holds it to the memory store).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { newSessionId, subjectTag } from "../../src/domain/ids.js";
import { HOUR_MS, compactStatsOps, hourOf, type StatsOp } from "../../src/domain/stats.js";
import { MemoryStatsStore } from "../../src/store/memory/stats.js";

const T0 = Date.UTC(2026, 0, 1, 0, 50);
const MIN = 60_000;
const SUBJECTS = ["alice", "bob"];
const PLATFORMS = ["ios", "web", ""];

type Step =
  | { kind: "open"; subject: number; platform: number; idle: number; life: number; late: number }
  | { kind: "touch"; s: number; idle: number }
  | { kind: "end"; s: number; late: number }
  | { kind: "logout"; subject: number; ids: boolean[] | null; late: number }
  | { kind: "count"; late: number; n: number }
  | { kind: "again"; s: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant("open" as const),
      subject: fc.nat({ max: 1 }),
      platform: fc.nat({ max: 2 }),
      idle: fc.integer({ min: -5, max: 90 }),
      life: fc.integer({ min: 1, max: 200 }),
      late: fc.nat({ max: 30 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("touch" as const), s: fc.nat(), idle: fc.integer({ min: -20, max: 120 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("end" as const), s: fc.nat(), late: fc.integer({ min: -20, max: 30 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("logout" as const),
      subject: fc.nat({ max: 1 }),
      ids: fc.option(fc.array(fc.boolean(), { maxLength: 6 }), { nil: null }),
      late: fc.integer({ min: -20, max: 30 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("count" as const), late: fc.integer({ min: -90, max: 30 }), n: fc.integer({ min: 1, max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("again" as const), s: fc.nat() }) },
);

/** The ops of a batch flushed at `now` (instants up to an hour and a half before it, some after its hour began). */
function opsOf(steps: Step[], now: number, known: { id: string; subject: string; open: StatsOp }[]): StatsOp[] {
  const ops: StatsOp[] = [];
  const pick = (s: number) => (known.length === 0 ? undefined : known[s % known.length]);
  const at = (late: number) => now - 40 * MIN + late * MIN;
  for (const step of steps) {
    switch (step.kind) {
      case "open": {
        const subject = SUBJECTS[step.subject]!;
        const createdAt = at(step.late);
        const expiresAt = createdAt + step.life * MIN;
        const id = newSessionId(subject);
        const open: StatsOp = {
          op: "open",
          id,
          platform: PLATFORMS[step.platform]!,
          createdAt,
          expiresAt,
          expiry: Math.min(createdAt + step.idle * MIN, expiresAt),
        };
        known.push({ id, subject, open });
        ops.push(open);
        break;
      }
      case "again": {
        const s = pick(step.s);
        if (s) ops.push(s.open);
        break;
      }
      case "touch": {
        const s = pick(step.s);
        if (s) ops.push({ op: "touch", id: s.id, expiry: now - 30 * MIN + step.idle * MIN });
        break;
      }
      case "end": {
        const s = pick(step.s);
        if (s) ops.push({ op: "end", id: s.id, at: at(step.late) });
        break;
      }
      case "logout": {
        const subject = SUBJECTS[step.subject]!;
        const mine = known.filter((k) => k.subject === subject).map((k) => k.id);
        const ids = step.ids === null ? undefined : mine.filter((_, i) => step.ids![i % step.ids!.length] ?? false);
        ops.push({ op: "end_subject", tag: subjectTag(subject), at: at(step.late), ...(ids !== undefined && { ids }) });
        break;
      }
      case "count":
        ops.push({ op: "count", at: at(step.late), counter: step.n === 3 ? "evictions" : "logins", n: step.n });
        break;
    }
  }
  return ops;
}

async function read(store: MemoryStatsStore, now: number) {
  return store.readStats({ fromHour: hourOf(now) - 3 * HOUR_MS, toHour: hourOf(now) + 4 * HOUR_MS, now });
}

describe("compactStatsOps", () => {
  it("changes the statistics exactly as the ops one by one, in fewer ops", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(stepArb, { minLength: 1, maxLength: 40 }), { minLength: 1, maxLength: 5 }), async (batches) => {
        const plain = new MemoryStatsStore();
        const compact = new MemoryStatsStore();
        const known: { id: string; subject: string; open: StatsOp }[] = [];
        let now = T0;
        for (const steps of batches) {
          const ops = opsOf(steps, now, known);
          const compacted = compactStatsOps(ops, now);
          expect(compacted.length).toBeLessThanOrEqual(ops.length);
          plain.apply(ops, now);
          compact.apply(compacted, now);
          expect(await read(compact, now)).toEqual(await read(plain, now));
          now += 25 * MIN;
        }
        for (const later of [now, now + 2 * HOUR_MS]) expect(await read(compact, later)).toEqual(await read(plain, later));
      }),
      { numRuns: 300 },
    );
  });

  it("leaves the live sessions as the ops one by one when a batch is written again after part of it was applied", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ steps: fc.array(stepArb, { minLength: 1, maxLength: 40 }), applied: fc.double({ min: 0, max: 1, noNaN: true }) }), {
          minLength: 1,
          maxLength: 4,
        }),
        async (batches) => {
          const plain = new MemoryStatsStore();
          const compact = new MemoryStatsStore();
          const known: { id: string; subject: string; open: StatsOp }[] = [];
          let now = T0;
          for (const { steps, applied } of batches) {
            const ops = opsOf(steps, now, known);
            const compacted = compactStatsOps(ops, now);
            // The first write got part of the way (counts then count twice, on both: only the live index is compared).
            plain.apply(ops.slice(0, Math.floor(applied * ops.length)), now);
            compact.apply(compacted.slice(0, Math.floor(applied * compacted.length)), now);
            plain.apply(ops, now);
            compact.apply(compacted, now);
            now += 25 * MIN;
            expect((await read(compact, now)).live).toEqual((await read(plain, now)).live);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it("turns a session opened and evicted in one batch into its duration, and sums counts of one hour", () => {
    const now = T0;
    const a = newSessionId("alice");
    const b = newSessionId("alice");
    const ops: StatsOp[] = [
      { op: "count", at: now - 2_000, counter: "logins", n: 1 },
      { op: "open", id: a, platform: "ios", createdAt: now - 2_000, expiresAt: now + HOUR_MS, expiry: now + HOUR_MS },
      { op: "count", at: now - 1_000, counter: "logins", n: 1 },
      { op: "open", id: b, platform: "ios", createdAt: now - 1_000, expiresAt: now + HOUR_MS, expiry: now + HOUR_MS },
      { op: "count", at: now - 500, counter: "evictions", n: 1 },
      { op: "end", id: a, at: now - 500 },
      // Counted in the hour before: not summed with this hour's.
      { op: "count", at: now - HOUR_MS, counter: "logins", n: 1 },
    ];
    expect(compactStatsOps(ops, now)).toEqual([
      { op: "count", at: now - 2_000, counter: "logins", n: 2 },
      ops[3],
      ops[4],
      { op: "closed", id: a, at: now - 500, createdAt: now - 2_000, expiry: now + HOUR_MS },
      ops[6],
    ]);
    // The input is left as it was.
    expect(ops[0]).toEqual({ op: "count", at: now - 2_000, counter: "logins", n: 1 });
  });

  it("leaves a session opened already expired, or opened twice, as it is", () => {
    const now = T0;
    const a = newSessionId("alice");
    const b = newSessionId("bob");
    const openA: StatsOp = { op: "open", id: a, platform: "", createdAt: now - 9_000, expiresAt: now - 1_000, expiry: now - 1_000 };
    const openB: StatsOp = { op: "open", id: b, platform: "", createdAt: now - 9_000, expiresAt: now + 9_000, expiry: now + 9_000 };
    const ops: StatsOp[] = [openA, { op: "end", id: a, at: now }, openB, openB, { op: "end", id: b, at: now }];
    expect(compactStatsOps(ops, now)).toEqual(ops);
  });
});
