/**
 * The load generator, a process of its own: `node --import tsx bench/load.ts '<LoadSpec as JSON>'`. Sets its workload
 * up, warms up, then measures one window and prints JSON lines (see LoadEvent) on stdout: "measuring" when the
 * window opens, "measured" when it closes (so the orchestrator can read Redis and /proc counters at those instants),
 * then the result.
 *
 * Closed loop: `concurrency` slots, each making its next call as soon as the last one is answered. Fixed rate
 * (`rate`): calls are sent on a schedule whatever the answers do, and latency counts from the planned send time, so a
 * slow server cannot hide its queueing by slowing the generator down (no coordinated omission).
 */
import { hrtime } from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { startLoopDelay } from "./loop-delay.js";
import type { LoadEvent, LoadResult, LoadSpec, LoopDelay } from "./spec.js";
import { openWorkload, type Workload } from "./workloads.js";

const BASE = hrtime.bigint();
const BASE_EPOCH = performance.timeOrigin + performance.now();
/** Milliseconds since this process started, with sub-microsecond resolution. */
const now = (): number => Number(hrtime.bigint() - BASE) / 1e6;

/**
 * Collects the calls of the measurement window. By default a call counts if it completes inside the window (closed
 * loop); `bySendTime` counts the calls planned inside it, however late they complete (fixed rate).
 */
class Recorder {
  private started = Infinity;
  private ended = Infinity;
  private latencies: number[] = [];
  private errors = 0;
  private readonly errorSamples = new Set<string>();
  private readonly outcomes: Record<string, number> = {};
  skipped = 0;
  private stopLoopDelay: (() => LoopDelay) | undefined;
  private loopDelay: LoopDelay | undefined;

  constructor(private readonly bySendTime = false) {}

  start(at = now()): void {
    this.started = at;
    this.stopLoopDelay = startLoopDelay();
    emit({ type: "measuring" });
  }

  stop(at = now()): void {
    this.ended = at;
    this.loopDelay = this.stopLoopDelay?.();
    emit({ type: "measured" });
  }

  ok(sentAt: number, outcome: string): void {
    if (!this.counts(sentAt)) return;
    this.latencies.push(now() - sentAt);
    this.outcomes[outcome] = (this.outcomes[outcome] ?? 0) + 1;
  }

  fail(sentAt: number, err: unknown): void {
    if (!this.counts(sentAt)) return;
    this.latencies.push(now() - sentAt);
    this.errors++;
    if (this.errorSamples.size < 5) this.errorSamples.add(err instanceof Error ? err.message : String(err));
  }

  private counts(sentAt: number): boolean {
    const t = this.bySendTime ? sentAt : now();
    return this.started <= t && t < this.ended;
  }

  result(spec: LoadSpec): LoadResult {
    const sorted = Float64Array.from(this.latencies).sort();
    const seconds = (this.ended - this.started) / 1000;
    return {
      workload: spec.workload,
      requests: sorted.length,
      errors: this.errors,
      errorSamples: [...this.errorSamples],
      seconds,
      window: { start: BASE_EPOCH + this.started, end: BASE_EPOCH + this.ended },
      rps: sorted.length / seconds,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      p999: percentile(sorted, 0.999),
      max: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
      outcomes: this.outcomes,
      ...(spec.rate === undefined ? {} : { offeredRps: spec.rate, skipped: this.skipped }),
      ...(this.loopDelay ? { loopDelay: this.loopDelay } : {}),
    };
  }
}

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function emit(event: LoadEvent): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

/** `concurrency` slots calling back to back; warm-up, then one window. */
async function closedLoop(spec: LoadSpec, workload: Workload, rec: Recorder): Promise<void> {
  let stopped = false;
  const slot = async (i: number) => {
    while (!stopped) {
      const sentAt = now();
      await workload.call(i).then((o) => rec.ok(sentAt, o), (e: unknown) => rec.fail(sentAt, e));
    }
  };
  const slots = Array.from({ length: spec.concurrency }, (_, i) => slot(i));
  await sleep(spec.warmupMs);
  rec.start();
  await sleep(spec.durationMs);
  rec.stop();
  stopped = true;
  await Promise.all(slots);
}

/** Exactly `count` calls, `concurrency` at a time, all recorded. */
async function counted(spec: LoadSpec, count: number, workload: Workload, rec: Recorder): Promise<void> {
  let next = 0;
  const slot = async (i: number) => {
    while (next < count) {
      next++;
      const sentAt = now();
      await workload.call(i).then((o) => rec.ok(sentAt, o), (e: unknown) => rec.fail(sentAt, e));
    }
  };
  rec.start();
  await Promise.all(Array.from({ length: Math.min(spec.concurrency, count) }, (_, i) => slot(i)));
  rec.stop();
}

/**
 * Open loop at `rate` calls per second for warm-up + window. A timer sends every call whose planned time has come;
 * a call that would exceed `concurrency` in flight is not sent and counts as skipped (the server is not keeping up).
 */
async function fixedRate(spec: LoadSpec, rate: number, workload: Workload, rec: Recorder): Promise<void> {
  const interval = 1000 / rate;
  const measureAt = now() + spec.warmupMs;
  const end = measureAt + spec.durationMs;
  let planned = now();
  let inFlight = 0;
  let sent = 0;
  let measuring = false;
  const calls = new Set<Promise<void>>();
  const send = (sentAt: number) => {
    inFlight++;
    const call: Promise<void> = workload
      .call(sent++ % spec.concurrency)
      .then((o) => rec.ok(sentAt, o), (e: unknown) => rec.fail(sentAt, e))
      .finally(() => {
        inFlight--;
        calls.delete(call);
      });
    calls.add(call);
  };
  await new Promise<void>((done) => {
    const tick = () => {
      for (const t = now(); planned <= t && planned < end; planned += interval) {
        if (!measuring && planned >= measureAt) {
          measuring = true;
          rec.start(measureAt);
        }
        if (inFlight < spec.concurrency) send(planned);
        else if (planned >= measureAt) rec.skipped++;
      }
      if (planned < end) setTimeout(tick, Math.max(0, planned - now()));
      else done();
    };
    tick();
  });
  rec.stop(end);
  await Promise.all(calls);
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "") as LoadSpec;
  const workload = await openWorkload(spec);
  const rec = new Recorder(spec.rate !== undefined && spec.count === undefined);
  if (spec.count !== undefined) await counted(spec, spec.count, workload, rec);
  else if (spec.rate !== undefined) await fixedRate(spec, spec.rate, workload, rec);
  else await closedLoop(spec, workload, rec);
  emit({ type: "result", result: rec.result(spec) });
  await workload.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
