/**
 * `npm run bench`: starts a throwaway Redis, the servers under test (each its own process) and, per scenario, a load
 * generator process (bench/load.ts); runs the scenarios one after another; writes bench/results.md and prints its
 * main table. Every child process is stopped at the end, on an error too.
 *
 * Knobs (environment): BENCH_WINDOW_MS (10000), BENCH_WARMUP_MS (2000), BENCH_CONCURRENCY (64),
 * BENCH_CONNECTIONS (4), BENCH_SESSIONS (20000, for Redis memory per session), BENCH_CLIENT (lean; "connect" drives
 * the gRPC servers with connect-node's createGrpcTransport instead of bench/lean-transport.ts).
 */
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
  waitForQuiet,
  type Child,
} from "./procs.js";
import { commandsBetween, keyKinds, sample, trafficIn, watchTraffic, type RedisSample, type Traffic } from "./redis-stats.js";
import { markdown, resultsTable, type Measured, type Report } from "./report.js";
import { OIDC_CLIENT, type LoadEvent, type LoadResult, type LoadSpec, type WorkloadName } from "./spec.js";

const num = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const LOAD = {
  concurrency: num("BENCH_CONCURRENCY", 64),
  connections: num("BENCH_CONNECTIONS", 4),
  client: process.env.BENCH_CLIENT === "connect" ? ("connect" as const) : ("lean" as const),
  warmupMs: num("BENCH_WARMUP_MS", 2000),
  windowMs: num("BENCH_WINDOW_MS", 10_000),
};
const SESSIONS = num("BENCH_SESSIONS", 20_000);
/** Calls per workload in the round-trip pass. */
const AUDIT_CALLS = 300;
const PROFILE_HOOK = "./bench/profile-hook.ts";

/** A server under test: its process, and where to send gRPC or HTTP. */
interface Server {
  child: Child;
  url: string;
}

async function startServer(name: string, script: string, opts: { profile?: string } = {}): Promise<Server> {
  const port = await freePort();
  const child = startNode(name, script, [String(port)], profiled(opts.profile));
  await child.until((line) => line === "ready", 20_000);
  return { child, url: `http://127.0.0.1:${port}` };
}

/** Tessera as production runs it: `node --import tsx src/main.ts`, Redis store, ES256; ready once /healthz answers. */
async function startTessera(redisUrl: string, opts: { profile?: string } = {}): Promise<Server> {
  const port = await freePort();
  const base = profiled(opts.profile);
  const child = startNode("tessera", "src/main.ts", [], {
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
  while (Date.now() < deadline && exited === undefined) {
    const ok = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
    if (ok) return { child, url };
    await new Promise((r) => setTimeout(r, 100));
  }
  await child.stop(0);
  throw new Error(`tessera did not become healthy (exit: ${exited ?? "none"}):\n${child.stderr.join("\n")}`);
}

/** Node options that preload the profile hook (the process then profiles between two SIGUSR2). */
function profiled(profile: string | undefined): { nodeArgs?: string[]; env: Record<string, string> } {
  return profile === undefined ? { env: {} } : { nodeArgs: ["--import", PROFILE_HOOK], env: { BENCH_CPU_PROFILE: profile } };
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

/** Time the whole run may spend waiting for a quiet machine, so that it still ends within five minutes. */
let quietBudgetMs = 60_000;

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
    server: cpuSeconds(pid),
    load: cpuSeconds(genPid),
    machine: machineBusySeconds(),
    ...(redis ? { redis: await sample(redis) } : {}),
  });
  let rss: RssSampler | undefined;
  let open: Snapshot | undefined;
  let close: Snapshot | undefined;
  await quiet(name);
  const result = await generate(loadSpec, {
    onOpen: async (genPid) => {
      rss = new RssSampler(pid);
      open = await snapshot(genPid);
    },
    onClose: async (genPid) => {
      close = await snapshot(genPid);
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
  log(`${name}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, errors ${result.errors}`);
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
    return { sessions: result.requests, bytes: (after - before) / result.requests, kinds };
  } finally {
    await tessera.child.stop();
    redis.disconnect();
    await server.stop();
  }
}

/** Profiles `script`'s process (Tessera when script is src/main.ts) during one Introspect window. */
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

  // The connect-node no-op server stays up until its fixed-rate pass, which needs Tessera's maximum first.
  const noop = await startServer("connect-node no-op", "bench/servers/noop-connect.ts");
  const connect = await measure("connect-node no-op", noop, spec(noop, "noop"));
  const other = LOAD.client === "lean" ? "connect" : "lean";
  const connectOtherClient = await measure(`connect-node no-op (${other} client)`, noop, spec(noop, "noop", { client: other }));
  const grpcjsServer = await startServer("grpc-js no-op", "bench/servers/noop-grpcjs.ts");
  const grpcjs = await measure("grpc-js no-op", grpcjsServer, spec(grpcjsServer, "noop")).finally(() => grpcjsServer.child.stop());

  const tessera = await startTessera(redisServer.url);
  const rssAfter: Report["rss"]["byScenario"] = [];
  const run = async (name: string, workload: WorkloadName, extra: Partial<LoadSpec> = {}) => {
    const m = await measure(name, tessera, spec(tessera, workload, extra), redis);
    rssAfter.push({ name, rss: memory(tessera.child.pid).rss });
    return m;
  };
  let report: Report;
  try {
    const valid = await run("Introspect valid", "introspect-valid");
    const mix = await run("Introspect mix", "introspect-mix");
    const half = { rate: Math.round(valid.load.rps / 2), concurrency: 1024 };
    const halfRate = await run("Introspect valid at 50 %", "introspect-valid", half);
    const issue = await run("Issue", "issue");
    const refresh = await run("Refresh", "refresh");
    const noopHalfRate = await measure("connect-node no-op at the same fixed rate", noop, spec(noop, "noop", half));
    await noop.child.stop();
    const hwm = memory(tessera.child.pid).hwm;
    await tessera.child.stop();
    const trips = await roundTrips(redisServer.port);
    const perSession = await sessionMemory();
    log(`Redis memory per session: ${perSession.bytes.toFixed(0)} B`);

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
      ceilings: { connect, grpcjs, connectOtherClient, noopHalfRate },
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
  process.stdout.write(`\n${resultsTable(report)}\n\nFull report: ${out}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`bench: failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
