/**
 * `npm run bench`: starts a throwaway Redis and the servers under test (each its own process), drives them with
 * h2load (nghttp2's C load generator, bench/h2load.ts) wherever one fixed request body will do, and with the Node
 * generator (bench/load.ts, a process per scenario) where it will not (Refresh: each refresh token can be used once;
 * Issue with a new subject per call, the Introspect mix); checks the answers around every window (bench/verify.ts); writes bench/results.md and prints
 * its main table. Every child process is stopped at the end, on an error too. docs/performance.md explains the method.
 *
 * Knobs (environment):
 * - BENCH_CONNECTIONS (8) and BENCH_STREAMS (8): h2load's -c and -m (one h2load thread, -t 1), so 64 calls in flight;
 *   the Node generator uses as many HTTP/2 connections and BENCH_CONCURRENCY (connections × streams) calls in flight.
 * - BENCH_H1_CONNECTIONS (connections × streams): h2load --h1 connections for the HTTP/1.1 peer (one call in flight on
 *   each, so the same 64 in flight).
 * - BENCH_RATE_STREAMS (64): -m of the fixed-rate passes, the cap on calls in flight per connection there.
 * - BENCH_RATE_ROUNDS (5): the fixed-rate passes' rounds (Tessera, on Redis and on its memory store, the grpc-js
 *   no-op and node:http2 take turns; each is reported by its round with the median p99). Five, not three: one
 *   server's p99 moves by 2 x between windows.
 * - BENCH_WINDOW_MS (10000), BENCH_WARMUP_MS (2000), BENCH_BRACKET_MS (5000, the short grpc-js no-op passes between
 *   Tessera's throughput scenarios, after a 1 s warm-up).
 * - BENCH_CLUSTER_ROUNDS (3) and BENCH_CLUSTER_WINDOW_MS (6000): the cluster part's rounds (each starts both
 *   authorities afresh) and the window of each of its passes.
 * - BENCH_RATE: the fixed rate (calls/s) of the latency passes; default: half of Tessera's Introspect maximum.
 * - BENCH_VISIBILITY_REVOCATIONS (300: revocations timed by visibility, and by verifier), BENCH_MEMORY_REVOCATIONS
 *   (100000: live revocations sidecar-memory makes the sidecar hold).
 * - BENCH_VERIFIER_WINDOW_MS (3000) and BENCH_VERIFIER_WARMUP_MS (1000): the in-process verifier's throughput window.
 * - BENCH_SESSIONS (20000, for Redis memory per session), BENCH_CLIENT (lean; "connect": the Node generator on
 *   connect-node's createGrpcTransport), BENCH_H2LOAD (path of h2load; default: on $PATH, else /usr/bin/h2load).
 * - BENCH_ONLY: a comma-separated subset of the parts below (or a group: "h2load", "node"); a subset run writes its
 *   report to BENCH_OUT (default: <tmpdir>/tessera-bench-partial.md), not bench/results.md. BENCH_ONLY=variants
 *   (`npm run bench:variants`) runs the connect-node variants instead (bench/variants.md, Node generator).
 *   Parts: grpcjs, connect (the connect-node no-op over gRPC and the Connect protocol), introspect,
 *   connect-introspect, issue, rate (Introspect and the grpc-js no-op at a fixed rate), memory (Tessera on its
 *   in-process memory store: its Introspect at full speed, and in the fixed-rate rounds with rate), peer (oidc-provider),
 *   refresh, issue-fresh, mix (Node generator), redis (round trips, memory per session), profiles; the sidecar
 *   (bench/sidecar.ts): sidecar (its Introspect under h2load), visibility (how soon 3 sidecars see a revocation),
 *   sidecar-memory (its memory per 100 000 live revocations); verifier (bench/verifier.ts: the SDK's in-process
 *   verifier, createVerifier mode "local", in a child process of its own: verifications per CPU second, and how soon it
 *   sees a revocation). Tessera's throughput scenarios and sidecar bring the grpc-js no-op along (their ratio needs
 *   it), and rate brings introspect (unless BENCH_RATE is set).
 * TESSERA_* variables reach Tessera as they are (TESSERA_GRPC_FAST_PATH=false, for instance).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, RedisCluster, RedisServer } from "../test/helpers/redis-server.js";
import { findH2load, MissingH2loadError, runH2load, WindowMissed, type H2loadLoad, type H2load } from "./h2load.js";
import { summarise, type CpuProfile } from "./profile.js";
import {
  cpuSeconds,
  machineBusySeconds,
  memory,
  onStop,
  ROOT,
  RssSampler,
  startNode,
  stopAll,
  treeCpuSeconds,
  waitForQuiet,
  type Child,
} from "./procs.js";
import { commandsBetween, keyKinds, sample, sampleAll, trafficIn, watchTraffic, type RedisSample, type Traffic } from "./redis-stats.js";
import { markdown, resultsTable, sidecarTable, targetsTable, type Checks, type Measured, type Report } from "./report.js";
import { introspectScenario, issueScenario, mintAccessToken, oidcScenario, type H2Scenario } from "./scenarios.js";
import { sidecarMemory, startSidecar, visibility } from "./sidecar.js";
import { OIDC_CLIENT, type LoadEvent, type LoadResult, type LoadSpec, type LoopDelay, type WorkloadName } from "./spec.js";
import { verifier } from "./verifier.js";
import { variantsMarkdown, variantsTable, type Variant, type VariantsReport } from "./variants.js";
import { countsBetween, readCounters, samples, type ServerCounts } from "./verify.js";

const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const CONNECTIONS = num("BENCH_CONNECTIONS", 8);
const STREAMS = num("BENCH_STREAMS", 8);
const LOAD = {
  connections: CONNECTIONS,
  streams: STREAMS,
  h1Connections: num("BENCH_H1_CONNECTIONS", CONNECTIONS * STREAMS),
  rateStreams: num("BENCH_RATE_STREAMS", 64),
  /** Rounds of the fixed-rate passes (the servers take turns; each is reported by its median-p99 round). */
  rateRounds: Math.max(1, num("BENCH_RATE_ROUNDS", 5)),
  concurrency: num("BENCH_CONCURRENCY", CONNECTIONS * STREAMS),
  client: process.env.BENCH_CLIENT === "connect" ? ("connect" as const) : ("lean" as const),
  warmupMs: num("BENCH_WARMUP_MS", 2000),
  windowMs: num("BENCH_WINDOW_MS", 10_000),
  /** Window of the short grpc-js no-op passes between Tessera's throughput scenarios. */
  bracketMs: num("BENCH_BRACKET_MS", 5000),
};
const SESSIONS = num("BENCH_SESSIONS", 20_000);
/** Revocations timed by the visibility part, and the sidecars that must all see each. */
const VISIBILITY_REVOCATIONS = num("BENCH_VISIBILITY_REVOCATIONS", 300);
const VISIBILITY_SIDECARS = 3;
/** Live revocations the sidecar-memory part makes the sidecar hold, and the store calls in flight writing them. */
const MEMORY_REVOCATIONS = num("BENCH_MEMORY_REVOCATIONS", 100_000);
const MEMORY_CONCURRENCY = 256;
/** The in-process verifier's throughput window, after its warm-up (bench/verifier.ts). */
const VERIFIER_WINDOW_MS = num("BENCH_VERIFIER_WINDOW_MS", 3000);
const VERIFIER_WARMUP_MS = num("BENCH_VERIFIER_WARMUP_MS", 1000);
/** Sample calls before and after each h2load window. */
const SAMPLES = 3;
/** A scenario whose calls went wrong more often than this (h2load's failures, Tessera's non-OK codes) is failed. */
const FAILURE_SHARE = 0.001;
/** Tessera's entry point as built by buildTessera(). */
const TESSERA_MAIN = "dist/src/main.js";
/** Calls per workload in the round-trip pass. */
const AUDIT_CALLS = 300;
const PROFILE_HOOK = "./bench/profile-hook.ts";
const LOOP_DELAY_HOOK = "./bench/loop-delay-hook.ts";
const CLUSTER = "bench/servers/cluster.ts";
const NOOP_GRPCJS = "bench/servers/noop-grpcjs.ts";
const NOOP_CONNECT = "bench/servers/noop-connect.ts";
const NOOP_H2 = "bench/servers/noop-h2.ts";
/** Subjects of the h2load scenarios' requests. */
const INTROSPECT_SUBJECT = "bench-h2load-introspect";
const ISSUE_SUBJECT = "bench-h2load-issue";

/** A server under test: its process, and where to send gRPC or HTTP. */
interface Server {
  child: Child;
  url: string;
  /** Started with bench/loop-delay-hook.ts: a fixed-rate pass reads the server's event-loop delay over its window. */
  loopDelayHook?: boolean;
}

interface ServerOptions {
  /** Profile the window into this file (bench/profile-hook.ts). */
  profile?: string;
  /** Preload bench/loop-delay-hook.ts (not together with `profile`: both answer SIGUSR2). */
  loopDelay?: boolean;
  /** Run the server as this many node:cluster workers sharing its port (bench/servers/cluster.ts). */
  workers?: number;
  /** Tessera: more of its environment (TESSERA_REDIS_PREFIX, for one on a key prefix of its own). */
  env?: Record<string, string>;
}

/** `script` (or bench/servers/cluster.ts running `workers` copies of it) with `args`, for startNode. */
function launch(script: string, args: string[], workers: number | undefined): [string, string[]] {
  return workers === undefined ? [script, args] : [CLUSTER, [String(workers), script, ...args]];
}

async function startServer(name: string, script: string, opts: ServerOptions = {}): Promise<Server> {
  const port = await freePort();
  const child = startNode(name, ...launch(script, [String(port)], opts.workers), nodeOptions(opts));
  await child.until((line) => line === "ready", 20_000);
  return { child, url: `http://127.0.0.1:${port}`, loopDelayHook: opts.loopDelay === true };
}

/**
 * Tessera as production runs it: the Dockerfile's build (`npm run build`, tsc) started as `node dist/src/main.js`,
 * ES256, on a Redis (its URL), a Redis Cluster (its seeds) or its in-process memory store ("memory"); ready once
 * /healthz answers (as cluster workers: once every worker listens, then /healthz).
 */
async function startTessera(redisUrl: string | { clusterSeeds: string } | "memory", opts: ServerOptions = {}): Promise<Server> {
  const port = await freePort();
  const base = nodeOptions(opts);
  const child = startNode(opts.workers === undefined ? "tessera" : `tessera ×${opts.workers}`, ...launch(TESSERA_MAIN, [], opts.workers), {
    ...base,
    env: {
      ...base.env,
      TESSERA_LISTEN: `127.0.0.1:${port}`,
      ...(redisUrl === "memory" ? {} : typeof redisUrl === "string" ? { TESSERA_REDIS_URL: redisUrl } : { TESSERA_REDIS_CLUSTER_NODES: redisUrl.clusterSeeds }),
      TESSERA_SIGNING_ALG: "ES256",
      TESSERA_LOG_LEVEL: "warn",
      ...opts.env,
    },
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  let exited: number | string | undefined;
  void child.exited.then((code) => (exited = code));
  if (opts.workers !== undefined) {
    await child.until((line) => line === "ready", 30_000).catch(async (err: unknown) => {
      await child.stop(0);
      throw err;
    });
  }
  while (Date.now() < deadline && exited === undefined) {
    const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
    if (ok) return { child, url, loopDelayHook: opts.loopDelay === true };
    await new Promise((r) => setTimeout(r, 100));
  }
  await child.stop(0);
  throw new Error(`tessera did not become healthy (exit: ${exited ?? "none"}):\n${child.stderr.join("\n")}`);
}

/**
 * Node options that preload the profile hook (the process then profiles between two SIGUSR2) or the loop-delay hook
 * (the process then measures its event-loop delay between two SIGUSR2).
 */
function nodeOptions(opts: ServerOptions): { nodeArgs?: string[]; env: Record<string, string> } {
  if (opts.profile !== undefined) return { nodeArgs: ["--import", PROFILE_HOOK], env: { BENCH_CPU_PROFILE: opts.profile } };
  if (opts.loopDelay) return { nodeArgs: ["--import", LOOP_DELAY_HOOK], env: { BENCH_LOOP_DELAY: "1" } };
  return { env: {} };
}

interface Window {
  /** Called with the generator's pid when it opens and when it closes its measurement window. */
  onOpen?: (genPid: number) => void | Promise<void>;
  onClose?: (genPid: number) => void | Promise<void>;
}

/** Runs one Node generator process (bench/load.ts) and returns its result. */
async function generate(spec: LoadSpec, window: Window = {}): Promise<LoadResult> {
  let result: LoadResult | undefined;
  let pending = Promise.resolve();
  const gen: Child = startNode("load", "bench/load.ts", [JSON.stringify(spec)], {
    onLine(line) {
      const event = JSON.parse(line) as LoadEvent;
      if (event.type === "result") result = event.result;
      const hook = event.type === "measuring" ? window.onOpen : event.type === "measured" ? window.onClose : undefined;
      if (hook) pending = pending.then(() => hook(gen.pid));
    },
  });
  const code = await gen.exited;
  await pending;
  if (code !== 0 || !result) throw new Error(`load generator (${spec.workload}) exited with ${code}:\n${gen.stderr.join("\n")}`);
  return result;
}

/** The Node generator's spec for `workload` on `server`. */
function spec(server: Server, workload: WorkloadName, extra: Partial<LoadSpec> = {}): LoadSpec {
  const target: LoadSpec["target"] =
    workload === "oidc-introspect" ? { kind: "oidc", url: server.url, ...OIDC_CLIENT } : { kind: "grpc", url: server.url };
  return {
    target,
    workload,
    concurrency: LOAD.concurrency,
    connections: LOAD.connections,
    client: LOAD.client,
    warmupMs: LOAD.warmupMs,
    durationMs: LOAD.windowMs,
    ...extra,
  };
}

/** h2load's load for one pass: the default shape, or a short bracket pass, or a fixed rate. */
function h2Load(extra: Partial<H2loadLoad> = {}): H2loadLoad {
  return { connections: LOAD.connections, streams: LOAD.streams, warmupMs: LOAD.warmupMs, durationMs: LOAD.windowMs, ...extra };
}

const bracketLoad = () => h2Load({ warmupMs: 1000, durationMs: LOAD.bracketMs });

/**
 * The Redis a measured server's store is on, read around a window (CPU, commands): one server, or every node of a
 * Cluster, whose CPU then counts as Redis's rather than as other processes'.
 */
type StoreRedis = Redis | readonly Redis[];

interface Snapshot {
  at: number;
  /** CPU seconds so far: the server (its process tree), the generator, the whole machine. */
  server: number;
  load: number;
  machine: number;
  redis?: RedisSample;
}

/**
 * Time the whole run may spend waiting for a quiet machine, so that it still ends within a few minutes (each wait
 * takes at least one second).
 */
let quietBudgetMs = 40_000;

/** Before a measurement: wait for other work on the machine to end (within the budget), and say if it did not. */
async function quiet(name: string): Promise<void> {
  const t = performance.now();
  const busy = await waitForQuiet(Math.min(20_000, quietBudgetMs));
  quietBudgetMs -= performance.now() - t;
  if (busy >= 0.1) log(`${name}: the machine is still busy (${busy.toFixed(2)} cores used by others), measuring anyway`);
}

/** Measurements the run may repeat because other work on the machine took CPU during their window. */
let retriesLeft = 3;

/**
 * Runs `once` again (while retries are left) if other processes used more than a quarter of a core meanwhile, or if a
 * fixed-rate run ended before its window closed (h2load catching up after the machine stalled it).
 */
async function retried(name: string, once: () => Promise<Measured>): Promise<Measured> {
  for (;;) {
    let m: Measured;
    try {
      m = await once();
    } catch (err) {
      if (!(err instanceof WindowMissed) || retriesLeft <= 0) throw err;
      retriesLeft--;
      log(`${name}: h2load ended before the window closed; measuring again`);
      continue;
    }
    if (m.otherCores < 0.25 || retriesLeft <= 0) return m;
    retriesLeft--;
    log(`${name}: other processes used ${m.otherCores.toFixed(2)} cores during the window; measuring again`);
  }
}

/**
 * Reads the counters around a measurement window: call `open` when it opens and `close` when it closes (with the
 * generator's pid), then `figures` for CPU, RSS, Redis and the server's event-loop delay over the window. The RSS
 * sampler runs from open to close, the window.
 */
function windowProbe(server: Server, redis: StoreRedis | undefined, readLoopDelay: boolean) {
  const servers = redis === undefined ? [] : redis instanceof Redis ? [redis] : redis;
  const pid = server.child.pid;
  const cores = os.availableParallelism();
  const snapshot = async (genPid: number): Promise<Snapshot> => ({
    at: performance.now(),
    server: treeCpuSeconds(pid),
    load: cpuSeconds(genPid),
    machine: machineBusySeconds(),
    ...(servers.length > 0 ? { redis: await sampleAll(servers) } : {}),
  });
  let rss: RssSampler | undefined;
  let peakRss: number | undefined;
  let open: Snapshot | undefined;
  let close: Snapshot | undefined;
  let serverLoopDelay: Promise<LoopDelay> | undefined;
  return {
    async open(genPid: number) {
      if (readLoopDelay) server.child.signal("SIGUSR2");
      rss = new RssSampler(pid);
      open = await snapshot(genPid);
    },
    async close(genPid: number) {
      peakRss = rss?.stop();
      close = await snapshot(genPid);
      if (readLoopDelay) {
        const line = server.child.until((l) => l.startsWith('{"benchLoopDelay"'), 10_000);
        server.child.signal("SIGUSR2");
        serverLoopDelay = line.then((l) => (JSON.parse(l) as { benchLoopDelay: LoopDelay }).benchLoopDelay);
        await serverLoopDelay;
      }
    },
    /** The figures of the window, for `calls` calls completed in it. */
    async figures(name: string, calls: number) {
      if (!open || !close || peakRss === undefined) throw new Error(`${name}: the generator reported no measurement window`);
      const seconds = (close.at - open.at) / 1000;
      const per = (n: number) => n / Math.max(1, calls);
      let redisFigures: Pick<Measured, "redisCores" | "redisPerCall"> = {};
      if (open.redis && close.redis) {
        const commands = commandsBetween(open.redis, close.redis);
        redisFigures = {
          redisCores: (close.redis.cpu - open.redis.cpu) / seconds,
          redisPerCall: {
            total: per(commands.total),
            calls: Object.fromEntries(Object.entries(commands.calls).map(([k, n]) => [k, per(n)])),
          },
        };
      }
      const serverCpu = close.server - open.server;
      const loadCpu = close.load - open.load;
      const serverCores = serverCpu / seconds;
      const loadCores = loadCpu / seconds;
      const machineCores = (close.machine - open.machine) / seconds;
      return {
        serverCores,
        loadCores,
        serverUsPerCall: (serverCpu * 1e6) / Math.max(1, calls),
        loadUsPerCall: (loadCpu * 1e6) / Math.max(1, calls),
        otherCores: Math.max(0, machineCores - serverCores - loadCores - (redisFigures.redisCores ?? 0)),
        idleCores: Math.max(0, cores - machineCores),
        peakRss,
        ...redisFigures,
        ...(serverLoopDelay ? { serverLoopDelay: await serverLoopDelay } : {}),
      };
    },
  };
}

const fmtDelay = (x: LoopDelay | undefined) =>
  x ? `p99 ${x.p99.toFixed(1)} / max ${x.max.toFixed(1)} ms (GC pauses: longest ${x.gc.maxMs.toFixed(1)} ms, ${x.gc.count})` : "–";

/**
 * One scenario driven by the Node generator against `server`: its figures plus CPU, RSS and Redis counters over its
 * window; failed if more than FAILURE_SHARE of its calls failed or answered wrongly (the generator checks every answer).
 */
async function measure(name: string, server: Server, loadSpec: LoadSpec, redis?: StoreRedis): Promise<Measured> {
  return retried(name, async () => {
    const probe = windowProbe(server, redis, server.loopDelayHook === true && loadSpec.rate !== undefined);
    await quiet(name);
    const result = await generate(loadSpec, { onOpen: (pid) => probe.open(pid), onClose: (pid) => probe.close(pid) });
    const figures = await probe.figures(name, result.requests);
    const failed =
      result.requests === 0
        ? "no call completed in the window"
        : result.errors > FAILURE_SHARE * result.requests
          ? `${result.errors} of ${result.requests} calls failed or answered wrongly, e.g. ${result.errorSamples.join("; ")}`
          : undefined;
    const m: Measured = { name, generator: "node", load: result, ...figures, ...(failed ? { failed } : {}) };
    log(
      `${name}: ${failed ? `FAILED (${failed}); ` : ""}${result.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, errors ${result.errors}, ` +
        `server ${m.serverUsPerCall!.toFixed(0)} µs CPU/call` +
        (loadSpec.rate === undefined ? "" : `; event-loop delay: generator ${fmtDelay(result.loopDelay)}, server ${fmtDelay(m.serverLoopDelay)}`),
    );
    return m;
  });
}

interface H2Options {
  load?: H2loadLoad;
  redis?: StoreRedis;
}

/**
 * One scenario driven by h2load against `server`: sample calls before, Tessera's counters read, the h2load run
 * (warm-up, window) with CPU, RSS and Redis counters read as its window opens and closes, the counters read again,
 * sample calls after. Failed (reported as such, not as a figure) if any sample call failed, if more than
 * FAILURE_SHARE of h2load's requests failed or got a 4xx/5xx, or if Tessera counted more than that share of the
 * run's calls with an error code (or, for Introspect, a not-active answer).
 */
async function measureH2(name: string, server: Server, scenario: H2Scenario, opts: H2Options = {}): Promise<Measured> {
  const load = opts.load ?? h2Load();
  return retried(name, async () => {
    await quiet(name);
    const before = await samples(() => scenario.probe(), SAMPLES);
    const countersBefore = scenario.method ? await readCounters(server.url) : undefined;
    const probe = windowProbe(server, opts.redis, server.loopDelayHook === true && load.rate !== undefined);
    const { result, stats } = await runH2load(scenario.workload, scenario.request, scenario.body, load, {
      onOpen: (pid) => probe.open(pid),
      onClose: (pid) => probe.close(pid),
    });
    const countersAfter = countersBefore ? await readCounters(server.url) : undefined;
    const after = await samples(() => scenario.probe(), SAMPLES);
    const figures = await probe.figures(name, result.requests);
    const serverCounts = countersBefore && countersAfter && scenario.method ? countsBetween(countersBefore, countersAfter, scenario.method) : undefined;
    if (serverCounts && Object.keys(serverCounts.introspect).length > 0) result.outcomes = serverCounts.introspect;
    const checks: Checks = {
      before: before.outcomes,
      after: after.outcomes,
      failures: [...before.failures.map((f) => `before the window: ${f}`), ...after.failures.map((f) => `after the window: ${f}`)],
      ...(serverCounts ? { server: serverCounts } : {}),
    };
    const inFlight = load.connections * (scenario.request.http === "h1" ? 1 : load.streams);
    const failed = failure(result, stats.done, stats.status["4xx"] + stats.status["5xx"], checks, scenario, inFlight);
    const m: Measured = {
      name,
      generator: "h2load",
      load: result,
      ...figures,
      h2load: stats,
      scenario: scenario.describe,
      checks,
      ...(failed ? { failed } : {}),
    };
    log(
      `${name}: ${failed ? `FAILED (${failed}); ` : ""}${result.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, ` +
        `h2load ${stats.succeeded} succeeded / ${stats.failed} failed / ${stats.errored} errored, ` +
        `server ${m.serverUsPerCall!.toFixed(0)} µs CPU/call, h2load ${m.loadUsPerCall!.toFixed(1)} µs CPU/call (${m.loadCores.toFixed(2)} cores)` +
        (serverCounts ? `, Tessera counted ${codes(serverCounts)}` : "") +
        (m.serverLoopDelay ? `; server event-loop delay ${fmtDelay(m.serverLoopDelay)}` : ""),
    );
    return m;
  });
}

const codes = (c: ServerCounts) =>
  Object.entries(c.codes)
    .map(([code, n]) => `${n} ${code}`)
    .join(", ") || "no calls";

/**
 * Why an h2load scenario's figure is not to be reported as one, if it is not. When its window ends, h2load closes its
 * connections with calls still in flight, and Tessera counts those as Canceled: up to `inFlight` of them are expected.
 */
function failure(result: LoadResult, done: number, badStatus: number, checks: Checks, scenario: H2Scenario, inFlight: number): string | undefined {
  if (checks.failures.length > 0) return `sample calls failed: ${checks.failures.join("; ")}`;
  if (result.requests === 0) return "no call completed in the window";
  if (result.errors + badStatus > FAILURE_SHARE * done) return `h2load: ${result.errors} of ${done} requests failed, ${badStatus} answered 4xx/5xx`;
  const server = checks.server;
  if (server) {
    const total = Object.values(server.codes).reduce((a, b) => a + b, 0);
    const bad = total - (server.codes.OK ?? 0) - Math.min(server.codes.Canceled ?? 0, inFlight);
    if (bad > FAILURE_SHARE * total) return `Tessera answered ${bad} of the run's ${total} ${scenario.method} calls with an error (${codes(server)})`;
    if (scenario.workload === "introspect-valid") {
      const answers = Object.values(server.introspect).reduce((a, b) => a + b, 0);
      const inactive = answers - (server.introspect.active ?? 0);
      if (inactive > FAILURE_SHARE * answers) return `${inactive} of ${answers} Introspect answers were not active`;
    }
  }
  return undefined;
}

/**
 * Redis round trips per call, and the commands Tessera's client sends, by workload: a Tessera of its own talks to
 * Redis through a counting relay (bench/redis-stats.ts); one call at a time, so no two calls share a write.
 */
async function roundTrips(redisPort: number): Promise<NonNullable<Report["roundTrips"]>> {
  const watch = await watchTraffic(redisPort);
  const tessera = await startTessera(`redis://127.0.0.1:${watch.port}`).catch(async (err: unknown) => {
    await watch.stop();
    throw err;
  });
  const runs: Array<[string, WorkloadName, LoadResult]> = [];
  let traffic: Traffic;
  try {
    for (const [name, workload] of [
      ["Introspect, valid tokens", "introspect-valid"],
      ["Introspect, mix", "introspect-mix"],
      ["Issue", "issue"],
      ["Refresh", "refresh"],
    ] as const) {
      runs.push([name, workload, await generate(spec(tessera, workload, { count: AUDIT_CALLS, concurrency: 1 }))]);
    }
  } finally {
    await tessera.child.stop();
    traffic = await watch.stop();
  }
  return runs.map(([name, , result]) => {
    const seen = trafficIn(traffic, result.window.start, result.window.end);
    const per = (n: number) => n / result.requests;
    return {
      name,
      calls: result.requests,
      roundTrips: per(seen.roundTrips),
      commands: Object.fromEntries(Object.entries(seen.commands).map(([k, n]) => [k, per(n)])),
    };
  });
}

/**
 * Redis memory per open session, on a Redis and a Tessera of its own (so nothing else is in the database):
 * used_memory before and after opening SESSIONS sessions through Issue, and what the keys it left hold, by kind.
 */
async function sessionMemory(): Promise<NonNullable<Report["sessionMemory"]>> {
  const server = await RedisServer.start();
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  const tessera = await startTessera(server.url).catch(async (err: unknown) => {
    redis.disconnect();
    await server.stop();
    throw err;
  });
  try {
    let before = NaN;
    let after = NaN;
    const result = await generate(spec(tessera, "issue", { count: SESSIONS }), {
      onOpen: async () => {
        before = (await sample(redis)).usedMemory;
      },
      onClose: async () => {
        after = (await sample(redis)).usedMemory;
      },
    });
    if (result.errors > 0) throw new Error(`session memory: ${result.errors} Issue calls failed: ${result.errorSamples.join("; ")}`);
    const kinds = await keyKinds(redis);
    // What outlives the risk window and does not belong to the capped audit log: delete those, measure again.
    const transient = [await redis.keys("*:risk"), await redis.keys("*audit")].flat();
    for (let i = 0; i < transient.length; i += 1000) await redis.del(...transient.slice(i, i + 1000));
    const lifelong = (await sample(redis)).usedMemory;
    const per = (bytes: number) => bytes / result.requests;
    return { sessions: result.requests, bytes: per(after - before), lifelong: per(lifelong - before), kinds };
  } finally {
    await tessera.child.stop();
    redis.disconnect();
    await server.stop();
  }
}

/** Cluster workers per server in the variants run (BENCH_WORKERS). */
const WORKERS = num("BENCH_WORKERS", 2);

/**
 * BENCH_ONLY=variants: the connect-node no-op and Tessera Introspect (valid tokens) over gRPC, the Connect protocol
 * with binary protobuf and with JSON, and as WORKERS cluster workers sharing the port (gRPC); the grpc-js no-op for
 * reference. Writes bench/variants.md and prints its table.
 */
async function variants(): Promise<void> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  log(`variants: ${LOAD.concurrency} calls in flight, ${LOAD.warmupMs} ms warm-up + ${LOAD.windowMs} ms per variant; generator and servers share ${os.availableParallelism()} cores`);
  const { server: redisServer, redis, version: redisVersion } = await startRedis();

  const protocols = [
    ["gRPC, binary protobuf", "grpc", "gRPC (application/grpc+proto), the default"],
    ["Connect protocol, binary protobuf", "connect-proto", "Connect protocol unary POST, application/proto, HTTP/2"],
    ["Connect protocol, JSON", "connect-json", "Connect protocol unary POST, application/json, HTTP/2"],
  ] as const;
  const list: Variant[] = [];
  const add = async (name: string, how: string, server: Server, loadSpec: LoadSpec, withRedis = false) => {
    const measured = await measure(name, server, loadSpec, withRedis ? redis : undefined);
    const v = { name, how, measured };
    list.push(v);
    return v;
  };
  /** Starts a server, measures on it, stops it (on an error too). */
  const on = async (start: () => Promise<Server>, fn: (server: Server) => Promise<void>) => {
    const server = await start();
    try {
      await fn(server);
    } finally {
      await server.child.stop();
    }
  };

  let base: Variant | undefined;
  await on(
    () => startServer("connect-node no-op", NOOP_CONNECT),
    async (noop) => {
      for (const [label, protocol, how] of protocols) {
        const v = await add(`connect-node no-op, ${label}`, `connectNodeAdapter on node:http2 (one process); ${how}`, noop, spec(noop, "noop", { protocol }));
        base ??= v;
      }
    },
  );
  await on(
    () => startServer("grpc-js no-op", "bench/servers/noop-grpcjs.ts"),
    async (grpcjs) => {
      await add("(reference) grpc-js no-op, gRPC, binary protobuf", "@grpc/grpc-js server (one process); gRPC", grpcjs, spec(grpcjs, "noop"));
    },
  );
  await on(
    () => startTessera(redisServer.url),
    async (tessera) => {
      for (const [label, protocol, how] of protocols) {
        await add(`Tessera Introspect (valid), ${label}`, `dist/src/main.js (one process); ${how}`, tessera, spec(tessera, "introspect-valid", { protocol }), true);
      }
    },
  );
  await on(
    () => startServer(`connect-node no-op ×${WORKERS}`, NOOP_CONNECT, { workers: WORKERS }),
    async (noop) => {
      await add(`connect-node no-op, ${WORKERS} cluster workers, gRPC`, `bench/servers/cluster.ts: ${WORKERS} node:cluster workers sharing the port (round-robin); gRPC`, noop, spec(noop, "noop"));
    },
  );
  await on(
    () => startTessera(redisServer.url, { workers: WORKERS }),
    async (tessera) => {
      await add(
        `Tessera Introspect (valid), ${WORKERS} cluster workers, gRPC`,
        `bench/servers/cluster.ts: ${WORKERS} node:cluster workers of dist/src/main.js sharing the port, one Redis; gRPC`,
        tessera,
        spec(tessera, "introspect-valid"),
        true,
      );
    },
  );

  const report: VariantsReport = {
    machine: machine(redisVersion),
    command: command(),
    startedAt,
    durationS: (performance.now() - t0) / 1000,
    load: LOAD,
    workers: WORKERS,
    base: base!,
    variants: list,
  };
  const out = join(ROOT, "bench", "variants.md");
  writeFileSync(out, variantsMarkdown(report));
  process.stdout.write(`\n${variantsTable(report)}\n\nFull report: ${out}\n`);
}

/**
 * Profiles a server's main thread during one h2load window (Tessera when `start` starts dist/src/main.js), after one
 * sample call has checked the scenario's answer.
 */
async function profile(title: string, start: (profile: string) => Promise<Server>, scenarioFor: (server: Server) => Promise<H2Scenario>) {
  const dir = mkdtempSync(join(os.tmpdir(), "tessera-bench-prof-"));
  const file = join(dir, "profile.cpuprofile");
  const server = await start(file);
  try {
    const scenario = await scenarioFor(server);
    const check = await samples(() => scenario.probe(), 1);
    if (check.failures.length > 0) throw new Error(`profile ${title}: the sample call failed: ${check.failures.join("; ")}`);
    await quiet(title);
    const written = server.child.until((line) => line === "bench-profile-written", 60_000 + LOAD.windowMs * 2);
    const { result } = await runH2load(scenario.workload, scenario.request, scenario.body, h2Load(), {
      onOpen: () => server.child.signal("SIGUSR2"),
      onClose: () => server.child.signal("SIGUSR2"),
    });
    await written;
    const summary = summarise(JSON.parse(readFileSync(file, "utf8")) as CpuProfile);
    log(`profile ${title}: ${result.rps.toFixed(0)} req/s, main thread busy ${((100 * summary.busyMs) / summary.wallMs).toFixed(0)} %`);
    return { title: `${title}: ${result.rps.toFixed(0)} req/s under the profiler (h2load)`, summary };
  } finally {
    await server.child.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function machine(redisVersion: string): Report["machine"] {
  const cpu = /^model name\s*:\s*(.*)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? os.cpus()[0]?.model ?? "unknown";
  const version = (pkg: string) =>
    (JSON.parse(readFileSync(join(ROOT, "node_modules", pkg, "package.json"), "utf8")) as { version: string }).version;
  return {
    cpu,
    cores: os.availableParallelism(),
    memGiB: os.totalmem() / 2 ** 30,
    node: process.version,
    redis: redisVersion,
    versions: Object.fromEntries(
      ["@connectrpc/connect-node", "@bufbuild/protobuf", "@grpc/grpc-js", "jose", "ioredis", "oidc-provider", "undici"].map((p) => [p, version(p)]),
    ),
  };
}

/** The command line that reproduces the run: its BENCH_* and TESSERA_* variables, then `npm run bench`. */
function command(): string {
  const knobs = Object.entries(process.env)
    .filter(([k]) => k.startsWith("BENCH_") || k.startsWith("TESSERA_"))
    .map(([k, v]) => `${k}=${v} `)
    .join("");
  return `${knobs}npm run bench`;
}

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

async function startRedis(): Promise<{ server: RedisServer; redis: Redis; version: string }> {
  const server = await RedisServer.start();
  onStop(() => server.stop());
  const redis = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  onStop(async () => redis.disconnect());
  await redis.connect();
  const version = /^redis_version:(.*)$/m.exec((await redis.call("INFO", "server")) as string)?.[1]?.trim() ?? "?";
  return { server, redis, version };
}

/** What a run can do; BENCH_ONLY picks some. */
const PARTS = [
  "grpcjs",
  "connect",
  "introspect",
  "connect-introspect",
  "sidecar",
  "issue",
  "rate",
  "memory",
  "peer",
  "refresh",
  "issue-fresh",
  "mix",
  "redis",
  "visibility",
  "verifier",
  "sidecar-memory",
  "cluster",
  "profiles",
] as const;
type Part = (typeof PARTS)[number];
const GROUPS: Record<string, Part[]> = {
  h2load: ["grpcjs", "connect", "introspect", "connect-introspect", "issue", "rate", "memory", "peer"],
  node: ["refresh", "issue-fresh", "mix"],
};

/**
 * BENCH_ONLY's parts with what they need (Tessera's throughput scenarios and the sidecar's: the grpc-js no-op; rate:
 * introspect). There is no "sidecar" group: it would hide the part of that name.
 */
function selectParts(only: string): Set<Part> {
  const parts = new Set<Part>();
  for (const name of only.split(",").map((s) => s.trim()).filter(Boolean)) {
    const group = GROUPS[name];
    if (group) group.forEach((p) => parts.add(p));
    else if ((PARTS as readonly string[]).includes(name)) parts.add(name as Part);
    else throw new Error(`BENCH_ONLY: unknown part "${name}"; known: variants, ${Object.keys(GROUPS).join(", ")}, ${PARTS.join(", ")}`);
  }
  if (parts.has("rate") && process.env.BENCH_RATE === undefined) parts.add("introspect");
  if (["introspect", "connect-introspect", "sidecar", "issue", "rate", "memory"].some((p) => parts.has(p as Part))) parts.add("grpcjs");
  return parts;
}

const mean = (xs: number[]) => (xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length);
/**
 * The pass with the median p99 of a scenario's fixed-rate rounds (a failed pass counts as the worst), with every
 * round's p99 attached for the report.
 */
function medianPass(passes: Measured[]): Measured | undefined {
  if (passes.length === 0) return undefined;
  const p99 = (m: Measured) => (m.failed ? Infinity : m.load.p99);
  const sorted = [...passes].sort((a, b) => p99(a) - p99(b));
  return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, roundsP99: passes.map((m) => (m.failed ? NaN : m.load.p99)) };
}

/** The ceiling of a scenario between two no-op passes: the mean of those that did not fail. */
const ceilingOf = (passes: Array<Measured | undefined>) => mean(passes.filter((m): m is Measured => m !== undefined && !m.failed).map((m) => m.load.rps));

async function main(parts: Set<Part>, subset: boolean): Promise<void> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  const h2load: H2load = findH2load();
  const has = (p: Part) => parts.has(p);
  log(
    `${h2load.version} at ${h2load.path}: -t 1 -c ${LOAD.connections} -m ${LOAD.streams}, ${LOAD.warmupMs} ms warm-up + ${LOAD.windowMs} ms per scenario; ` +
      `generator and servers share ${os.availableParallelism()} cores; parts: ${[...parts].join(", ")}`,
  );
  const { server: redisServer, redis, version: redisVersion } = await startRedis();
  const report: Report = {
    machine: machine(redisVersion),
    command: command(),
    startedAt,
    durationS: NaN,
    h2load,
    load: LOAD,
    parts: [...parts],
    subset,
    brackets: [],
    node: { brackets: [] },
  };
  const rssAfter: Array<{ name: string; rss: number }> = [];

  const tesseraParts: Part[] = ["grpcjs", "connect", "introspect", "connect-introspect", "sidecar", "issue", "rate", "memory", "peer", "refresh", "issue-fresh", "mix"];
  if (tesseraParts.some(has)) {
    // Tessera stays up (idle in between) for every scenario that needs it; it also mints the one valid access token
    // all the Introspect bodies carry, the no-ops' included, so every server gets the very same request bytes.
    const tessera = await startTessera(redisServer.url, { loopDelay: true });
    let grpcjs: Server | undefined;
    // The same build on its in-process memory store (part memory): the same lean path without the store's round trip, so
    // the report tells what Redis adds from what the path costs. Its own token (its own key), of the same length.
    let inMemory: { server: Server; token: string } | undefined;
    try {
      const token = await mintAccessToken(tessera.url, INTROSPECT_SUBJECT);
      const onTessera = async (name: string, run: () => Promise<Measured>) => {
        const m = await run();
        rssAfter.push({ name, rss: memory(tessera.child.pid).rss });
        return m;
      };
      // selectParts brings it along for every h2load part that needs it; the Node generator's parts need it too.
      if (has("grpcjs") || (["refresh", "issue-fresh", "mix"] as const).some(has)) {
        grpcjs = await startServer("grpc-js no-op", NOOP_GRPCJS, { loopDelay: true });
      }
      const noop = grpcjs && introspectScenario(grpcjs.url, "grpc", token, "noop");
      if (has("grpcjs")) {
        report.grpcjs = await measureH2("grpc-js no-op, gRPC", grpcjs!, noop!);
        report.brackets.push(report.grpcjs);
      }
      if (has("connect")) {
        const connect = await startServer("connect-node no-op", NOOP_CONNECT);
        try {
          report.connectGrpc = await measureH2("connect-node no-op, gRPC", connect, introspectScenario(connect.url, "grpc", token, "noop"));
          report.connectConnect = await measureH2("connect-node no-op, Connect protocol", connect, introspectScenario(connect.url, "connect", token, "noop"));
        } finally {
          await connect.child.stop();
        }
      }
      // Each of Tessera's throughput scenarios sits between two grpc-js no-op passes (the one before it and a short
      // one after), and its ratio is to their mean: this VM's speed drifts by a quarter within a run. So is the
      // sidecar's (`on`: the sidecar; Tessera's RSS is then not read after it).
      const bracketed = async (name: string, scenario: H2Scenario, on: Server = tessera): Promise<Measured> => {
        const run = () => measureH2(name, on, scenario, { redis });
        const m = on === tessera ? await onTessera(name, run) : await run();
        const before = report.brackets.at(-1);
        const after = await measureH2(`grpc-js no-op, gRPC (short pass after ${name})`, grpcjs!, noop!, { load: bracketLoad() });
        report.brackets.push(after);
        return { ...m, ceilingRps: ceilingOf([before, after]) };
      };
      const valid = { subject: INTROSPECT_SUBJECT };
      if (has("introspect")) report.introspect = await bracketed("Tessera Introspect, gRPC", introspectScenario(tessera.url, "grpc", token, valid));
      if (has("memory")) {
        const server = await startTessera("memory", { loopDelay: true });
        inMemory = { server, token: await mintAccessToken(server.url, INTROSPECT_SUBJECT) };
        report.introspectMemory = await bracketed("Tessera Introspect, gRPC, memory store", introspectScenario(server.url, "grpc", inMemory.token, valid), server);
      }
      if (has("sidecar")) {
        // The sidecar follows this Tessera's feed and answers for the same token, from its JWKS and feed copy.
        const sidecar = await startSidecar("sidecar", tessera.url);
        try {
          report.sidecar = await bracketed("Sidecar Introspect, gRPC", introspectScenario(sidecar.url, "grpc", token, valid), sidecar);
        } finally {
          await sidecar.child.stop();
        }
      }
      if (has("peer")) {
        const oidc = await startServer("oidc-provider", "bench/servers/oidc-peer.ts");
        try {
          report.peer = await measureH2("oidc-provider introspection (HTTP/1.1)", oidc, await oidcScenario(oidc.url), {
            load: h2Load({ connections: LOAD.h1Connections }),
          });
        } finally {
          await oidc.child.stop();
        }
      }
      if (has("connect-introspect")) {
        report.introspectConnect = await bracketed("Tessera Introspect, Connect protocol", introspectScenario(tessera.url, "connect", token, valid));
      }
      if (has("issue")) report.issue = await bracketed("Tessera Issue, gRPC", issueScenario(tessera.url, ISSUE_SUBJECT));
      if (has("rate")) {
        const max = report.introspect && !report.introspect.failed ? report.introspect.load.rps : NaN;
        const rate = process.env.BENCH_RATE !== undefined ? Number(process.env.BENCH_RATE) : Math.round(max / 2);
        if (!(rate > 0)) throw new Error("the fixed-rate passes need Introspect's maximum (it failed) or BENCH_RATE");
        const load = h2Load({ rate, streams: LOAD.rateStreams });
        // The floor under both: node:http2 answering every call with a fixed gRPC response, nothing else.
        const bare = await startServer("node:http2 no-op", NOOP_H2, { loopDelay: true });
        // A p99 over one window hangs on whether a full garbage collection fell into it: the three servers take turns,
        // BENCH_RATE_ROUNDS times, and each is reported by its pass with the median p99 (every pass's p99 beside it).
        const rounds: Record<"tessera" | "memory" | "grpcjs" | "h2", Measured[]> = { tessera: [], memory: [], grpcjs: [], h2: [] };
        try {
          for (let round = 1; round <= LOAD.rateRounds; round++) {
            const of = LOAD.rateRounds > 1 ? `, round ${round} of ${LOAD.rateRounds}` : "";
            rounds.tessera.push(
              await onTessera(`Introspect at ${rate}/s${of}`, () =>
                measureH2(`Tessera Introspect, gRPC, at a fixed ${rate}/s${of}`, tessera, introspectScenario(tessera.url, "grpc", token, valid), { load, redis }),
              ),
            );
            if (inMemory) {
              const { server, token: own } = inMemory;
              rounds.memory.push(await measureH2(`Tessera Introspect, gRPC, memory store, at a fixed ${rate}/s${of}`, server, introspectScenario(server.url, "grpc", own, valid), { load }));
            }
            rounds.grpcjs.push(await measureH2(`grpc-js no-op, gRPC, at a fixed ${rate}/s${of}`, grpcjs!, noop!, { load }));
            rounds.h2.push(await measureH2(`node:http2 no-op, gRPC, at a fixed ${rate}/s${of}`, bare, introspectScenario(bare.url, "grpc", token, "noop"), { load }));
          }
        } finally {
          await bare.child.stop();
        }
        report.halfRate = medianPass(rounds.tessera);
        report.memoryHalfRate = medianPass(rounds.memory);
        report.grpcjsHalfRate = medianPass(rounds.grpcjs);
        report.h2HalfRate = medianPass(rounds.h2);
        await inMemory?.server.child.stop(); // not needed after the fixed-rate rounds
        inMemory = undefined;
      }
      // What cannot be one fixed body goes to the Node generator: Refresh (a refresh token is good for one use, and
      // presenting it again revokes its session), Issue with a new subject on every call, the Introspect mix. Each
      // sits between two passes of the grpc-js no-op under the same generator, its ceiling.
      const nodeParts = (["refresh", "issue-fresh", "mix"] as const).filter(has);
      if (nodeParts.length > 0) {
        const first = await measure("grpc-js no-op, gRPC (Node generator)", grpcjs!, spec(grpcjs!, "noop"));
        report.node.grpcjs = first;
        report.node.brackets.push(first);
        const scenarios = { refresh: ["Tessera Refresh, gRPC", "refresh"], "issue-fresh": ["Tessera Issue, a new subject per call, gRPC", "issue"], mix: ["Tessera Introspect mix, gRPC", "introspect-mix"] } as const;
        for (const part of nodeParts) {
          const [name, workload] = scenarios[part];
          const m = await onTessera(name, () => measure(`${name} (Node generator)`, tessera, spec(tessera, workload), redis));
          const before = report.node.brackets.at(-1);
          const after = await measure(`grpc-js no-op, gRPC (Node generator, short pass after ${name})`, grpcjs!, spec(grpcjs!, "noop", { warmupMs: 1000, durationMs: LOAD.bracketMs }));
          report.node.brackets.push(after);
          const bracketed = { ...m, ceilingRps: ceilingOf([before, after]) };
          if (part === "refresh") report.node.refresh = bracketed;
          else if (part === "issue-fresh") report.node.issueFresh = bracketed;
          else report.node.mix = bracketed;
        }
      }
      report.rss = { hwm: memory(tessera.child.pid).hwm, byScenario: rssAfter };
    } finally {
      await grpcjs?.child.stop();
      await inMemory?.server.child.stop();
      await tessera.child.stop();
    }
  }
  if (has("redis")) {
    report.roundTrips = await roundTrips(redisServer.port);
    report.sessionMemory = await sessionMemory();
    log(`Redis memory per session: ${report.sessionMemory.lifelong.toFixed(0)} B for its life, ${report.sessionMemory.bytes.toFixed(0)} B all-in`);
  }
  if (has("visibility")) {
    await quiet("visibility");
    // An authority on a key prefix of its own (its feed holds only this part's revocations), and 3 sidecars on it.
    report.visibility = await visibility(() => startTessera(redisServer.url, { env: { TESSERA_REDIS_PREFIX: "tessera-visibility:" } }), {
      revocations: VISIBILITY_REVOCATIONS,
      sidecars: VISIBILITY_SIDECARS,
      redis,
      log,
    });
  }
  if (has("verifier")) {
    // An authority on a key prefix of its own; the verifier runs in child processes (bench/verifier-worker.ts).
    report.verifier = await verifier(() => startTessera(redisServer.url, { env: { TESSERA_REDIS_PREFIX: "tessera-verifier:" } }), {
      warmupMs: VERIFIER_WARMUP_MS,
      windowMs: VERIFIER_WINDOW_MS,
      revocations: VISIBILITY_REVOCATIONS,
      redis,
      log,
      quiet,
      retry(name, otherCores) {
        if (otherCores < 0.25 || retriesLeft <= 0) return false;
        retriesLeft--;
        log(`${name}: other processes used ${otherCores.toFixed(2)} cores during the window; measuring again`);
        return true;
      },
    });
  }
  if (has("sidecar-memory")) {
    await quiet("sidecar memory");
    report.sidecarMemory = await sidecarMemory((url, prefix) => startTessera(url, { env: { TESSERA_REDIS_PREFIX: prefix } }), {
      revocations: MEMORY_REVOCATIONS,
      concurrency: MEMORY_CONCURRENCY,
      log,
    });
  }
  if (has("cluster")) report.cluster = await clusterPart(redisServer.url);
  if (has("profiles")) {
    let token = "";
    report.profiles = [
      await profile(
        "Tessera under Introspect (gRPC, h2load)",
        (file) => startTessera(redisServer.url, { profile: file }),
        async (server) => {
          token = await mintAccessToken(server.url, INTROSPECT_SUBJECT);
          return introspectScenario(server.url, "grpc", token, { subject: INTROSPECT_SUBJECT });
        },
      ),
      await profile(
        "Tessera under Issue, one subject (gRPC, h2load)",
        (file) => startTessera(redisServer.url, { profile: file }),
        async (server) => issueScenario(server.url, ISSUE_SUBJECT),
      ),
      await profile(
        "grpc-js no-op server under the same load as Introspect",
        (file) => startServer("noop-grpcjs", NOOP_GRPCJS, { profile: file }),
        async (server) => introspectScenario(server.url, "grpc", token, "noop"),
      ),
    ];
  }
  report.durationS = (performance.now() - t0) / 1000;
  const out = process.env.BENCH_OUT ?? (subset ? join(os.tmpdir(), "tessera-bench-partial.md") : join(ROOT, "bench", "results.md"));
  writeFileSync(out, markdown(report));
  const sidecars = sidecarTable(report);
  process.stdout.write(`\n${resultsTable(report)}\n\n${sidecars === "" ? "" : `${sidecars}\n\n`}${targetsTable(report)}\n\nFull report: ${out}\n`);
}

/** Rounds of the cluster part (BENCH_CLUSTER_ROUNDS): each starts both authorities afresh. */
const CLUSTER_ROUNDS = num("BENCH_CLUSTER_ROUNDS", 3);
/** Measured window of each cluster-part pass (BENCH_CLUSTER_WINDOW_MS), after LOAD's warm-up. */
const CLUSTER_WINDOW_MS = num("BENCH_CLUSTER_WINDOW_MS", 6000);

/**
 * Introspect, Issue and Refresh on a Redis Cluster of three primaries (on this machine) beside the single Redis, in
 * the same run. A process start alone moves Tessera's CPU per call by up to a half (docs/performance.md), so one start
 * per side cannot tell a Cluster cost from that noise: the part runs CLUSTER_ROUNDS rounds, each with a freshly
 * started authority on each side (a key prefix of its own on the single Redis), measuring every scenario on both back
 * to back, the single Redis first in odd rounds and the Cluster first in even ones (so a drift within a round favours
 * neither). A round's ratio is the Cluster's req/s over the single Redis's; a scenario's ratio is the median of its
 * rounds'.
 */
async function clusterPart(redisUrl: string): Promise<NonNullable<Report["cluster"]>> {
  await quiet("cluster");
  const cluster = await RedisCluster.start(3);
  onStop(() => cluster.stop());
  const load = { warmupMs: LOAD.warmupMs, durationMs: CLUSTER_WINDOW_MS };
  // Each side's Redis CPU is its own, not other processes' (which would spend the run's retries on it).
  const oneRedis = new Redis(redisUrl);
  const nodes = cluster.nodes.map((n) => new Redis(n.url));
  onStop(async () => {
    for (const r of [oneRedis, ...nodes]) r.disconnect();
  });
  type Run = (s: Server, side: string, token: string, redis: StoreRedis) => Promise<Measured>;
  const scenarios: Array<[string, Run]> = [
    ["Introspect, gRPC (h2load)", (s, side, token, redis) => measureH2(`Introspect on ${side}`, s, introspectScenario(s.url, "grpc", token, { subject: INTROSPECT_SUBJECT }), { load: h2Load(load), redis })],
    ["Issue, one subject, gRPC (h2load)", (s, side, _, redis) => measureH2(`Issue on ${side}`, s, issueScenario(s.url, ISSUE_SUBJECT), { load: h2Load(load), redis })],
    ["Refresh, gRPC (Node generator)", (s, side, _, redis) => measure(`Refresh on ${side}`, s, spec(s, "refresh", load), redis)],
  ];
  const rows: NonNullable<Report["cluster"]>["rows"] = scenarios.map(([name]) => ({ name, rounds: [] }));
  for (let round = 1; round <= CLUSTER_ROUNDS; round++) {
    const single = await startTessera(redisUrl, { env: { TESSERA_REDIS_PREFIX: "tessera-cluster-bench:" } });
    const sharded = await startTessera({ clusterSeeds: cluster.seeds });
    try {
      const sides: Array<[Server, string, Promise<string>, StoreRedis]> = [
        [single, "one Redis", mintAccessToken(single.url, INTROSPECT_SUBJECT), oneRedis],
        [sharded, "the Cluster", mintAccessToken(sharded.url, INTROSPECT_SUBJECT), nodes],
      ];
      if (round % 2 === 0) sides.reverse();
      for (const [i, [name, run]] of scenarios.entries()) {
        const measured = new Map<Server, Measured>();
        for (const [server, side, token, redis] of sides) measured.set(server, await run(server, `${side} (round ${round})`, await token, redis));
        const pass = { single: measured.get(single)!, cluster: measured.get(sharded)! };
        rows[i]!.rounds.push(pass);
        log(`cluster, round ${round}: ${name}: ${pass.cluster.load.rps.toFixed(0)} req/s on the Cluster against ${pass.single.load.rps.toFixed(0)} on one Redis`);
      }
    } finally {
      await Promise.all([single.child.stop(), sharded.child.stop()]);
    }
  }
  return { primaries: 3, windowMs: CLUSTER_WINDOW_MS, rows };
}

/**
 * Builds Tessera as the Dockerfile does (tsc, tsconfig.build.json, into dist/). The benchmark runs that output, not
 * src/ through tsx: tsx compiles with esbuild's keepNames, which adds a __name(...) call (a defineProperty) to every
 * closure created per call, a cost production does not pay.
 */
function buildTessera(): void {
  log("building Tessera (npm run build: tsc -p tsconfig.build.json -> dist/)");
  execFileSync(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.build.json"], { cwd: ROOT, stdio: "inherit" });
}

async function entry(): Promise<void> {
  const only = process.env.BENCH_ONLY?.trim() ?? "";
  if (only === "variants") {
    buildTessera();
    return variants();
  }
  const parts = only === "" ? new Set<Part>(PARTS) : selectParts(only);
  findH2load(); // before anything else: without h2load there is nothing to measure
  buildTessera();
  return main(parts, only !== "");
}

entry()
  .catch((err: unknown) => {
    const why = err instanceof MissingH2loadError ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`bench: failed: ${why}\n`);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
