/**
 * Turns the figures of one benchmark run into bench/results.md (and the table printed at the end of the run).
 * docs/performance.md explains the method and reads the figures.
 */
import type { H2load, H2loadStats } from "./h2load.js";
import { markdown as profileMarkdown, type ProfileSummary } from "./profile.js";
import type { KeyKind } from "./redis-stats.js";
import type { LoadResult, LoopDelay } from "./spec.js";
import type { ServerCounts } from "./verify.js";

/** How an h2load window's answers were checked (bench/verify.ts). */
export interface Checks {
  /** What the sample calls before and after the window got. */
  before: string[];
  after: string[];
  /** The sample calls that failed, with why. */
  failures: string[];
  /** Tessera's counters over the whole h2load run (warm-up, window, calls in flight at its end). */
  server?: ServerCounts;
}

/** One measured scenario: the generator's figures plus what the orchestrator read around the window. */
export interface Measured {
  name: string;
  /** Which generator drove it: h2load, or the Node generator (bench/load.ts). Absent: the Node generator. */
  generator?: "h2load" | "node";
  load: LoadResult;
  /** CPU used during the window, in cores (1 = one core busy all the time): the server, the generator, Redis. */
  serverCores: number;
  loadCores: number;
  redisCores?: number;
  /** CPU the rest of the machine used meanwhile (other people's work skews the figures). */
  otherCores: number;
  /** Cores nobody used during the window. */
  idleCores?: number;
  /** CPU microseconds per call completed in the window: the server's process tree, the generator. */
  serverUsPerCall?: number;
  loadUsPerCall?: number;
  /** Redis commands per call, scripts' inner commands included (INFO stats), and by command name. */
  redisPerCall?: { total: number; calls: Record<string, number> };
  /** Peak VmRSS of the server process during the window, bytes. */
  peakRss: number;
  /** Fixed-rate passes: the server's event-loop delay over the window (bench/loop-delay-hook.ts). */
  serverLoopDelay?: LoopDelay;
  /** Fixed-rate passes: the p99 of every round, in order (this pass is the one with the median). */
  roundsP99?: number[];
  /** Tessera's throughput scenarios: the grpc-js no-op's req/s under the same generator, mean of the passes around it. */
  ceilingRps?: number;
  /** h2load scenarios: h2load's own counts, the request sent, the answers' checks. */
  h2load?: H2loadStats;
  scenario?: string;
  checks?: Checks;
  /** Why the figures are not to be taken as a result (sample calls failed, errors): the scenario failed. */
  failed?: string;
}

/** Nearest-rank figures of a set of durations, ms. */
export interface VisibilityFigures {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** Cores used over a part's measurement: its own processes (the bench, its servers, Redis), everybody else's, idle. */
export interface CpuShare {
  ownCores: number;
  otherCores: number;
  idleCores: number;
}

/** Revocation visibility at several sidecars on one authority (bench/sidecar.ts, visibility). */
export interface VisibilityReport {
  /** Over the revocations (the minting before them left out). */
  cpu: CpuShare;
  sidecars: number;
  revocations: number;
  /** From the Revoke's answer (t0) until the last sidecar's REVOKED answer arrived; that poll's round trip included. */
  all: VisibilityFigures;
  /** From t0 until the first sidecar's REVOKED answer arrived. */
  first: VisibilityFigures;
  byKind: Record<"token" | "session" | "subject", VisibilityFigures>;
  /** The Revoke call's own round trip at the authority. */
  revoke: VisibilityFigures;
  /** Every poll's round trip (an Introspect at a sidecar). */
  poll: VisibilityFigures;
  polls: number;
  /** Revocations every sidecar already answered REVOKED on the first poll after t0. */
  atFirstPoll: number;
  failed?: string;
}

/** Sidecar memory per live revocation (bench/sidecar.ts, sidecarMemory). Bytes and ms. */
export interface SidecarMemoryReport {
  revocations: number;
  /** Store calls in flight while writing them. */
  concurrency: number;
  /** Least of several readings a second apart, settled, before and after: heap used (GET /metrics), VmRSS. */
  heapBefore: number;
  heapAfter: number;
  rssBefore: number;
  rssAfter: number;
  /** First write to the last write's answer. */
  writeMs: number;
  /** First write until the sidecar held them all (read every 50 ms); and from the last write's answer until then. */
  takeInMs: number;
  afterLastWriteMs: number;
  /** Redis used_memory growth over the writes: the revoked-token keys and the feed entries. */
  redisBytes: number;
  /** From the first write until the sidecar held them all. */
  cpu: CpuShare;
}

/**
 * The SDK's in-process verifier (createVerifier, mode "local": the sidecar's code in the caller's process), each
 * measurement in a child process of its own (bench/verifier.ts, bench/verifier-worker.ts).
 */
export interface VerifierReport {
  throughput?: VerifierThroughput;
  visibility?: VerifierVisibility;
}

/** One valid token verified back to back in the worker, after a warm-up. */
export interface VerifierThroughput {
  /** What each call was: `verify(token, …)` as the worker made it. */
  call: string;
  warmupMs: number;
  /** Verifications completed in the measured window. */
  verifications: number;
  /** The worker's CPU over the window (process.cpuUsage: user + system, every thread of the process), and its wall time. */
  cpuSeconds: number;
  wallSeconds: number;
  /** Answers that were not active, or calls that threw, in warm-up and window (any is a failure). */
  wrong: number;
  /** Over the window: the part's own processes (the worker, the authority, Redis, the orchestrator), others', idle. */
  cpu: CpuShare;
  failed?: string;
}

/** Revocation visibility at one in-process verifier, measured in its own process (no network hop to poll it). */
export interface VerifierVisibility {
  /** Over the revocations (the minting before them left out). */
  cpu: CpuShare;
  revocations: number;
  /** From the Revoke's answer (t0) until a verify call answered revoked (that call's own time included). */
  all: VisibilityFigures;
  byKind: Record<"token" | "session" | "subject", VisibilityFigures>;
  /** The Revoke call's own round trip at the authority. */
  revoke: VisibilityFigures;
  /** Every poll's own time (one verify call). */
  poll: VisibilityFigures;
  polls: number;
  /** Revocations the verifier already answered revoked on the first poll after t0. */
  atFirstPoll: number;
  failed?: string;
}

export interface Report {
  machine: { cpu: string; cores: number; memGiB: number; node: string; redis: string; versions: Record<string, string> };
  command: string;
  startedAt: string;
  durationS: number;
  h2load: H2load;
  load: {
    connections: number;
    streams: number;
    h1Connections: number;
    rateStreams: number;
    rateRounds: number;
    /** The Node generator's calls in flight. */
    concurrency: number;
    client: "lean" | "connect";
    warmupMs: number;
    windowMs: number;
    bracketMs: number;
  };
  /** The parts the run measured (BENCH_ONLY), and whether that is a subset. */
  parts: string[];
  subset: boolean;
  /** h2load: the grpc-js no-op, the ceiling; every grpc-js no-op pass in order (grpcjs first, then the short ones). */
  grpcjs?: Measured;
  brackets: Measured[];
  /** h2load: the connect-node no-op (Tessera's stack without Tessera) over gRPC and over the Connect protocol. */
  connectGrpc?: Measured;
  connectConnect?: Measured;
  /** h2load: Tessera. */
  introspect?: Measured;
  introspectConnect?: Measured;
  issue?: Measured;
  /** h2load at a fixed rate (half of Introspect's maximum): Tessera's Introspect and the grpc-js no-op. */
  halfRate?: Measured;
  grpcjsHalfRate?: Measured;
  /** node:http2 alone (bench/servers/noop-h2.ts) at the same fixed rate: the runtime's floor. */
  h2HalfRate?: Measured;
  /**
   * h2load: the same build on its in-process memory store (no TESSERA_REDIS_URL): its Introspect at full speed, and in
   * the fixed-rate rounds. What Tessera's own path costs, without the store's round trip.
   */
  introspectMemory?: Measured;
  memoryHalfRate?: Measured;
  /** h2load --h1: oidc-provider's introspection. */
  peer?: Measured;
  /** The Node generator: the grpc-js no-op (and its passes), Refresh, Issue for a new subject per call, the Introspect mix. */
  node: { grpcjs?: Measured; brackets: Measured[]; refresh?: Measured; issueFresh?: Measured; mix?: Measured };
  /** Per workload: Redis round trips per call, and the commands Tessera's client sent per call, by name. */
  roundTrips?: Array<{ name: string; calls: number; roundTrips: number; commands: Record<string, number> }>;
  /** used_memory growth per session opened, and the keys in the database afterwards, by kind. */
  /** bytes: all-in right after opening; lifelong: what is left once the risk keys and the audit stream are gone. */
  sessionMemory?: { sessions: number; bytes: number; lifelong: number; kinds: KeyKind[] };
  rss?: { hwm: number; byScenario: Array<{ name: string; rss: number }> };
  /** h2load: the sidecar's Introspect (answered from the JWKS and the revocation feed, no Redis), bracketed like Tessera's. */
  sidecar?: Measured;
  visibility?: VisibilityReport;
  sidecarMemory?: SidecarMemoryReport;
  /** The SDK's in-process verifier (createVerifier, mode "local"): throughput per core, revocation visibility. */
  verifier?: VerifierReport;
  profiles?: Array<{ title: string; summary: ProfileSummary }>;
  /**
   * Tessera on a Redis Cluster of `primaries` primaries beside one Redis: per scenario, one pass on each side per
   * round, each round with both authorities started afresh (the Cluster first in the second, fourth... round).
   */
  cluster?: {
    primaries: number;
    windowMs: number;
    rows: Array<{ name: string; rounds: Array<{ single: Measured; cluster: Measured }> }>;
  };
}

const f = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "–");
const ms = (n: number) => f(n, n < 10 ? 2 : 1);
const mib = (bytes: number) => f(bytes / 2 ** 20, 0);
const perCall = (calls: Record<string, number>) =>
  Object.entries(calls)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name} ${f(n, 2)}`)
    .join(", ");
const ok = (m: Measured | undefined): m is Measured => m !== undefined && !m.failed;

interface Row {
  label: string;
  m: Measured;
  /** The ratio to the grpc-js no-op under the same generator (undefined: not meaningful, e.g. a fixed rate). */
  ratio?: number;
}

/** Every measured scenario in table order, with its ratio to the grpc-js no-op. */
function rows(r: Report): Row[] {
  const out: Row[] = [];
  const g = ok(r.grpcjs) ? r.grpcjs.load.rps : NaN;
  const add = (label: string, m: Measured | undefined, ratio?: (m: Measured) => number) => {
    if (m) out.push({ label, m, ...(ratio ? { ratio: ratio(m) } : {}) });
  };
  const toCeiling = (m: Measured) => m.load.rps / (m.ceilingRps ?? NaN);
  const toGrpcjs = (m: Measured) => m.load.rps / g;
  add("ceiling: grpc-js no-op, gRPC", r.grpcjs, toGrpcjs);
  add("reference: connect-node no-op, gRPC", r.connectGrpc, toGrpcjs);
  add("reference: connect-node no-op, Connect protocol (application/proto)", r.connectConnect, toGrpcjs);
  add("**Tessera Introspect, gRPC** (one valid token)", r.introspect, toCeiling);
  add("Tessera Introspect, gRPC, memory store (the same build, no Redis)", r.introspectMemory, toCeiling);
  add("Tessera Introspect, Connect protocol (application/proto)", r.introspectConnect, toCeiling);
  add("**Sidecar Introspect, gRPC** (one valid token; JWKS and revocation feed held in memory)", r.sidecar, toCeiling);
  add("**Tessera Issue, gRPC** (one subject)", r.issue, toCeiling);
  const rate = r.halfRate?.load.offeredRps ?? r.grpcjsHalfRate?.load.offeredRps;
  add(`**Tessera Introspect, gRPC, fixed rate ${f(rate ?? NaN)}/s** (~50 % of max)`, r.halfRate);
  add(`Tessera Introspect, gRPC, memory store, at the same fixed rate`, r.memoryHalfRate);
  add(`grpc-js no-op, gRPC, at the same fixed rate`, r.grpcjsHalfRate);
  add(`node:http2 no-op (no framework), gRPC, at the same fixed rate`, r.h2HalfRate);
  add("**peer: oidc-provider RFC 7662 introspection**, HTTP/1.1", r.peer, toGrpcjs);
  add("grpc-js no-op, gRPC (ceiling of the Node generator's rows)", r.node.grpcjs, () => 1);
  add("**Tessera Refresh, gRPC**", r.node.refresh, toCeiling);
  add("Tessera Issue, gRPC, a new subject per call", r.node.issueFresh, toCeiling);
  add("Tessera Introspect mix (80 % valid, 10 % revoked, 10 % garbage), gRPC", r.node.mix, toCeiling);
  return out;
}

const generatorLabel = (m: Measured) =>
  m.generator === "h2load" ? `h2load${m.h2load?.command.includes("--h1") ? " --h1" : ""}${m.load.offeredRps ? " --rps" : ""}` : "Node (bench/load.ts)";

/** What the errors column says: h2load's failures and 4xx/5xx, Tessera's non-OK codes, or the Node generator's errors. */
function errorsCell(m: Measured): string {
  const parts: string[] = [];
  const h = m.h2load;
  if (h) {
    parts.push(`${h.failed + h.errored + h.timeout}`);
    const bad = h.status["4xx"] + h.status["5xx"];
    if (bad > 0) parts.push(`${bad} HTTP 4xx/5xx`);
  } else parts.push(`${m.load.errors}`);
  const server = m.checks?.server;
  if (server) {
    const nonOk = Object.entries(server.codes).filter(([code]) => code !== "OK" && code !== "Canceled");
    if (nonOk.length > 0) parts.push(`Tessera: ${nonOk.map(([c, n]) => `${n} ${c}`).join(", ")}`);
    if (server.codes.Canceled) parts.push(`${server.codes.Canceled} Canceled at h2load's end`);
  }
  if (m.load.skipped) parts.push(`+${m.load.skipped} not sent`);
  return parts.join("; ");
}

/** What the checks column says: sample calls and Tessera's counters (h2load), or that the generator checked all. */
function checksCell(m: Measured): string {
  if (m.failed) return `**FAILED**: ${m.failed}`;
  const c = m.checks;
  if (!c) return "every answer, by the generator";
  const n = c.before.length + c.after.length;
  const server = c.server ? `; Tessera counted ${c.server.codes.OK ?? 0} OK` : "";
  return `${n}/${n + c.failures.length} sample calls OK${server}`;
}

/** The main table: every scenario with throughput, latency, ratio, CPU per call, CPU split, Redis, errors, checks. */
export function resultsTable(r: Report): string {
  const head =
    "| scenario | generator | req/s | p50 ms | p99 ms | p99.9 ms | × grpc-js no-op | server CPU µs/call | generator CPU µs/call | CPU cores: server / generator / Redis / others / idle | Redis cmds/call | errors | answers checked |";
  const lines = rows(r).map(({ label, m, ratio }) => {
    const l = m.load;
    const cpu = `${f(m.serverCores, 2)} / ${f(m.loadCores, 2)} / ${f(m.redisCores ?? 0, 2)} / ${f(m.otherCores, 2)} / ${f(m.idleCores ?? NaN, 2)}`;
    const figures = m.failed
      ? "**FAILED** | – | – | – | –"
      : `${f(l.rps)} | ${ms(l.p50)} | ${ms(l.p99)} | ${ms(l.p999)} | ${ratio === undefined ? "–" : f(ratio, 2)}`;
    return `| ${label} | ${generatorLabel(m)} | ${figures} | ${f(m.serverUsPerCall ?? NaN)} | ${f(m.loadUsPerCall ?? NaN, 1)} | ${cpu} | ${m.redisPerCall ? f(m.redisPerCall.total, 2) : "–"} | ${errorsCell(m)} | ${checksCell(m)} |`;
  });
  return [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |", ...lines].join("\n");
}

/**
 * The sidecar's figures that are no throughput row (revocation visibility, memory per revocation) and the SDK's
 * in-process verifier's (its revocation visibility beside the sidecars', its verifications per core); "" if none ran.
 */
export function sidecarTable(r: Report): string {
  const lines: string[] = [];
  const three = (x: VisibilityFigures) => `${ms(x.p50)} / ${ms(x.p99)} / ${ms(x.max)} ms`;
  const v = r.visibility;
  if (v) {
    const failed = v.failed ? `; **FAILED**: ${v.failed}` : "";
    const cpu = `; CPU meanwhile (cores): the part's own processes ${f(v.cpu.ownCores, 2)}, others ${f(v.cpu.otherCores, 2)}, idle ${f(v.cpu.idleCores, 2)}`;
    lines.push(
      `| **revocation visible at all ${v.sidecars} sidecars**, p50 / p99 / max | ${three(v.all)} | ${v.all.count} revocations, one at a time: from the instant the authority's Revoke answer arrived until the last sidecar's REVOKED answer arrived (polled back to back, one Introspect in flight per sidecar), so one poll's round trip is included: p50 ${ms(v.poll.p50)}, p99 ${ms(v.poll.p99)} ms over ${v.polls} polls; ${v.atFirstPoll} revocations were REVOKED at every sidecar on the first poll${cpu}${failed} |`,
      `| by token / by session / by subject, p99 | ${ms(v.byKind.token.p99)} / ${ms(v.byKind.session.p99)} / ${ms(v.byKind.subject.p99)} ms | ${v.byKind.token.count} / ${v.byKind.session.count} / ${v.byKind.subject.count} revocations; p50 ${ms(v.byKind.token.p50)} / ${ms(v.byKind.session.p50)} / ${ms(v.byKind.subject.p50)} ms |`,
      `| revocation visible at the first sidecar, p50 / p99 / max | ${three(v.first)} | |`,
      `| the Revoke call at the authority, p50 / p99 / max | ${three(v.revoke)} | its own round trip, before t0 |`,
    );
  }
  const vv = r.verifier?.visibility;
  if (vv) {
    const fine = (x: number) => (x < 1 ? f(x, 3) : ms(x));
    const failed = vv.failed ? `; **FAILED**: ${vv.failed}` : "";
    lines.push(
      `| **revocation visible at the in-process verifier** (SDK, \`createVerifier\` local mode), p50 / p99 / max | ${fine(vv.all.p50)} / ${fine(vv.all.p99)} / ${fine(vv.all.max)} ms | ${vv.all.count} revocations, one at a time, by token / session / subject in turn (p99 ${fine(vv.byKind.token.p99)} / ${fine(vv.byKind.session.p99)} / ${fine(vv.byKind.subject.p99)} ms): from the instant the authority's Revoke answer arrived until a \`verify\` call in the verifier's own process (a child process with the Revoke client in it) answered revoked, polled on every turn of its event loop (one poll p50 ${f(vv.poll.p50 * 1000, 1)} µs, p99 ${f(vv.poll.p99 * 1000, 1)} µs, ${vv.polls} polls); ${vv.atFirstPoll} revocations were revoked on the first poll; the Revoke's own round trip p50 ${ms(vv.revoke.p50)} ms; CPU meanwhile (cores): the part's own processes ${f(vv.cpu.ownCores, 2)} (the polling worker busy by design), others ${f(vv.cpu.otherCores, 2)}, idle ${f(vv.cpu.idleCores, 2)}${failed} |`,
    );
  }
  const m = r.sidecarMemory;
  if (m) {
    const per = (a: number, b: number) => f((b - a) / m.revocations);
    lines.push(
      `| **sidecar memory per live revocation**, heap / RSS | ${per(m.heapBefore, m.heapAfter)} B / ${per(m.rssBefore, m.rssAfter)} B (${f(((m.heapAfter - m.heapBefore) / m.revocations) * 1e5 / 2 ** 20, 1)} / ${f(((m.rssAfter - m.rssBefore) / m.revocations) * 1e5 / 2 ** 20, 1)} MiB per 100 000) | ${m.revocations} token revocations (UUID subject, 22-character jti): heap used ${f(m.heapBefore / 2 ** 20, 1)} → ${f(m.heapAfter / 2 ** 20, 1)} MiB (\`tessera_nodejs_heap_size_used_bytes\`), RSS ${f(m.rssBefore / 2 ** 20, 1)} → ${f(m.rssAfter / 2 ** 20, 1)} MiB (VmRSS), each the least of 5 readings a second apart once settled; Redis used_memory grew ${f(m.redisBytes / m.revocations)} B per revocation (key and feed entry) |`,
      `| time to take ${m.revocations} revocations in | ${f(m.takeInMs / 1000, 2)} s | from the first write until the sidecar held them all (read every 50 ms), ${f(m.afterLastWriteMs)} ms after the last write's answer; written through RedisStore.revokeToken with ${m.concurrency} calls in flight in ${f(m.writeMs / 1000, 2)} s; CPU meanwhile (cores): the part's own processes ${f(m.cpu.ownCores, 2)}, others ${f(m.cpu.otherCores, 2)}, idle ${f(m.cpu.idleCores, 2)} |`,
    );
  }
  const vt = r.verifier?.throughput;
  if (vt) {
    const figures = vt.failed ? "**FAILED**" : `${f(vt.verifications / vt.cpuSeconds)} (${f((vt.cpuSeconds * 1e6) / vt.verifications, 2)} µs of CPU each)`;
    lines.push(
      `| **in-process verifier** (SDK, \`createVerifier\` local mode): verifications per second per core | ${figures} | ${vt.verifications} verifications of one valid access token (its signature from the verified cache), \`${vt.call}\` back to back, in ${f(vt.wallSeconds, 2)} s after a ${f(vt.warmupMs / 1000, 1)} s warm-up, in a child process of its own, ÷ that process's CPU over the window (${f(vt.cpuSeconds, 2)} s, process.cpuUsage: user + system, every thread); ${f(vt.verifications / vt.wallSeconds)} per wall second; every answer checked active${vt.failed ? `; **FAILED**: ${vt.failed}` : ""}; CPU meanwhile (cores): the part's own processes ${f(vt.cpu.ownCores, 2)}, others ${f(vt.cpu.otherCores, 2)}, idle ${f(vt.cpu.idleCores, 2)} |`,
    );
  }
  if (lines.length === 0) return "";
  const head = r.verifier ? "| sidecar, in-process verifier | measured | how |" : "| sidecar | measured | how |";
  return [head, "| --- | ---: | --- |", ...lines].join("\n");
}

type Target = [what: string, got: string, met: boolean | undefined];

type ClusterRow = NonNullable<Report["cluster"]>["rows"][number];
const median = (xs: number[]) => {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length === 0 ? NaN : v.length % 2 === 1 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
};
const passRatio = (p: ClusterRow["rounds"][number]) => (p.single.failed || p.cluster.failed ? NaN : p.cluster.load.rps / p.single.load.rps);
/** The median of the rounds' ratios (a failed pass counts as no ratio). */
const clusterRatio = (row: ClusterRow) => median(row.rounds.map(passRatio));
const clusterFailed = (row: ClusterRow) => row.rounds.flatMap((p) => [p.single, p.cluster]).find((m) => m.failed);

/** The Cluster beside one Redis, per scenario: each round's ratio, the median, and the median req/s and CPU on each side. */
function clusterTable(r: Report): string {
  const c = r.cluster!;
  const side = (row: ClusterRow, which: "single" | "cluster") => {
    const ms = row.rounds.map((p) => p[which]).filter((m) => !m.failed);
    return ms.length === 0
      ? "**FAILED**"
      : `${f(median(ms.map((m) => m.load.rps)))} req/s, ${f(median(ms.map((m) => m.serverUsPerCall ?? NaN)))} µs/call (${ms.map((m) => f(m.serverUsPerCall ?? NaN)).join(", ")})`;
  };
  return [
    `| scenario | one Redis: median req/s, server CPU per call (each round) | Redis Cluster, ${c.primaries} primaries: the same | Cluster ÷ one Redis, each round | **median** |`,
    "| --- | --- | --- | --- | ---: |",
    ...c.rows.map(
      (row) =>
        `| ${row.name} | ${side(row, "single")} | ${side(row, "cluster")} | ${row.rounds.map((p, i) => `${f(passRatio(p), 2)}${i % 2 === 1 ? "*" : ""}`).join(", ")} | **${f(clusterRatio(row), 2)}** |`,
    ),
  ].join("\n");
}

function targetRows(r: Report): Target[] {
  const out: Target[] = [];
  const failed = (m: Measured) => `**failed**: ${m.failed}`;
  const ratioTarget = (what: string, m: Measured | undefined, min: number, note = "") => {
    if (!m) return;
    if (m.failed) return void out.push([what, failed(m), undefined]);
    const x = m.load.rps / (m.ceilingRps ?? NaN);
    out.push([what, `${f(x, 2)} × (${f(m.load.rps)} vs ${f(m.ceilingRps ?? NaN)} req/s, the no-op's passes right before and after)${note}`, Number.isFinite(x) ? x >= min : undefined]);
  };
  ratioTarget("Introspect (gRPC, h2load) ≥ 0.5 × the grpc-js no-op", r.introspect, 0.5);
  ratioTarget("Issue (gRPC, h2load) ≥ 0.25 × the grpc-js no-op", r.issue, 0.25);
  const onCluster = r.cluster?.rows.find((row) => row.name.startsWith("Introspect"));
  if (onCluster) {
    const what = `Introspect on a Redis Cluster (${r.cluster!.primaries} primaries) ≥ 0.9 × on one Redis`;
    const x = clusterRatio(onCluster);
    const bad = clusterFailed(onCluster);
    const rounds = onCluster.rounds.map((p) => f(passRatio(p), 2)).join(", ");
    if (bad) out.push([what, failed(bad), undefined]);
    else out.push([what, `${f(x, 2)} × (the median of ${onCluster.rounds.length} rounds, each with both authorities started afresh: ${rounds})`, Number.isFinite(x) ? x >= 0.9 : undefined]);
  }
  const refresh = r.node.refresh;
  const noopUs = ok(r.grpcjs) ? r.grpcjs.serverUsPerCall : undefined;
  ratioTarget(
    "Refresh (gRPC) ≥ 0.25 × the grpc-js no-op",
    refresh,
    0.25,
    `; **both driven by the Node generator** (h2load cannot send a fresh refresh token per call), which may set the no-op's pace` +
      (refresh && noopUs !== undefined ? `; by server CPU per call instead: ${f(noopUs)} µs (no-op under h2load) / ${f(refresh.serverUsPerCall ?? NaN)} µs = ${f(noopUs / (refresh.serverUsPerCall ?? NaN), 2)}` : ""),
  );
  ratioTarget(
    "Sidecar Introspect (gRPC, h2load) ≥ 0.8 × the grpc-js no-op",
    r.sidecar,
    0.8,
    r.sidecar && noopUs !== undefined ? `; server CPU per call ${f(r.sidecar.serverUsPerCall ?? NaN)} µs against the no-op's ${f(noopUs)} µs` : "",
  );
  const vis = r.visibility;
  if (vis) {
    const what = `Revocation visible at all ${vis.sidecars} sidecars: p99 < 100 ms`;
    if (vis.failed) out.push([what, `**failed**: ${vis.failed}`, undefined]);
    else {
      out.push([
        what,
        `p99 ${ms(vis.all.p99)} ms (p50 ${ms(vis.all.p50)}, max ${ms(vis.all.max)}; ${vis.all.count} revocations, from the Revoke's answer until the last sidecar's REVOKED answer arrived, which includes one poll's round trip: p50 ${ms(vis.poll.p50)} ms)`,
        vis.all.p99 < 100,
      ]);
    }
  }
  const vt = r.verifier?.throughput;
  if (vt) {
    const what = "In-process verifier (SDK, local mode) ≥ 200 000 verifications/s per core";
    if (vt.failed) out.push([what, `**failed**: ${vt.failed}`, undefined]);
    else {
      const perCore = vt.verifications / vt.cpuSeconds;
      out.push([
        what,
        `${f(perCore)} per CPU second of the verifier's process (${f((vt.cpuSeconds * 1e6) / vt.verifications, 2)} µs each; ${vt.verifications} verifications of one cached valid token on ${f(vt.cpuSeconds, 2)} s of CPU in ${f(vt.wallSeconds, 2)} s)`,
        perCore >= 200_000,
      ]);
    }
  }
  const vv = r.verifier?.visibility;
  if (vv) {
    const what = "(reported) Revocation visible at the in-process verifier";
    const fine = (x: number) => (x < 1 ? f(x, 3) : ms(x));
    if (vv.failed) out.push([what, `**failed**: ${vv.failed}`, undefined]);
    else {
      out.push([
        what,
        `p99 ${fine(vv.all.p99)} ms (p50 ${fine(vv.all.p50)}, max ${fine(vv.all.max)}; ${vv.all.count} revocations, from the Revoke's answer until a verify in the verifier's process answered revoked); the sidecars' target is p99 < 100 ms`,
        undefined,
      ]);
    }
  }
  const mem = r.sidecarMemory;
  if (mem) {
    out.push([
      "(reported, no target) Sidecar memory per live revocation",
      `${f((mem.heapAfter - mem.heapBefore) / mem.revocations)} B of heap, ${f((mem.rssAfter - mem.rssBefore) / mem.revocations)} B of RSS (${mem.revocations} token revocations); all taken in ${f(mem.takeInMs / 1000, 2)} s after the first write`,
      undefined,
    ]);
  }
  const half = r.halfRate;
  const noopHalf = r.grpcjsHalfRate;
  if (half) {
    if (half.failed) out.push(["Introspect p99 < 5 ms at ~50 % of max", failed(half), undefined]);
    else {
      const noopP99 = noopHalf && !noopHalf.failed ? noopHalf.load.p99 : NaN;
      const met = half.load.p99 < 5 || (noopP99 > 5 && half.load.p99 <= 1.5 * noopP99);
      out.push([
        "Introspect p99 < 5 ms at ~50 % of max (or ≤ 1.5 × the grpc-js no-op's p99 at the same rate, when that is above 5 ms)",
        `${ms(half.load.p99)} ms at ${f(half.load.rps)} of ${f(half.load.offeredRps ?? NaN)} req/s offered; the grpc-js no-op at the same rate: ${ms(noopP99)} ms (${f(half.load.p99 / noopP99, 2)} ×)` +
          (r.memoryHalfRate && !r.memoryHalfRate.failed ? `; Tessera on its memory store (no Redis round trip): ${ms(r.memoryHalfRate.load.p99)} ms` : "") +
          (r.h2HalfRate && !r.h2HalfRate.failed ? `; node:http2 alone, no framework: ${ms(r.h2HalfRate.load.p99)} ms` : ""),
        met,
      ]);
    }
  }
  if (r.introspect && r.peer) {
    const what = "Introspect at least as fast as oidc-provider's introspection";
    if (r.introspect.failed || r.peer.failed) out.push([what, failed(r.introspect.failed ? r.introspect : r.peer), undefined]);
    else {
      const x = r.introspect.load.rps / r.peer.load.rps;
      out.push([
        what,
        `${f(x, 2)} × (${f(r.introspect.load.rps)} vs ${f(r.peer.load.rps)} req/s, both under h2load, 64 calls in flight); server CPU per call ${f(r.introspect.serverUsPerCall ?? NaN)} vs ${f(r.peer.serverUsPerCall ?? NaN)} µs`,
        x >= 1,
      ]);
    }
  }
  if (r.introspectConnect) {
    const m = r.introspectConnect;
    out.push([
      "(reported, no target) Introspect over the Connect protocol",
      m.failed
        ? failed(m)
        : `${f(m.load.rps / (m.ceilingRps ?? NaN), 2)} × the grpc-js no-op; ${f(ok(r.introspect) ? m.load.rps / r.introspect.load.rps : NaN, 2)} × Introspect over gRPC; ${f(ok(r.connectConnect) ? m.load.rps / r.connectConnect.load.rps : NaN, 2)} × the connect-node no-op over the Connect protocol`,
      undefined,
    ]);
  }
  const introspectTrips = r.roundTrips?.find((x) => x.name === "Introspect, valid tokens")?.roundTrips;
  if (introspectTrips !== undefined) {
    out.push([
      "Introspect: at most one Redis round trip per call",
      `${f(introspectTrips, 2)} round trips (the audit trail's batched background writes included)${r.introspect?.redisPerCall ? `, ${f(r.introspect.redisPerCall.total, 2)} commands per call under h2load` : ""}`,
      introspectTrips < 1.02,
    ]);
  }
  if (r.sessionMemory) {
    out.push([
      "Redis memory per open session < 1 KiB",
      `${f(r.sessionMemory.lifelong)} B held for the session's life; ${f(r.sessionMemory.bytes)} B all-in right after the login (with the subject's risk observations, kept for the risk window, and the login's audit entry, in a log capped by count and age)`,
      r.sessionMemory.lifelong < 1024,
    ]);
  }
  if (r.rss && r.rss.byScenario.length > 0) {
    const growth = r.rss.byScenario.length > 1 ? r.rss.byScenario.at(-1)!.rss - r.rss.byScenario[0]!.rss : NaN;
    out.push([
      "Authority RSS bounded under load",
      `peak ${mib(r.rss.hwm)} MiB (VmHWM); RSS after the last scenario − after the first: ${f(growth / 2 ** 20, 1)} MiB`,
      r.rss.hwm < 512 * 2 ** 20,
    ]);
  }
  return out;
}

export function targetsTable(r: Report): string {
  const met = (x: boolean | undefined) => (x === undefined ? "–" : x ? "yes" : "**no**");
  return ["| target | measured | met? |", "| --- | --- | --- |", ...targetRows(r).map(([what, got, x]) => `| ${what} | ${got} | ${met(x)} |`)].join("\n");
}

/** ["a", "a", "b"] -> "2 × a, 1 × b". */
function grouped(outcomes: string[]): string {
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(o, (counts.get(o) ?? 0) + 1);
  return [...counts].map(([o, n]) => `${n} × ${o}`).join(", ") || "none";
}

/** Per h2load scenario: the body, the sample calls, h2load's own counts and Tessera's counters. */
function checksTable(r: Report): string {
  const lines = rows(r)
    .filter(({ m }) => m.h2load)
    .map(({ label, m }) => {
      const h = m.h2load!;
      const c = m.checks;
      const samples = c
        ? `${grouped(c.before)} / ${grouped(c.after)}${c.failures.length > 0 ? `; **failed**: ${c.failures.join("; ")}` : ""}`
        : "–";
      const server = c?.server;
      const counted = server
        ? `${Object.entries(server.codes).map(([code, n]) => `${n} ${code}`).join(", ") || "none"}` +
          (Object.keys(server.introspect).length > 0 ? `; answers: ${Object.entries(server.introspect).map(([k, n]) => `${n} ${k}`).join(", ")}` : "") +
          (server.evicted > 0 ? `; ${server.evicted} sessions evicted (${f(server.evicted / Math.max(1, server.codes.OK ?? 0), 2)} per call)` : "") +
          (server.reuse > 0 ? `; ${server.reuse} refresh reuses` : "")
        : "– (not Tessera)";
      return `| ${label} | ${m.scenario ?? "–"} | ${samples} | ${h.succeeded} / ${h.failed} / ${h.errored} / ${h.timeout}; ${h.status["2xx"]} / ${h.status["3xx"]} / ${h.status["4xx"]} / ${h.status["5xx"]} | ${counted} |`;
    });
  return [
    "| scenario | body (sent on every call) | sample calls before / after the window | h2load in the window: succeeded / failed / errored / timeout; HTTP 2xx / 3xx / 4xx / 5xx | Tessera's counters over the whole h2load run (gRPC codes) |",
    "| --- | --- | --- | --- | --- |",
    ...lines,
  ].join("\n");
}

/** The fixed-rate passes: latency beside the server's event-loop delay and GC pauses over the same window. */
function fixedRateTable(r: Report): string {
  const list = [
    ["Tessera Introspect, gRPC", r.halfRate],
    ["Tessera Introspect, gRPC, memory store", r.memoryHalfRate],
    ["grpc-js no-op, gRPC", r.grpcjsHalfRate],
    ["node:http2 no-op (no framework), gRPC", r.h2HalfRate],
  ].filter((x): x is [string, Measured] => x[1] !== undefined);
  if (list.length === 0) return "";
  const d = (x: LoopDelay | undefined) => (x ? `${ms(x.p99)} / ${ms(x.max)}` : "–");
  const gc = (x: LoopDelay | undefined) => (x ? `${ms(x.gc.maxMs)} / ${f(x.gc.totalMs)} (${x.gc.count}, ${x.gc.major} major)` : "–");
  return [
    "| fixed rate (the round with the median p99) | offered / achieved req/s | p50 ms | p99 ms | p99 ms of every round | p99.9 ms | max ms | server loop delay p99 / max ms | server GC pauses: longest / total ms (count) | CPU µs/call: server | CPU cores: server / h2load |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...list.map(
      ([name, m]) =>
        `| ${name} | ${f(m.load.offeredRps ?? NaN)} / ${f(m.load.rps)} | ${ms(m.load.p50)} | ${ms(m.load.p99)} | ${(m.roundsP99 ?? [m.load.p99]).map(ms).join(", ")} | ${ms(m.load.p999)} | ${ms(m.load.max)} | ${d(m.serverLoopDelay)} | ${gc(m.serverLoopDelay)} | ${f(m.serverUsPerCall ?? NaN)} | ${f(m.serverCores, 2)} / ${f(m.loadCores, 2)} |`,
    ),
  ].join("\n");
}

/** Every distinct h2load command of the run (the body file shown as <what it holds>, the server's port as <port>). */
function commands(r: Report): string[] {
  const seen = new Map<string, string[]>();
  for (const { label, m } of rows(r)) {
    if (!m.h2load) continue;
    const command = m.h2load.command.replace(/127\.0\.0\.1:\d+/, "127.0.0.1:<port>");
    seen.set(command, [...(seen.get(command) ?? []), label.replace(/\*\*/g, "")]);
  }
  return [...seen].map(([command, labels]) => `- ${labels.join("; ")}:\n\n  \`\`\`\n  ${command}\n  \`\`\``);
}

export function markdown(r: Report): string {
  const m = r.machine;
  const L = r.load;
  const tessera = [r.introspect, r.introspectConnect, r.sidecar, r.issue, r.halfRate, r.node.refresh, r.node.issueFresh, r.node.mix].filter((x): x is Measured => x !== undefined);
  const redisCommands = tessera.map((x) => `| ${x.name} | ${x.redisPerCall ? `${f(x.redisPerCall.total, 2)}: ${perCall(x.redisPerCall.calls)}` : "–"} | ${f(x.redisCores ?? NaN, 2)} |`);
  const outcomes = (x: Measured) => perCall(Object.fromEntries(Object.entries(x.load.outcomes).map(([k, n]) => [k, n / x.load.requests])));
  const nodeErrors = [...r.node.brackets, r.node.refresh, r.node.issueFresh, r.node.mix]
    .filter((x): x is Measured => x !== undefined && x.load.errors > 0)
    .map((x) => `- ${x.name}: ${x.load.errors} errors, e.g. ${x.load.errorSamples.map((e) => `\`${e}\``).join("; ")}`);
  const failures = rows(r)
    .filter(({ m }) => m.failed)
    .map(({ m }) => `- **${m.name} failed**: ${m.failed}`);
  const sm = r.sessionMemory;
  const out = [
    "# Tessera benchmark",
    "",
    `Generated by \`${r.command}\` on ${r.startedAt} (the run took ${f(r.durationS)} s).${r.subset ? ` **A subset run** (BENCH_ONLY): ${r.parts.join(", ")}.` : ""} How the figures are made and how to read them: [docs/performance.md](../docs/performance.md).`,
    "",
    `- Machine: ${m.cpu}, ${m.cores} cores, ${f(m.memGiB)} GiB; Node.js ${m.node}; Redis ${m.redis}; ${r.h2load.version}.`,
    `- Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join(", ")}.`,
    `- Load: **h2load** (one thread, \`-t 1\`) with ${L.connections} HTTP/2 connections × ${L.streams} streams (\`-c ${L.connections} -m ${L.streams}\`), ${L.connections * L.streams} calls in flight, the same fixed request body on every call (listed under Checks); oidc-provider over HTTP/1.1 with ${L.h1Connections} connections, one call in flight on each (\`--h1 -c ${L.h1Connections}\`). Each scenario: ${f(L.warmupMs / 1000, 1)} s warm-up, then ${f(L.windowMs / 1000, 1)} s measured; each waits first (within a budget) for the machine to be quiet. Tessera's throughput scenarios sit between two passes of the grpc-js no-op under the same load (the one before and a ${f(L.bracketMs / 1000, 1)} s pass after), and their ratio is to the mean of those: this VM's speed drifts within a run. The grpc-js no-op's passes in order: ${r.brackets.map((b) => (b.failed ? "failed" : f(b.load.rps))).join(", ") || "–"} req/s.`,
    ...(r.node.brackets.length === 0 ? [] : [`- Refresh (a refresh token is good for one use; presenting it again revokes its session), Issue with a new subject per call and the Introspect mix cannot be one fixed body, so the **Node generator** (bench/load.ts, ${L.concurrency} calls in flight over ${L.connections} HTTP/2 connections, ${L.client === "lean" ? "the lean gRPC transport of bench/lean-transport.ts" : "connect-node's createGrpcTransport"}, every answer checked) drives them, each between two passes of the grpc-js no-op under that same generator, and their ratio is to the mean of those (passes in order: ${r.node.brackets.map((b) => (b.failed ? "failed" : f(b.load.rps))).join(", ") || "–"} req/s). The Node generator costs far more CPU per call than h2load and sets the no-op's pace there (see its generator CPU): compare server CPU per call too.`]),
    `- **h2load, the server and Redis share the same ${m.cores} cores.** CPU per call is the CPU the server's process tree (h2load's process) used over the window, from /proc/<pid>/stat, divided by the calls completed in it; "idle" is what nobody used, so a generator below one core with idle left over was not the limit.`,
    "- Tessera: the Dockerfile's build (`npm run build`: tsc into dist/) run as `node dist/src/main.js` (the bench's loop-delay hook preloaded), Redis store, ES256, TESSERA_LOG_LEVEL=warn, everything else at its default; open mode (no callers file). The memory-store rows: the same, without TESSERA_REDIS_URL (its in-process store), a process of its own with a token of its own (same length).",
    ...(r.sidecar || r.visibility || r.sidecarMemory
      ? [
          "- The sidecar: the same build's `node dist/src/sidecar/main.js`, against an authority as above (TESSERA_SIDECAR_MAX_STALENESS and every other setting at its default, TESSERA_ISSUER and TESSERA_CLOCK_SKEW the same as the authority's), ready once its gRPC health says SERVING. Its Introspect row is measured like Tessera's (same token, same body, between two no-op passes); visibility runs 3 sidecars on an authority of its own (a key prefix of its own on the run's Redis), memory a sidecar on an authority and a Redis of their own. docs/performance.md explains both.",
        ]
      : []),
    ...(r.verifier
      ? [
          "- The in-process verifier: `createVerifier({ mode: \"local\" })` of the same build (`dist/src/client`, what the package exports), its issuer, clock skew and staleness bound as the sidecars have them, on an authority of its own (a key prefix of its own on the run's Redis), in a child process of its own (bench/verifier-worker.ts), one for the throughput and one for the visibility. docs/performance.md explains both.",
        ]
      : []),
    "- h2load counts a call as successful by its HTTP status, and a gRPC error is HTTP 200: so every h2load window has sample calls before and after it (the same bytes replayed and decoded, then the same message through connect-node's client), and on Tessera its counters (GET /metrics: calls by gRPC code, Introspect answers) over the whole h2load run. A scenario whose sample calls fail, or with more than 0.1 % errors, is reported as failed.",
    "",
    "## Results",
    "",
    resultsTable(r),
    "",
    ...(sidecarTable(r) === ""
      ? []
      : [
          `${[
            r.visibility || r.sidecarMemory ? "The sidecar's revocation visibility and memory (bench/sidecar.ts)" : "",
            r.verifier ? "the SDK's in-process verifier, `createVerifier({ mode: \"local\" })` (bench/verifier.ts)" : "",
          ]
            .filter((x) => x !== "")
            .join(", and ")
            .replace(/^t/, "T")}:`,
          "",
          sidecarTable(r),
          "",
        ]),
    ...(failures.length > 0 ? ["Failed scenarios:", "", ...failures, ""] : []),
    "## Targets",
    "",
    targetsTable(r),
    "",
  ];
  if (r.cluster) {
    out.push(
      "## Redis Cluster",
      "",
      `Tessera on a Redis Cluster of ${r.cluster.primaries} primaries (redis-server processes on this machine, \`--cluster-enabled yes\`, joined by \`redis-cli --cluster create\`; TESSERA_REDIS_CLUSTER_NODES) beside Tessera on the run's single Redis (a key prefix of its own), same load as above. The part runs ${r.cluster.rows[0]?.rounds.length ?? 0} rounds; each starts a fresh authority on each side, then measures every scenario on both back to back (${f(r.cluster.windowMs / 1000, 1)} s windows after the same warm-up), one Redis first in odd rounds and the Cluster first in even ones (marked *). A round's ratio is the Cluster's req/s over one Redis's; the scenario's is the median of its rounds'. A start alone moves Tessera's CPU per call by up to a half, which is why one start per side is not enough. The Cluster's processes share the same cores.`,
      "",
      clusterTable(r),
      "",
    );
  }
  if (r.halfRate || r.grpcjsHalfRate) {
    out.push(
      "## Latency at a fixed rate",
      "",
      `h2load \`--rps\` (per connection: the rate / ${L.connections}) with up to ${L.rateStreams} streams per connection, the connections started one by one so that their sends (every 10 ms on each) interleave; latency counts from when h2load sent each call. h2load only delays a send when a connection already has ${L.rateStreams} calls open, so coordinated omission would show as an achieved rate below the offered one. The servers take turns, ${L.rateRounds} rounds; each row is the round with the median p99. The server's event-loop delay and GC pauses over the same window (bench/loop-delay-hook.ts):`,
      "",
      fixedRateTable(r),
      "",
    );
  }
  out.push(
    "## Checks",
    "",
    checksTable(r),
    "",
    ...(r.node.mix ? [`Introspect mix answers (Node generator), share of calls: ${outcomes(r.node.mix)}.`, ""] : []),
    ...(nodeErrors.length > 0 ? ["Node generator errors:", "", ...nodeErrors, ""] : []),
    "h2load commands (the body file, written by the run, named by what it holds):",
    "",
    ...commands(r),
    "",
  );
  if (r.roundTrips || redisCommands.length > 0) {
    out.push("## Redis", "");
    if (r.roundTrips) {
      out.push(
        "Round trips per call: a separate pass, one call at a time (Node generator), with Tessera talking to Redis through a relay that counts its writes (a pipeline or a MULTI…EXEC block is one write; the readiness PINGs are left out). The commands it sent, by name, from MONITOR (without the commands Lua scripts run inside Redis).",
        "",
        "| workload | round trips per call | commands sent per call | calls |",
        "| --- | ---: | --- | ---: |",
        ...r.roundTrips.map((x) => `| ${x.name} | ${f(x.roundTrips, 2)} | ${perCall(x.commands)} | ${x.calls} |`),
        "",
      );
    }
    if (redisCommands.length > 0) {
      out.push(
        "Commands per call during the measured windows (INFO stats total_commands_processed; inner script commands included):",
        "",
        "| scenario | commands per call | Redis CPU (cores) |",
        "| --- | --- | ---: |",
        ...redisCommands,
        "",
      );
    }
  }
  if (sm) {
    out.push(
      `Memory per open session: **${f(sm.lifelong)} bytes held for the session's life, ${f(sm.bytes)} bytes all-in right after the login**. All-in: used_memory after − before opening ${sm.sessions} sessions through Issue on an empty Redis, each for its own subject, with a realistic client (UUID device id, a 120-character user agent, IP, platform). For the session's life: the same once the subjects' risk keys are deleted (their TTL deletes them \`TESSERA_RISK_WINDOW\`, 15 minutes by default, after the subject's last login or refresh) and the audit stream too (a log of every event, capped by \`TESSERA_AUDIT_MAX_EVENTS\` and \`TESSERA_AUDIT_MAX_AGE\` rather than by sessions: at the entry size below, the default cap of 100 000 events is about ${f((((sm.kinds.find((k) => k.pattern.endsWith("audit"))?.bytes ?? NaN) / sm.sessions) * 100_000) / 2 ** 20)} MiB whatever the number of sessions). The keys right after the login, by kind (MEMORY USAGE; key overhead in Redis's dictionaries and expiry table comes on top):`,
      "",
      "| key kind | keys | bytes per session | TTL |",
      "| --- | ---: | ---: | --- |",
      ...sm.kinds.map((k) => `| \`${k.pattern}\` | ${k.count} | ${f(k.bytes / sm.sessions)} | ${k.ttl} |`),
      "",
    );
  }
  if (r.rss) {
    out.push(
      "## Authority memory",
      "",
      `Peak RSS over the whole run (VmHWM, start-up and set-up included): ${mib(r.rss.hwm)} MiB. RSS at the end of each scenario: ${r.rss.byScenario.map((x) => `${x.name} ${mib(x.rss)} MiB`).join(", ")}.`,
      "",
    );
  }
  if (r.profiles && r.profiles.length > 0) {
    out.push(
      "## CPU profiles",
      "",
      "Main thread of the server, in a separate pass under the same h2load load (the profiler costs throughput), started and stopped through the inspector exactly around the measurement window (bench/profile-hook.ts), so start-up and set-up are not in them; summarised by bench/profile.ts. `(native ...)` is V8 builtins and C++ bindings called from JavaScript: `run` under jose's WebCrypto call is the main thread's share of an ES256 verification (the rest runs on libuv's thread pool and shows as server CPU above 1 core), `writeUtf8String` is a socket write (ioredis sends each command as a string).",
      "",
      ...r.profiles.map((p) => profileMarkdown(p.title, p.summary)),
    );
  }
  return out.join("\n");
}
