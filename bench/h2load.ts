/**
 * h2load (nghttp2's C load generator, Debian/Ubuntu package `nghttp2-client`) as the benchmark's load generator for
 * unary calls whose request can be sent as one fixed body: gRPC over h2c (a 5-byte frame prefix + the protobuf bytes),
 * the Connect protocol's unary POST (application/proto) over h2c, and plain HTTP/1.1 form posts (`--h1`).
 *
 * One run at full speed: `h2load -t 1 -c <connections> -m <streams> -D <window> --warm-up-time <warm-up> -d <body
 * file> -H ... --log-file <file> <url>`. h2load prints "Main benchmark duration is started" and "... is over" on
 * stdout (flushed), which is when the orchestrator reads /proc and Redis; its summary gives the calls and HTTP statuses
 * of the window, and its per-request log (start time, status, µs until the response ended; written for the window
 * only) gives the latency percentiles, which h2load itself does not print.
 *
 * One run at a fixed rate: `--rps <rate / connections>`, each connection sending on a timer of its own. h2load's
 * timer fires every 10 ms at most (nghttp2 1.52, h2load.cc: `rps_watcher.repeat = std::max(0.01, 1. / rps)`), so a
 * connection sends rate / connections / 100 calls at once every 10 ms; with every connection started together (as -D
 * does), those bursts coincide and the server gets rate / 100 calls at the same instant, 100 times a second: at 6 000
 * calls/s, 60 at once, which a no-op server takes milliseconds to answer, so the latency measured is mostly the
 * generator's. Instead the connections start one by one, `--rate-period` apart across the 10 ms (`-r 1
 * --rate-period=<10 ms / connections>`), so that their bursts interleave. h2load allows no -D with -r: the run is
 * `-n <calls>` (enough for the connections to start, the warm-up and the window, at the rate), and the window is
 * timed here (it opens once every connection has started and the warm-up has passed) and cut from the per-request log
 * by each call's start time; h2load's summary then covers the whole run.
 *
 * h2load judges a request by its HTTP status only. A gRPC error is HTTP 200 with grpc-status in the trailers, so for
 * gRPC its counts say nothing about the calls' outcome: bench/verify.ts checks that separately.
 */
import { execFileSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { delimiter, join } from "node:path";
import { onStop, startProcess, type Child } from "./procs.js";
import type { LoadResult, WorkloadName } from "./spec.js";

export const H2LOAD_INSTALL = "apt-get install nghttp2-client";

/** A fixed-rate run that ended before its window closed: nothing to report, and worth measuring again. */
export class WindowMissed extends Error {}

export interface H2load {
  path: string;
  /** `h2load --version`, e.g. "h2load nghttp2/1.52.0". */
  version: string;
}

/** h2load is not installed (or not where BENCH_H2LOAD says): the message says what to install. */
export class MissingH2loadError extends Error {}

let found: H2load | undefined;

/**
 * The h2load binary: $BENCH_H2LOAD, else the first `h2load` on $PATH, else /usr/bin/h2load. Throws with what to
 * install when there is none.
 */
export function findH2load(): H2load {
  if (found) return found;
  const candidates = process.env.BENCH_H2LOAD
    ? [process.env.BENCH_H2LOAD]
    : [...(process.env.PATH ?? "").split(delimiter).filter(Boolean).map((dir) => join(dir, "h2load")), "/usr/bin/h2load"];
  for (const path of candidates) {
    try {
      accessSync(path, constants.X_OK);
    } catch {
      continue;
    }
    const version = execFileSync(path, ["--version"], { encoding: "utf8", timeout: 10_000 }).trim();
    found = { path, version };
    return found;
  }
  throw new MissingH2loadError(
    `h2load not found (looked for ${candidates.join(", ")}). The benchmark drives its load with h2load, nghttp2's load generator: ` +
      `install it with \`${H2LOAD_INSTALL}\` (Debian/Ubuntu), or set BENCH_H2LOAD to its path.`,
  );
}

/** One request exactly as h2load sends it, over and over. */
export interface H2Request {
  /** h2c: HTTP/2 without TLS (prior knowledge); h1: HTTP/1.1 (h2load --h1). */
  http: "h2c" | "h1";
  /** Full URL, path included. */
  url: string;
  /** Request headers besides h2load's own (:method POST, :path, :authority, :scheme, user-agent, content-length). */
  headers: Record<string, string>;
  /** The body, sent as is (-d). */
  body: Uint8Array;
}

export interface H2loadLoad {
  /** Connections (-c); with h1, each carries one call at a time. */
  connections: number;
  /** Concurrent streams per connection (-m; h2c only). */
  streams: number;
  warmupMs: number;
  durationMs: number;
  /**
   * Fixed rate, calls per second over all connections: `--rps rate/connections` (h2load's rate is per connection),
   * the connections started one by one (see the header).
   */
  rate?: number;
}

/** What h2load itself reported for the window. */
export interface H2loadStats {
  /** The command line, the body file named by what it holds. */
  command: string;
  /** Requests started, done, succeeded (stream closed normally: any HTTP status, any gRPC status), failed, errored, timed out. */
  started: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  /** HTTP status classes counted in the window (h2load counts a status only if its headers arrived inside the window). */
  status: { "2xx": number; "3xx": number; "4xx": number; "5xx": number };
  /** h2load's own req/s: succeeded / window. */
  reqPerSec: number;
  /** Requests in the per-request log and how many of them failed there (status -1). */
  logged: number;
  loggedFailed: number;
}

export interface H2loadResult {
  result: LoadResult;
  stats: H2loadStats;
}

export interface H2loadWindow {
  /** Called with h2load's pid when its measurement window opens and when it closes. */
  onOpen?: (pid: number) => void | Promise<void>;
  onClose?: (pid: number) => void | Promise<void>;
}

let bodyDir: string | undefined;
let bodies = 0;

/** Writes `body` to a file of its own (in a temporary directory removed when the run stops) and returns its path. */
export function bodyFile(label: string, body: Uint8Array): string {
  if (bodyDir === undefined) {
    const dir = mkdtempSync(join(os.tmpdir(), "tessera-bench-h2load-"));
    bodyDir = dir;
    onStop(async () => rmSync(dir, { recursive: true, force: true }));
  }
  const path = join(bodyDir, `${String(++bodies).padStart(2, "0")}-${label.replace(/[^A-Za-z0-9_.-]+/g, "-")}.bin`);
  writeFileSync(path, body);
  return path;
}

/** A gRPC message on the wire: flag byte 0 (not compressed), 4-byte big-endian length, the protobuf bytes. */
export function grpcFrame(message: Uint8Array): Uint8Array {
  const frame = new Uint8Array(5 + message.length);
  new DataView(frame.buffer).setUint32(1, message.length);
  frame.set(message, 5);
  return frame;
}

const shellQuote = (s: string) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
const duration = (ms: number) => `${Math.max(1, Math.round(ms))}ms`;

/** h2load's arguments for `request` under `load`, the body in `body` and the per-request log in `logFile`. */
export function h2loadArgs(request: H2Request, load: H2loadLoad, body: string, logFile?: string): string[] {
  const args = ["-t", "1", "-c", String(load.connections)];
  if (request.http === "h1") args.push("--h1", "-m", "1");
  else args.push("-m", String(load.streams));
  if (load.rate === undefined) args.push("-D", duration(load.durationMs), `--warm-up-time=${duration(load.warmupMs)}`);
  else {
    const pace = paced(load, load.rate);
    args.push("-r", "1", `--rate-period=${pace.periodMs}ms`, "-n", String(pace.calls), `--rps=${(load.rate / load.connections).toFixed(3)}`);
  }
  args.push("-d", body);
  for (const [name, value] of Object.entries(request.headers)) args.push("-H", `${name}: ${value}`);
  if (logFile !== undefined) args.push(`--log-file=${logFile}`);
  args.push(request.url);
  return args;
}

/** h2load's per-connection send timer: it fires every 10 ms at most (see the header). */
const RPS_TIMER_MS = 10;

/**
 * A fixed-rate run's pacing: connections started `periodMs` apart (whole ms: h2load takes no less), the window's
 * start after them and the warm-up, and the calls to ask for (-n) so that the run lasts past the window's end.
 */
function paced(load: H2loadLoad, rate: number): { periodMs: number; openAfterMs: number; calls: number } {
  const periodMs = Math.max(1, Math.floor(RPS_TIMER_MS / load.connections));
  const openAfterMs = periodMs * load.connections + load.warmupMs;
  // Each connection sends calls / connections; the last one starts last, so it ends the run.
  const calls = Math.ceil((rate * (openAfterMs + load.durationMs + 500)) / 1000 / load.connections) * load.connections;
  return { periodMs, openAfterMs, calls };
}

/**
 * Runs h2load once (warm-up, then the window) and returns its figures; the process stops by itself (-D, or -n at a
 * fixed rate).
 */
export async function runH2load(
  workload: WorkloadName,
  request: H2Request,
  body: string,
  load: H2loadLoad,
  window: H2loadWindow = {},
): Promise<H2loadResult> {
  const h2load = findH2load();
  const dir = mkdtempSync(join(os.tmpdir(), "tessera-bench-h2load-log-"));
  const logFile = join(dir, "requests.tsv");
  const args = h2loadArgs(request, load, body, logFile);
  const lines: string[] = [];
  let pending = Promise.resolve();
  let opened: number | undefined;
  let closed: number | undefined;
  const open = () => {
    opened = Date.now();
    if (window.onOpen) pending = pending.then(() => window.onOpen!(child.pid));
  };
  const close = () => {
    closed = Date.now();
    if (window.onClose) pending = pending.then(() => window.onClose!(child.pid));
  };
  const child: Child = startProcess("h2load", h2load.path, args, {
    onLine(line) {
      lines.push(line);
      if (load.rate !== undefined) return;
      if (line.startsWith("Main benchmark duration is started")) open();
      else if (line.startsWith("Main benchmark duration is over")) close();
    },
  });
  // At a fixed rate the window is timed from h2load's start (see the header).
  const timers: NodeJS.Timeout[] = [];
  if (load.rate !== undefined) {
    const { openAfterMs } = paced(load, load.rate);
    timers.push(setTimeout(open, openAfterMs), setTimeout(close, openAfterMs + load.durationMs));
  }
  // -D (or -n) ends h2load by itself; this only guards against a hang (a server that never answers, for instance).
  const guard = setTimeout(() => child.signal("SIGKILL"), load.warmupMs + load.durationMs + 60_000);
  try {
    const code = await child.exited;
    for (const t of timers) clearTimeout(t);
    await pending;
    const command = [h2load.path, ...h2loadArgs(request, load, `<${basename(body)}>`)].map(shellQuote).join(" ");
    const output = [...lines, ...child.stderr].join("\n");
    if (code !== 0) throw new Error(`h2load exited with ${code}: ${command}\n${output}`);
    if (load.rate !== undefined && closed === undefined) {
      // Sent its calls faster than the rate (catching up after the machine stalled it) and ended before the window
      // closed: the window is closed now (so its probe ends as it began), and the caller may measure again.
      if (opened !== undefined) {
        close();
        await pending;
      }
      throw new WindowMissed(`h2load ended before its measurement window closed: ${command}\n${output}`);
    }
    if (opened === undefined || closed === undefined) throw new Error(`h2load reported no measurement window: ${command}\n${output}`);
    const stats = parseSummary(lines.join("\n"), command);
    // At a fixed rate the log covers the whole run: the window's calls are those that started in it.
    const log = parseLog(readFileSync(logFile, "utf8"), load.rate === undefined ? undefined : { start: opened, end: closed });
    stats.logged = log.latencies.length + log.failed;
    stats.loggedFailed = log.failed;
    const seconds = load.durationMs / 1000;
    const sorted = log.latencies.sort();
    const windowed = load.rate === undefined ? { requests: stats.succeeded, errors: stats.failed + stats.errored + stats.timeout } : { requests: log.latencies.length, errors: log.failed };
    const result: LoadResult = {
      workload,
      ...windowed,
      errorSamples: [],
      seconds,
      window: { start: opened, end: closed },
      rps: windowed.requests / seconds,
      p50: percentile(sorted, 0.5),
      p99: percentile(sorted, 0.99),
      p999: percentile(sorted, 0.999),
      max: sorted.length > 0 ? sorted[sorted.length - 1]! : NaN,
      outcomes: {},
      ...(load.rate === undefined ? {} : { offeredRps: load.rate }),
    };
    return { result, stats };
  } finally {
    clearTimeout(guard);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The body file's name without its directory and its sequence number: what it holds. */
const basename = (path: string) => path.slice(path.lastIndexOf("/") + 1).replace(/^\d+-/, "");

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/** h2load's summary lines: "finished in ...", "requests: ...", "status codes: ...". */
export function parseSummary(text: string, command: string): H2loadStats {
  const requests = /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout$/m.exec(text);
  const status = /^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx$/m.exec(text);
  const finished = /^finished in [^,]+, ([\d.]+) req\/s/m.exec(text);
  if (!requests || !status || !finished) throw new Error(`could not read h2load's summary:\n${text}`);
  const n = (m: RegExpExecArray, i: number) => Number(m[i]);
  return {
    command,
    started: n(requests, 2),
    done: n(requests, 3),
    succeeded: n(requests, 4),
    failed: n(requests, 5),
    errored: n(requests, 6),
    timeout: n(requests, 7),
    status: { "2xx": n(status, 1), "3xx": n(status, 2), "4xx": n(status, 3), "5xx": n(status, 4) },
    reqPerSec: n(finished, 1),
    logged: 0,
    loggedFailed: 0,
  };
}

/**
 * The per-request log: one line per request of the window, "<start µs since the epoch>\t<status>\t<µs until the
 * response ended>"; status -1 is a failed stream. (h2load 1.52 writes 0 as the status of a successful request; the
 * statuses come from its summary.) Latencies in milliseconds. With `window` (ms since the epoch), only the requests
 * that started in [start, end).
 */
export function parseLog(text: string, window?: { start: number; end: number }): { latencies: Float64Array; failed: number } {
  const latencies: number[] = [];
  let failed = 0;
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const [start, status, us] = line.split("\t");
    if (window !== undefined) {
      const ms = Number(start) / 1000;
      if (ms < window.start || ms >= window.end) continue;
    }
    if (status === "-1") failed++;
    else latencies.push(Number(us) / 1000);
  }
  return { latencies: Float64Array.from(latencies), failed };
}
