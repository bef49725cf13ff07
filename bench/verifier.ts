/**
 * The `verifier` part of `npm run bench` (bench/run.ts runs it; docs/performance.md explains the method): the SDK's
 * in-process verifier, `createVerifier({ mode: "local" })`, which runs the sidecar's code (JWKS, revocation feed,
 * the shared Introspector) inside the service's own process. Not to be confused with bench/verify.ts, which checks
 * the answers of the h2load scenarios.
 *
 * An authority on a key prefix of its own (so its feed holds only this part's revocations), then two child processes
 * of bench/verifier-worker.ts in turn, each with a verifier of its own on it:
 * - throughput: one valid access token verified back to back; verifications per CPU second of the worker process;
 * - visibility: how long a revocation acknowledged by the authority takes until the verifier answers revoked.
 */
import type { Redis } from "ioredis";
import { VARIABLES } from "../src/config/config.js";
import { readAll } from "../src/config/variable.js";
import { SIDECAR_VARIABLES } from "../src/sidecar/config.js";
import { startNode, type Child } from "./procs.js";
import type { CpuShare, VerifierReport, VerifierThroughput, VerifierVisibility } from "./report.js";
import { mintAccessToken } from "./scenarios.js";
import { cores, cpuNow, type Proc } from "./sidecar.js";
import type { ThroughputResult, VerifierSettings, VisibilityResult, WorkerEvent, WorkerSpec } from "./verifier-worker.js";
import { GRANT } from "./workloads.js";

const WORKER = "bench/verifier-worker.ts";
const SUBJECT = "bench-verifier";
/** The scope a resource server of GRANT's audience would require. */
const REQUIRED_SCOPES = ["orders:read"];

export interface VerifierOptions {
  warmupMs: number;
  windowMs: number;
  revocations: number;
  redis: Redis;
  log: (line: string) => void;
  /** Waits for a quiet machine before a measurement. */
  quiet: (name: string) => Promise<void>;
  /** Whether to measure again after other processes took `otherCores` during the window (the run's retry budget). */
  retry: (name: string, otherCores: number) => boolean;
  timeoutMs?: number;
}

/** Runs one worker; its result, and the cores used between its `measuring` and `measured` events. */
async function runWorker(spec: WorkerSpec, authority: Proc, redis: Redis, limitMs: number) {
  let result: ThroughputResult | VisibilityResult | undefined;
  let cpu: Awaited<ReturnType<typeof cpuNow>> | undefined;
  let share: CpuShare | undefined;
  let pending = Promise.resolve();
  const worker: Child = startNode(`verifier (${spec.mode})`, WORKER, [JSON.stringify(spec)], {
    onLine(line) {
      let event: WorkerEvent;
      try {
        event = JSON.parse(line) as WorkerEvent;
      } catch {
        return; // not ours
      }
      if (event.type === "result") result = event.result;
      else if (event.type === "measuring") pending = pending.then(async () => void (cpu = await cpuNow([authority.child.pid, worker.pid], redis)));
      else if (event.type === "measured") pending = pending.then(async () => void (share = await cpu?.since()));
    },
  });
  const timer = setTimeout(() => worker.signal("SIGKILL"), limitMs);
  const code = await worker.exited;
  clearTimeout(timer);
  await pending;
  if (code !== 0 || !result || !share) throw new Error(`verifier worker (${spec.mode}) exited with ${code}:\n${worker.stderr.join("\n")}`);
  return { result, cpu: share };
}

export async function verifier(startAuthority: () => Promise<Proc>, opts: VerifierOptions): Promise<VerifierReport> {
  const env = readAll({ issuer: VARIABLES.tokens.issuer, clockSkewMs: VARIABLES.tokens.clockSkewMs, maxStalenessMs: SIDECAR_VARIABLES.maxStalenessMs }, process.env);
  const authority = await startAuthority();
  const settings: VerifierSettings = { authorityUrl: authority.url, ...env };
  const report: VerifierReport = {};
  try {
    const token = await mintAccessToken(authority.url, SUBJECT);
    const audience = GRANT.audience[0]!;
    for (;;) {
      await opts.quiet("verifier throughput");
      const spec: WorkerSpec = { ...settings, mode: "throughput", token, subject: SUBJECT, audience, requiredScopes: REQUIRED_SCOPES, warmupMs: opts.warmupMs, windowMs: opts.windowMs };
      const { result, cpu } = await runWorker(spec, authority, opts.redis, 60_000 + opts.warmupMs + opts.windowMs);
      const r = result as ThroughputResult;
      const { firstWrong, ...figures } = r;
      const failed = r.wrong > 0 ? `${r.wrong} answers not active (the first: ${firstWrong})` : r.verifications === 0 ? "no verification in the window" : undefined;
      const t: VerifierThroughput = { ...figures, cpu, ...(failed ? { failed } : {}) };
      opts.log(
        `verifier throughput: ${failed ? `FAILED (${failed}); ` : ""}${t.verifications} verifications in ${t.wallSeconds.toFixed(2)} s on ${t.cpuSeconds.toFixed(2)} s of the worker's CPU: ` +
          `${(t.verifications / t.cpuSeconds).toFixed(0)} per CPU second, ${((t.cpuSeconds * 1e6) / t.verifications).toFixed(2)} µs each (${cores(cpu)})`,
      );
      report.throughput = t;
      if (!opts.retry("verifier throughput", cpu.otherCores)) break;
    }

    await opts.quiet("verifier visibility");
    const spec: WorkerSpec = { ...settings, mode: "visibility", revocations: opts.revocations, timeoutMs: opts.timeoutMs ?? 10_000 };
    const { result, cpu } = await runWorker(spec, authority, opts.redis, 120_000 + opts.revocations * 1_000);
    const { failures, ...v } = result as VisibilityResult;
    const vis: VerifierVisibility = {
      ...v,
      cpu,
      ...(failures.length > 0 ? { failed: `${failures.length} of ${v.revocations} revocations: ${failures.slice(0, 3).join("; ")}` } : {}),
    };
    opts.log(
      `verifier visibility: ${vis.failed ? `FAILED (${vis.failed}); ` : ""}${vis.all.count} revocations: p50 ${vis.all.p50.toFixed(3)} ms, p99 ${vis.all.p99.toFixed(3)} ms, max ${vis.all.max.toFixed(3)} ms ` +
        `(one poll p50 ${(vis.poll.p50 * 1000).toFixed(1)} µs over ${vis.polls} polls; Revoke p50 ${vis.revoke.p50.toFixed(2)} ms; ${vis.atFirstPoll} seen on the first poll; ${cores(cpu)})`,
    );
    report.visibility = vis;
    return report;
  } finally {
    await authority.child.stop();
  }
}
