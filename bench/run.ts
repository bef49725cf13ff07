/**
 * `npm run bench`: starts a throwaway Redis, the servers under test (each its own process) and, per scenario, a load
 * generator process (bench/load.ts); runs the scenarios one after another; writes bench/results.md and prints its
 * main table. Every child process is stopped at the end, on an error too.
 *
 * Knobs (environment): BENCH_WINDOW_MS (10000), BENCH_WARMUP_MS (2000), BENCH_BRACKET_MS (5000, the short no-op
 * passes between scenarios), BENCH_CONCURRENCY (64),
 * BENCH_CONNECTIONS (4), BENCH_SESSIONS (20000, for Redis memory per session), BENCH_CLIENT (lean; "connect" drives
 * the gRPC servers with connect-node's createGrpcTransport instead of bench/lean-transport.ts).
 *
 * BENCH_ONLY=variants (`npm run bench:variants`) runs instead what connect-node allows beyond the default set-up, with
 * the same generator, load and window: the connect-node no-op and Tessera Introspect over gRPC, over the Connect
 * protocol with binary protobuf and with JSON (HTTP/2 both), and as two node:cluster workers sharing the port; it
 * writes bench/variants.md and prints its table.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort, RedisServer } from "../test/helpers/redis-server.js";
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
import { commandsBetween, keyKinds, sample, trafficIn, watchTraffic, type RedisSample, type Traffic } from "./redis-stats.js";
import { loopDelayTable, markdown, resultsTable, type Measured, type Report } from "./report.js";
import { OIDC_CLIENT, type LoadEvent, type LoadResult, type LoadSpec, type LoopDelay, type WorkloadName } from "./spec.js";
import { variantsMarkdown, variantsTable, type Variant, type VariantsReport } from "./variants.js";

const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const LOAD = {
  concurrency: num("BENCH_CONCURRENCY", 64),
  connections: num("BENCH_CONNECTIONS", 4),
  client: process.env.BENCH_CLIENT === "connect" ? ("connect" as const) : ("lean" as const),
  warmupMs: num("BENCH_WARMUP_MS", 2000),
  windowMs: num("BENCH_WINDOW_MS", 10_000),
  /** Window of the short connect-node no-op passes between Tessera's throughput scenarios. */
  bracketMs: num("BENCH_BRACKET_MS", 5000),
};
const SESSIONS = num("BENCH_SESSIONS", 20_000);
/** Tessera's entry point as built by buildTessera(). */
const TESSERA_MAIN = "dist/src/main.js";
/** Calls per workload in the round-trip pass. */
const AUDIT_CALLS = 300;
const PROFILE_HOOK = "./bench/profile-hook.ts";
const LOOP_DELAY_HOOK = "./bench/loop-delay-hook.ts";
const CLUSTER = "bench/servers/cluster.ts";

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
 * Redis store, ES256; ready once /healthz answers
 * (as cluster workers: once every worker listens, then /healthz).
 */
async function startTessera(redisUrl: string, opts: ServerOptions = {}): Promise<Server> {
  const port = await freePort();
  const base = nodeOptions(opts);
  const child = startNode(opts.workers === undefined ? "tessera" : `tessera ×${opts.workers}`, ...launch(TESSERA_MAIN, [], opts.workers), {
    ...base,
    env: {
      ...base.env,
      TESSERA_LISTEN: `127.0.0.1:${port}`,
      TESSERA_REDIS_URL: redisUrl,
      TESSERA_SIGNING_ALG: "ES256",
      TESSERA_LOG_LEVEL: "warn",
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

/** Runs one generator process and returns its result. */
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

interface Snapshot {
  at: number;
  /** CPU seconds so far: the server, the generator, the whole machine. */
  server: number;
  load: number;
  machine: number;
  redis?: RedisSample;
}

/**
 * Time the whole run may spend waiting for a quiet machine, so that it still ends within five minutes (each wait
 * takes at least one second, about 13 s over a run on a quiet machine).
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
 * One scenario against `server`: the generator's figures plus CPU, RSS and Redis counters over its window. Measured
 * again (while retries are left) if other processes used more than a quarter of a core meanwhile.
 */
async function measure(name: string, server: Server, loadSpec: LoadSpec, redis?: Redis): Promise<Measured> {
  for (;;) {
    const m = await measureOnce(name, server, loadSpec, redis);
    if (m.otherCores < 0.25 || retriesLeft <= 0) return m;
    retriesLeft--;
    log(`${name}: other processes used ${m.otherCores.toFixed(2)} cores during the window; measuring again`);
  }
}

async function measureOnce(name: string, server: Server, loadSpec: LoadSpec, redis?: Redis): Promise<Measured> {
  const pid = server.child.pid;
  const snapshot = async (genPid: number): Promise<Snapshot> => ({
    at: performance.now(),
    server: treeCpuSeconds(pid),
    load: cpuSeconds(genPid),
    machine: machineBusySeconds(),
    ...(redis ? { redis: await sample(redis) } : {}),
  });
  let rss: RssSampler | undefined;
  let open: Snapshot | undefined;
  let close: Snapshot | undefined;
  // A fixed-rate pass on a server with the loop-delay hook: its event-loop delay over the same window.
  const readLoopDelay = server.loopDelayHook === true && loadSpec.rate !== undefined;
  let serverLoopDelay: Promise<LoopDelay> | undefined;
  await quiet(name);
  const result = await generate(loadSpec, {
    onOpen: async (genPid) => {
      if (readLoopDelay) server.child.signal("SIGUSR2");
      rss = new RssSampler(pid);
      open = await snapshot(genPid);
    },
    onClose: async (genPid) => {
      close = await snapshot(genPid);
      if (readLoopDelay) {
        const line = server.child.until((l) => l.startsWith('{"benchLoopDelay"'), 10_000);
        server.child.signal("SIGUSR2");
        serverLoopDelay = line.then((l) => (JSON.parse(l) as { benchLoopDelay: LoopDelay }).benchLoopDelay);
        await serverLoopDelay;
      }
    },
  });
  if (!open || !close || !rss) throw new Error(`${name}: the generator reported no measurement window`);
  const peakRss = rss.stop();
  const seconds = (close.at - open.at) / 1000;
  const per = (n: number) => n / Math.max(1, result.requests);
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
  const delays = async () => {
    const d = (x: LoopDelay | undefined) =>
      x ? `p99 ${x.p99.toFixed(1)} / max ${x.max.toFixed(1)} ms (GC pauses: longest ${x.gc.maxMs.toFixed(1)} ms, ${x.gc.count})` : "–";
    return `; event-loop delay: generator ${d(result.loopDelay)}, server ${d(await serverLoopDelay)}`;
  };
  log(
    `${name}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, errors ${result.errors}` +
      (loadSpec.rate === undefined ? "" : await delays()),
  );
  const serverCores = (close.server - open.server) / seconds;
  const loadCores = (close.load - open.load) / seconds;
  const machineCores = (close.machine - open.machine) / seconds;
  return {
    name,
    load: result,
    serverCores,
    loadCores,
    otherCores: Math.max(0, machineCores - serverCores - loadCores - (redisFigures.redisCores ?? 0)),
    peakRss,
    ...redisFigures,
    ...(serverLoopDelay ? { serverLoopDelay: await serverLoopDelay } : {}),
  };
}

/**
 * Redis round trips per call, and the commands Tessera's client sends, by workload: a Tessera of its own talks to
 * Redis through a counting relay (bench/redis-stats.ts); one call at a time, so no two calls share a write.
 */
async function roundTrips(redisPort: number): Promise<Report["roundTrips"]> {
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
async function sessionMemory(): Promise<Report["sessionMemory"]> {
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

/** Profiles `script`'s process (Tessera when script is dist/src/main.js) during one Introspect window. */
async function profile(title: string, start: (profile: string) => Promise<Server>, workload: WorkloadName) {
  const dir = mkdtempSync(join(os.tmpdir(), "tessera-bench-prof-"));
  const file = join(dir, "profile.cpuprofile");
  const server = await start(file);
  try {
    await quiet(title);
    const written = server.child.until((line) => line === "bench-profile-written", 60_000 + LOAD.windowMs * 2);
    const result = await generate(spec(server, workload), {
      onOpen: () => server.child.signal("SIGUSR2"),
      onClose: () => server.child.signal("SIGUSR2"),
    });
    await written;
    const summary = summarise(JSON.parse(readFileSync(file, "utf8")) as CpuProfile);
    log(`profile ${title}: ${result.rps.toFixed(0)} req/s, main thread busy ${((100 * summary.busyMs) / summary.wallMs).toFixed(0)} %`);
    return { title: `${title}: ${result.rps.toFixed(0)} req/s under the profiler`, summary };
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

function command(): string {
  const knobs = Object.entries(process.env)
    .filter(([k]) => k.startsWith("BENCH_"))
    .map(([k, v]) => `${k}=${v} `)
    .join("");
  return `${knobs}npm run bench`;
}

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

/** Cluster workers per server in the variants run (BENCH_WORKERS). */
const WORKERS = num("BENCH_WORKERS", 2);
const NOOP_CONNECT = "bench/servers/noop-connect.ts";

/**
 * BENCH_ONLY=variants: the connect-node no-op and Tessera Introspect (valid tokens) over gRPC, the Connect protocol
 * with binary protobuf and with JSON, and as WORKERS cluster workers sharing the port (gRPC); the grpc-js no-op for
 * reference. Writes bench/variants.md and prints its table.
 */
async function variants(): Promise<void> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  log(`variants: ${LOAD.concurrency} calls in flight, ${LOAD.warmupMs} ms warm-up + ${LOAD.windowMs} ms per variant; generator and servers share ${os.availableParallelism()} cores`);
  const redisServer = await RedisServer.start();
  onStop(() => redisServer.stop());
  const redis = new Redis(redisServer.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  onStop(async () => redis.disconnect());
  await redis.connect();
  const redisVersion = /^redis_version:(.*)$/m.exec((await redis.call("INFO", "server")) as string)?.[1]?.trim() ?? "?";

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

async function main(): Promise<void> {
  const t0 = performance.now();
  const startedAt = new Date().toISOString();
  log(`${LOAD.concurrency} calls in flight, ${LOAD.warmupMs} ms warm-up + ${LOAD.windowMs} ms per scenario; generator and servers share ${os.availableParallelism()} cores`);
  const redisServer = await RedisServer.start();
  onStop(() => redisServer.stop());
  const redis = new Redis(redisServer.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  onStop(async () => redis.disconnect());
  await redis.connect();
  const redisVersion = /^redis_version:(.*)$/m.exec((await redis.call("INFO", "server")) as string)?.[1]?.trim() ?? "?";
  const host = machine(redisVersion);

  // The no-op servers stay up (idle) until their fixed-rate passes, which need Tessera's maximum first. The servers
  // measured at a fixed rate preload the loop-delay hook, so those passes also read the server's event-loop delay.
  const noop = await startServer("connect-node no-op", "bench/servers/noop-connect.ts", { loopDelay: true });
  const connect = await measure("connect-node no-op", noop, spec(noop, "noop"));
  const other = LOAD.client === "lean" ? "connect" : "lean";
  const connectOtherClient = await measure(`connect-node no-op (${other} client)`, noop, spec(noop, "noop", { client: other }));
  const grpcjsServer = await startServer("grpc-js no-op", "bench/servers/noop-grpcjs.ts", { loopDelay: true });
  const grpcjs = await measure("grpc-js no-op", grpcjsServer, spec(grpcjsServer, "noop"));

  const tessera = await startTessera(redisServer.url, { loopDelay: true });
  const rssAfter: Report["rss"]["byScenario"] = [];
  const run = async (name: string, workload: WorkloadName, extra: Partial<LoadSpec> = {}) => {
    const m = await measure(name, tessera, spec(tessera, workload, extra), redis);
    rssAfter.push({ name, rss: memory(tessera.child.pid).rss });
    return m;
  };
  let report: Report;
  try {
    // Each throughput scenario sits between two short windows of the connect-node no-op, and its ratio is to their
    // mean: this VM's speed drifts by a quarter within a run, so a ceiling measured minutes away would carry that.
    const brackets: Measured[] = [connect];
    const bracketSpec = spec(noop, "noop", { warmupMs: 1000, durationMs: LOAD.bracketMs });
    const bracketed = async (name: string, workload: WorkloadName): Promise<Measured> => {
      const m = await run(name, workload);
      const after = await measure(`connect-node no-op (after ${name})`, noop, bracketSpec);
      const before = brackets.at(-1)!;
      brackets.push(after);
      return { ...m, ceilingRps: (before.load.rps + after.load.rps) / 2 };
    };
    const valid = await bracketed("Introspect valid", "introspect-valid");
    const mix = await bracketed("Introspect mix", "introspect-mix");
    const issue = await bracketed("Issue", "issue");
    const refresh = await bracketed("Refresh", "refresh");
    const half = { rate: Math.round(valid.load.rps / 2), concurrency: 1024 };
    const halfRate = await run("Introspect valid at 50 %", "introspect-valid", half);
    const noopHalfRate = await measure("connect-node no-op at the same fixed rate", noop, spec(noop, "noop", half));
    await noop.child.stop();
    const grpcjsHalfRate = await measure("grpc-js no-op at the same fixed rate", grpcjsServer, spec(grpcjsServer, "noop", half));
    await grpcjsServer.child.stop();
    const hwm = memory(tessera.child.pid).hwm;
    await tessera.child.stop();
    const trips = await roundTrips(redisServer.port);
    const perSession = await sessionMemory();
    log(`Redis memory per session: ${perSession.lifelong.toFixed(0)} B for its life, ${perSession.bytes.toFixed(0)} B all-in`);

    const oidc = await startServer("oidc-provider", "bench/servers/oidc-peer.ts");
    const peer = await measure("oidc-provider introspection", oidc, spec(oidc, "oidc-introspect")).finally(() => oidc.child.stop());

    const profiles = [
      await profile("Tessera under Introspect (valid tokens)", (file) => startTessera(redisServer.url, { profile: file }), "introspect-valid"),
      await profile("connect-node no-op server under the same load", (file) => startServer("noop-connect", "bench/servers/noop-connect.ts", { profile: file }), "noop"),
    ];
    report = {
      machine: host,
      command: command(),
      startedAt,
      durationS: (performance.now() - t0) / 1000,
      load: LOAD,
      ceilings: { connect, brackets, grpcjs, connectOtherClient, noopHalfRate, grpcjsHalfRate },
      tessera: { valid, mix, halfRate, issue, refresh },
      peer,
      roundTrips: trips,
      sessionMemory: perSession,
      rss: { hwm, byScenario: rssAfter },
      profiles,
    };
  } finally {
    await tessera.child.stop();
  }
  const out = join(ROOT, "bench", "results.md");
  writeFileSync(out, markdown(report));
  process.stdout.write(`\n${resultsTable(report)}\n\n${loopDelayTable(report)}\n\nFull report: ${out}\n`);
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

const only = process.env.BENCH_ONLY;
const known = only === "variants" || only === undefined || only === "";
if (known) buildTessera();
(only === "variants" ? variants() : known ? main() : Promise.reject(new Error(`BENCH_ONLY=${only}: only "variants" is known`)))
  .catch((err: unknown) => {
    process.stderr.write(`bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
