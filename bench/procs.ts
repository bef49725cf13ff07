/**
 * The benchmark's child processes: started with `node --import tsx`, their output watched, and every one of them
 * killed when the orchestrator ends, whether it ends normally, on an error or on a signal. Also reads a process's
 * memory and CPU time from /proc.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));

const live = new Set<ChildProcess>();
const cleanups: Array<() => Promise<void>> = [];
let installed = false;

/** Kills what is still running when this process exits; SIGINT/SIGTERM run the cleanups first. */
function install(): void {
  if (installed) return;
  installed = true;
  process.on("exit", () => {
    for (const p of live) p.kill("SIGKILL");
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      process.stderr.write(`bench: ${signal}, stopping every child process\n`);
      void stopAll().finally(() => process.exit(130));
    });
  }
}

/** Runs `fn` at stopAll (for things that are not a Child, like the Redis server). */
export function onStop(fn: () => Promise<void>): void {
  install();
  cleanups.push(fn);
}

/** Stops every child still running, then runs the cleanups, newest first. */
export async function stopAll(): Promise<void> {
  for (const p of live) p.kill("SIGKILL");
  for (const fn of cleanups.splice(0).reverse()) await fn().catch(() => {});
}

export interface Child {
  readonly name: string;
  readonly pid: number;
  /** The last lines the process wrote on stderr. */
  readonly stderr: string[];
  readonly exited: Promise<number | string>;
  /** Resolves with the first stdout line that matches; rejects if the process exits or the time runs out first. */
  until(match: (line: string) => boolean, timeoutMs: number): Promise<string>;
  signal(signal: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after graceMs; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  /** Node flags, after `--import tsx` (so a preloaded .ts file works). */
  nodeArgs?: string[];
  env?: Record<string, string>;
  /** Every stdout line, as it comes. */
  onLine?: (line: string) => void;
}

/** Starts `node [nodeArgs] --import tsx <script> [args]` in the repository root. */
export function startNode(name: string, script: string, args: string[], opts: StartOptions = {}): Child {
  return startProcess(name, process.execPath, ["--import", "tsx", ...(opts.nodeArgs ?? []), script, ...args], opts);
}

/**
 * Starts any program (`command [args]`, e.g. h2load) in the repository root, watched and killed at the end like the
 * Node children. `nodeArgs` does not apply.
 */
export function startProcess(name: string, command: string, args: string[], opts: StartOptions = {}): Child {
  install();
  const proc = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.once("error", () => {}); // a failed spawn: reported by the missing pid below
  if (proc.pid === undefined) throw new Error(`${name}: could not start ${command}`);
  live.add(proc);
  const stderr: string[] = [];
  const watchers = new Set<(line: string) => void>();
  createInterface({ input: proc.stdout! }).on("line", (line) => {
    opts.onLine?.(line);
    for (const w of watchers) w(line);
  });
  createInterface({ input: proc.stderr! }).on("line", (line) => {
    stderr.push(line);
    if (stderr.length > 50) stderr.shift();
  });
  const exited = new Promise<number | string>((resolve) =>
    proc.once("close", (code, signal) => {
      live.delete(proc);
      resolve(code ?? signal ?? "unknown");
    }),
  );
  const child: Child = {
    name,
    pid: proc.pid,
    stderr,
    exited,
    until(match, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => fail(`no such output within ${timeoutMs}ms`), timeoutMs);
        const watcher = (line: string) => {
          if (!match(line)) return;
          clearTimeout(timer);
          watchers.delete(watcher);
          resolve(line);
        };
        const fail = (why: string) => {
          clearTimeout(timer);
          watchers.delete(watcher);
          reject(new Error(`${name}: ${why}\n${stderr.join("\n")}`));
        };
        watchers.add(watcher);
        void exited.then((code) => fail(`exited with ${code}`));
      });
    },
    signal(signal) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
    async stop(graceMs = 5_000) {
      child.signal("SIGTERM");
      const timer = setTimeout(() => child.signal("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  return child;
}

/** Current and peak resident set size of a process, in bytes (VmRSS, VmHWM of /proc/<pid>/status). */
export function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kib("VmRSS"), hwm: kib("VmHWM") };
}

/** CPU seconds (user + system, all threads) a process has used so far (/proc/<pid>/stat; 100 ticks a second). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces: count fields from after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU seconds used so far by a process and all its descendants (a cluster's primary and its workers; tsx's idle
 * esbuild service comes along too). Descendants are found through the parent pid field of /proc/<pid>/stat (this
 * kernel has no /proc/<pid>/task/<tid>/children); a process that exits meanwhile is left out.
 */
export function treeCpuSeconds(pid: number): number {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone
    }
  }
  let total = cpuSeconds(pid);
  const stack = [...(parents.get(pid) ?? [])];
  for (let child = stack.pop(); child !== undefined; child = stack.pop()) {
    try {
      total += cpuSeconds(child);
    } catch {
      continue; // gone
    }
    stack.push(...(parents.get(child) ?? []));
  }
  return total;
}

/** Samples a process's VmRSS every 100 ms and keeps the peak (VmHWM alone would include start-up and set-up). */
export class RssSampler {
  peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.timer = setInterval(() => this.sample(), 100).unref(); // never what keeps the bench running
    this.sample();
  }

  sample(): void {
    try {
      this.peak = Math.max(this.peak, memory(this.pid).rss);
    } catch {
      // the process is gone
    }
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.peak;
  }
}

/** Busy CPU seconds of the whole machine so far, all cores (/proc/stat: everything but idle and iowait). */
export function machineBusySeconds(): number {
  const [, ...ticks] = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = ticks.map(Number);
  return (user! + nice! + system! + irq! + softirq! + steal!) / 100;
}

/**
 * Waits until the machine has been nearly idle (< `threshold` cores busy) for one second, at most `maxMs`: other
 * work on the same cores (a test run, a build) would skew a measurement. Returns the busy cores last seen.
 */
export async function waitForQuiet(maxMs = 30_000, threshold = 0.1): Promise<number> {
  const deadline = Date.now() + maxMs;
  for (;;) {
    const before = machineBusySeconds();
    await new Promise((r) => setTimeout(r, 1000));
    const busy = machineBusySeconds() - before;
    if (busy < threshold || Date.now() >= deadline) return busy;
  }
}
