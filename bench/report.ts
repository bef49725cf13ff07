/** Turns the figures of one benchmark run into bench/results.md (and the table printed at the end of the run). */
import type { KeyKind } from "./redis-stats.js";
import type { LoadResult, LoopDelay } from "./spec.js";
import { markdown as profileMarkdown, type ProfileSummary } from "./profile.js";

/** One measured scenario: the generator's figures plus what the orchestrator read around the window. */
export interface Measured {
  name: string;
  load: LoadResult;
  /** CPU used during the window, in cores (1 = one core busy all the time): the server, the generator, Redis. */
  serverCores: number;
  loadCores: number;
  redisCores?: number;
  /** CPU the rest of the machine used meanwhile (other people's work skews the figures). */
  otherCores: number;
  /** Redis commands per call, scripts' inner commands included (INFO stats), and by command name. */
  redisPerCall?: { total: number; calls: Record<string, number> };
  /** Peak VmRSS of the server process during the window, bytes. */
  peakRss: number;
  /** Fixed-rate passes: the server's event-loop delay over the window (bench/loop-delay-hook.ts). */
  serverLoopDelay?: LoopDelay;
  /** Tessera's throughput scenarios: the connect-node no-op's req/s, the mean of the passes right before and after. */
  ceilingRps?: number;
}

export interface Report {
  machine: { cpu: string; cores: number; memGiB: number; node: string; redis: string; versions: Record<string, string> };
  command: string;
  startedAt: string;
  durationS: number;
  load: { concurrency: number; connections: number; client: "lean" | "connect"; warmupMs: number; windowMs: number; bracketMs: number };
  /**
   * connectOtherClient: the connect-node no-op again, driven by the other gRPC client (see LoadSpec.client);
   * noopHalfRate, grpcjsHalfRate: the connect-node and the grpc-js no-ops at the fixed rate of Tessera's 50 % pass.
   */
  ceilings: {
    connect: Measured;
    /** Every connect-node no-op pass in order: `connect` first, then the short ones after each Tessera scenario. */
    brackets: Measured[];
    grpcjs: Measured;
    connectOtherClient: Measured;
    noopHalfRate: Measured;
    grpcjsHalfRate: Measured;
  };
  tessera: {
    valid: Measured;
    mix: Measured;
    halfRate: Measured;
    issue: Measured;
    refresh: Measured;
  };
  peer: Measured;
  /** Per workload: Redis round trips per call, and the commands Tessera's client sent per call, by name. */
  roundTrips: Array<{ name: string; calls: number; roundTrips: number; commands: Record<string, number> }>;
  /** used_memory growth per session opened, and the keys in the database afterwards, by kind. */
  /** bytes: all-in right after opening; lifelong: what is left once the risk keys and the audit stream are gone. */
  sessionMemory: { sessions: number; bytes: number; lifelong: number; kinds: KeyKind[] };
  rss: { hwm: number; byScenario: Array<{ name: string; rss: number }> };
  profiles: Array<{ title: string; summary: ProfileSummary }>;
}

const f = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "–");
const ms = (n: number) => f(n, n < 10 ? 2 : 1);
const mib = (bytes: number) => f(bytes / 2 ** 20, 0);
const perCall = (calls: Record<string, number>) =>
  Object.entries(calls)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name} ${f(n, 2)}`)
    .join(", ");

/** The connect-node ceiling a scenario's ratio uses: the no-op passes around it, else the mean of all of them. */
export function ceilingFor(r: Report, m?: Measured): number {
  const all = r.ceilings.brackets;
  return m?.ceilingRps ?? all.reduce((sum, x) => sum + x.load.rps, 0) / all.length;
}

function tesseraRows(r: Report): Array<[string, Measured]> {
  const t = r.tessera;
  return [
    ["Introspect, valid tokens", t.valid],
    ["Introspect, mix (80 % valid, 10 % revoked, 10 % garbage)", t.mix],
    [`Introspect, valid, fixed rate ${f(t.halfRate.load.offeredRps ?? NaN)}/s (~50 % of max)`, t.halfRate],
    ["Issue", t.issue],
    ["Refresh", t.refresh],
  ];
}

/** The main table: every scenario with its throughput, latency, ratios to the ceilings, Redis and process figures. */
export function resultsTable(r: Report): string {
  const { connect, grpcjs } = r.ceilings;
  const other = r.ceilings.connectOtherClient;
  const rows: Array<[string, Measured]> = [
    ["ceiling: connect-node no-op Introspect", connect],
    ["ceiling: connect-node no-op Introspect, its last short pass, after Tessera's throughput scenarios", r.ceilings.brackets.at(-1)!],
    ["ceiling: grpc-js no-op Introspect", grpcjs],
    [`(for comparison: connect-node no-op, generator on the ${r.load.client === "lean" ? "connect-node createGrpcTransport" : "lean"} client)`, other],
    ...tesseraRows(r).map(([n, m]): [string, Measured] => [`Tessera ${n}`, m]),
    [`(for comparison: connect-node no-op at the same fixed rate, ${f(r.ceilings.noopHalfRate.load.offeredRps ?? NaN)}/s)`, r.ceilings.noopHalfRate],
    [`(for comparison: grpc-js no-op at the same fixed rate, ${f(r.ceilings.grpcjsHalfRate.load.offeredRps ?? NaN)}/s)`, r.ceilings.grpcjsHalfRate],
    ["peer: oidc-provider RFC 7662 introspection (HTTP/1.1)", r.peer],
  ];
  const head =
    "| scenario | req/s | p50 ms | p99 ms | p99.9 ms | × connect no-op | × grpc-js no-op | Redis cmds/call | CPU cores: server / generator / Redis / others | server peak RSS MiB | errors |";
  const lines = rows.map(([name, m]) => {
    const l = m.load;
    return `| ${name} | ${f(l.rps)} | ${ms(l.p50)} | ${ms(l.p99)} | ${ms(l.p999)} | ${f(l.rps / ceilingFor(r, m), 2)} | ${f(l.rps / grpcjs.load.rps, 2)} | ${m.redisPerCall ? f(m.redisPerCall.total, 2) : "–"} | ${f(m.serverCores, 2)} / ${f(m.loadCores, 2)} / ${f(m.redisCores ?? 0, 2)} / ${f(m.otherCores, 2)} | ${mib(m.peakRss)} | ${l.errors}${l.skipped ? ` (+${l.skipped} not sent)` : ""} |`;
  });
  return [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |", ...lines].join("\n");
}

/** Tessera's latencies as multiples of the ceilings' (the throughput ratios are in the main table). */
function latencyRatios(r: Report): string {
  const { connect, grpcjs } = r.ceilings;
  const x = (a: number, b: number) => f(a / b, 2);
  const lines = tesseraRows(r).map(([name, m]) => {
    const l = m.load;
    // A fixed-rate pass compares with the no-ops at the same rate.
    const c = m === r.tessera.halfRate ? r.ceilings.noopHalfRate.load : connect.load;
    const g = m === r.tessera.halfRate ? r.ceilings.grpcjsHalfRate.load : grpcjs.load;
    return `| ${name} | ${x(l.p50, c.p50)} | ${x(l.p99, c.p99)} | ${x(l.p999, c.p999)} | ${x(l.p50, g.p50)} | ${x(l.p99, g.p99)} | ${x(l.p999, g.p999)} |`;
  });
  return [
    "| Tessera | p50 × connect | p99 × connect | p99.9 × connect | p50 × grpc-js | p99 × grpc-js | p99.9 × grpc-js |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...lines,
  ].join("\n");
}

function targets(r: Report): string {
  const t = r.tessera;
  const x = (m: Measured) => m.load.rps / ceilingFor(r, m);
  const introspectTrips = r.roundTrips.find((x) => x.name === "Introspect, valid tokens")?.roundTrips ?? NaN;
  const rssGrowth = r.rss.byScenario.length > 1 ? r.rss.byScenario.at(-1)!.rss - r.rss.byScenario[0]!.rss : NaN;
  const rows: Array<[string, string, boolean]> = [
    ["Introspect (valid) ≥ 0.8 × connect-node no-op", `${f(x(t.valid), 2)} × (${f(t.valid.load.rps)} vs ${f(ceilingFor(r, t.valid))} req/s, the no-op's passes right before and after)`, x(t.valid) >= 0.8],
    [
      "Introspect p99 < 5 ms at ~50 % of max throughput",
      `${ms(t.halfRate.load.p99)} ms at ${f(t.halfRate.load.rps)} req/s (at the same rate, the connect-node no-op: ${ms(r.ceilings.noopHalfRate.load.p99)} ms, the grpc-js no-op: ${ms(r.ceilings.grpcjsHalfRate.load.p99)} ms)`,
      t.halfRate.load.p99 < 5,
    ],
    [
      "Introspect: at most one Redis round trip per call",
      `${f(introspectTrips, 2)} round trips (the audit trail's batched background writes included), ${f(t.valid.redisPerCall?.total ?? NaN, 2)} commands per call`,
      introspectTrips < 1.02,
    ],
    ["Issue ≥ 0.5 × connect-node no-op", `${f(x(t.issue), 2)} ×`, x(t.issue) >= 0.5],
    ["Refresh ≥ 0.4 × connect-node no-op", `${f(x(t.refresh), 2)} ×`, x(t.refresh) >= 0.4],
    [
      "Redis memory per open session < 1 KiB",
      `${f(r.sessionMemory.lifelong)} B held for the session's life; ${f(r.sessionMemory.bytes)} B all-in right after the login (with the subject's risk observations, kept for the risk window, and the login's audit entry, in a log capped by count and age)`,
      r.sessionMemory.lifelong < 1024,
    ],
    [
      "Authority RSS bounded under load",
      `peak ${mib(r.rss.hwm)} MiB (VmHWM); RSS after the last scenario − after the first: ${f(rssGrowth / 2 ** 20, 1)} MiB`,
      r.rss.hwm < 512 * 2 ** 20,
    ],
  ];
  return [
    "| target | measured | met? |",
    "| --- | --- | --- |",
    ...rows.map(([what, got, ok]) => `| ${what} | ${got} | ${ok ? "yes" : "**no**"} |`),
  ].join("\n");
}

/** The fixed-rate passes' latency next to the event-loop delay and GC pauses of the generator and the server over the same window. */
export function loopDelayTable(r: Report): string {
  const rows: Array<[string, Measured]> = [
    ["Tessera Introspect, valid", r.tessera.halfRate],
    ["connect-node no-op", r.ceilings.noopHalfRate],
    ["grpc-js no-op", r.ceilings.grpcjsHalfRate],
  ];
  const d = (x: LoopDelay | undefined) => (x ? `${ms(x.p99)} / ${ms(x.max)}` : "–");
  const gc = (x: LoopDelay | undefined) => (x ? `${ms(x.gc.maxMs)} / ${f(x.gc.totalMs)} (${x.gc.count}, ${x.gc.major} major)` : "–");
  const resolution = r.tessera.halfRate.load.loopDelay?.resolutionMs ?? r.tessera.halfRate.serverLoopDelay?.resolutionMs;
  return [
    `| fixed rate ${f(r.tessera.halfRate.load.offeredRps ?? NaN)}/s | p50 ms | p99 ms | p99.9 ms | max ms | generator loop delay p99 / max ms | generator GC pauses: longest / total ms (count) | server loop delay p99 / max ms | server GC pauses: longest / total ms (count) | CPU cores: server / generator |`,
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rows.map(
      ([name, m]) =>
        `| ${name} | ${ms(m.load.p50)} | ${ms(m.load.p99)} | ${ms(m.load.p999)} | ${ms(m.load.max)} | ${d(m.load.loopDelay)} | ${gc(m.load.loopDelay)} | ${d(m.serverLoopDelay)} | ${gc(m.serverLoopDelay)} | ${f(m.serverCores, 2)} / ${f(m.loadCores, 2)} |`,
    ),
    "",
    `How to read it: loop delay (perf_hooks.monitorEventLoopDelay, ${f(resolution ?? NaN)} ms timer, over the measured window) is how long an event that was ready had to wait because the process's one JavaScript thread was busy (running JavaScript, in a GC pause, counted apart, or not scheduled on the shared cores); a call waits on the server's loop a few times (request, Redis answer, signature check, response) and on the generator's twice, so a p99 latency within a few times one process's loop delay points at that process, and a tail far beyond both processes' loop delays comes from outside them (CPU taken by the other processes, the kernel, Redis).`,
  ].join("\n");
}

function clientNote(r: Report): string {
  return r.load.client === "lean"
    ? "Client: bench/lean-transport.ts, a minimal unary gRPC transport on node:http2 plugged into connect's createClient: connect-node's own createGrpcTransport costs the generator several times more CPU per call (see the comparison row), and on two shared cores that would make the generator, not the server, set the ceilings (BENCH_CLIENT=connect runs everything with createGrpcTransport)."
    : "Client: connect-node's createGrpcTransport (BENCH_CLIENT=connect).";
}

export function markdown(r: Report): string {
  const m = r.machine;
  const t = r.tessera;
  const peerRatio = (x: Measured) => f(x.load.rps / r.peer.load.rps, 2);
  const roundTrips = r.roundTrips.map((x) => `| ${x.name} | ${f(x.roundTrips, 2)} | ${perCall(x.commands)} | ${x.calls} |`);
  const commands = tesseraRows(r).map(([name, x]) => `| ${name} | ${x.redisPerCall ? `${f(x.redisPerCall.total, 2)}: ${perCall(x.redisPerCall.calls)}` : "–"} | ${f(x.redisCores ?? NaN, 2)} |`);
  const outcomes = (x: Measured) => perCall(Object.fromEntries(Object.entries(x.load.outcomes).map(([k, n]) => [k, n / x.load.requests])));
  const errors = [...tesseraRows(r), ["peer", r.peer] as [string, Measured]]
    .filter(([, x]) => x.load.errors > 0)
    .map(([name, x]) => `- ${name}: ${x.load.errors} errors, e.g. ${x.load.errorSamples.map((e) => `\`${e}\``).join("; ")}`);
  return [
    "# Tessera benchmark",
    "",
    `Generated by \`${r.command}\` on ${r.startedAt} (the run took ${f(r.durationS)} s).`,
    "",
    `- Machine: ${m.cpu}, ${m.cores} cores, ${f(m.memGiB)} GiB; Node.js ${m.node}; Redis ${m.redis}.`,
    `- Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join(", ")}.`,
    `- Load: ${r.load.concurrency} calls in flight (closed loop) over ${r.load.connections} HTTP/2 connections, gRPC protocol, the same generator process for every gRPC server. ${clientNote(r)} oidc-provider gets the same ${r.load.concurrency} calls in flight over ${r.load.concurrency} HTTP/1.1 keep-alive connections (undici Pool). Each scenario: ${f(r.load.warmupMs / 1000)} s warm-up, then ${f(r.load.windowMs / 1000)} s measured; each waits first (within a budget) for the machine to be quiet. This VM's speed drifts (by a quarter within one run), so each Tessera throughput scenario sits between two short passes of the connect-node no-op (${f(r.load.bracketMs / 1000)} s after a 1 s warm-up) and its \"× connect no-op\" ratio is to their mean; the no-op's passes in order measured ${r.ceilings.brackets.map((b) => f(b.load.rps)).join(", ")} req/s (the first is the full ceiling row).`,
    `- **The load generator, the server and Redis share the same ${m.cores} cores.** Throughput is what one server process gets while a generator process competes with it for CPU; the CPU column shows the split, and "others" is CPU that other work on the machine took during the window (a figure measured while others were busy is not comparable).`,
    "- Tessera: the Dockerfile's build (`npm run build`: tsc into dist/) run as `node dist/src/main.js` (the bench's preload hooks aside), Redis store, ES256, TESSERA_LOG_LEVEL=warn, everything else at its default; open mode (no callers file: the auth interceptor runs, there is no API key to hash). The generator checks every answer: an error is a failed call or a wrong answer.",
    "",
    "## Results",
    "",
    resultsTable(r),
    "",
    `Tessera Introspect vs oidc-provider introspection: **${peerRatio(t.valid)} ×** (valid tokens), ${peerRatio(t.mix)} × (mix).`,
    "",
    `Fixed-rate pass: ${f(t.halfRate.load.offeredRps ?? NaN)} calls/s offered (50 % of the measured Introspect maximum), latency counted from each call's planned send time. The same rate against both no-ops, with the event-loop delay of the generator and of the server over each window:`,
    "",
    loopDelayTable(r),
    "",
    `Introspect mix answers, share of calls: ${outcomes(t.mix)}.`,
    "",
    ...(errors.length > 0 ? ["Errors:", "", ...errors, ""] : []),
    "Latency as a multiple of the ceilings' (the fixed-rate pass: of the no-ops at the same rate):",
    "",
    latencyRatios(r),
    "",
    "## Targets",
    "",
    targets(r),
    "",
    "## Redis",
    "",
    "Round trips per call: a separate pass, one call at a time, with Tessera talking to Redis through a relay that counts its writes (a pipeline or a MULTI…EXEC block is one write; the readiness PINGs are left out). The commands it sent, by name, from MONITOR (without the commands Lua scripts run inside Redis).",
    "",
    "| workload | round trips per call | commands sent per call | calls |",
    "| --- | ---: | --- | ---: |",
    ...roundTrips,
    "",
    "Commands per call during the measured windows (INFO stats total_commands_processed; inner script commands included):",
    "",
    "| workload | commands per call | Redis CPU (cores) |",
    "| --- | --- | ---: |",
    ...commands,
    "",
    `Memory per open session: **${f(r.sessionMemory.lifelong)} bytes held for the session's life, ${f(r.sessionMemory.bytes)} bytes all-in right after the login**. All-in: used_memory after − before opening ${r.sessionMemory.sessions} sessions through Issue on an empty Redis, each for its own subject, with a realistic client (UUID device id, a 120-character user agent, IP, platform). For the session's life: the same once the subjects' risk keys are deleted (their TTL deletes them \`TESSERA_RISK_WINDOW\`, 15 minutes by default, after the subject's last login or refresh) and the audit stream too (a log of every event, capped by \`TESSERA_AUDIT_MAX_EVENTS\` and \`TESSERA_AUDIT_MAX_AGE\` rather than by sessions: at the entry size below, the default cap of 100 000 events is about ${f((r.sessionMemory.kinds.find((k) => k.pattern.endsWith("audit"))?.bytes ?? NaN) / r.sessionMemory.sessions * 100_000 / 2 ** 20)} MiB whatever the number of sessions). The keys right after the login, by kind (MEMORY USAGE; key overhead in Redis's dictionaries and expiry table comes on top):`,
    "",
    "| key kind | keys | bytes per session | TTL |",
    "| --- | ---: | ---: | --- |",
    ...r.sessionMemory.kinds.map((k) => `| \`${k.pattern}\` | ${k.count} | ${f(k.bytes / r.sessionMemory.sessions)} | ${k.ttl} |`),
    "",
    "## Authority memory",
    "",
    `Peak RSS over the whole run (VmHWM, start-up and set-up included): ${mib(r.rss.hwm)} MiB. RSS at the end of each scenario: ${r.rss.byScenario.map((x) => `${x.name} ${mib(x.rss)} MiB`).join(", ")}.`,
    "",
    "## CPU profiles",
    "",
    "Main thread of the server, in a separate pass (the profiler costs throughput), started and stopped through the inspector exactly around the measurement window (bench/profile-hook.ts), so start-up and set-up are not in them; summarised by bench/profile.ts. `(native ...)` is V8 builtins and C++ bindings called from JavaScript: `run` under jose's WebCrypto call is the main thread's share of an ES256 verification (the rest runs on libuv's thread pool and shows as server CPU above 1 core), `writeUtf8String` is a socket write (ioredis sends each command as a string). `DOMException` comes from connect aborting each call's AbortSignal when the call ends.",
    "",
    ...r.profiles.map((p) => profileMarkdown(p.title, p.summary)),
  ].join("\n");
}
