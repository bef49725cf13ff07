/**
 * Starts Tessera for end-to-end tests: in-process (createApp on port 0, logs kept in an array) or as a real separate
 * process (`node --import tsx src/main.ts` on a free port, waited for until GET /healthz answers).
 * Every config goes through loadConfig, so tests exercise the same validation as production.
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { createApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config/config.js";
import type { Clock } from "../../src/domain/clock.js";
import { createLogger } from "../../src/observability/logger.js";
import { freePort } from "./redis-server.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface StartedServer {
  url: string;
  port: number;
  app: App;
  /** Log lines the app wrote, parsed (level "info" and up unless TESSERA_LOG_LEVEL says otherwise). */
  logs: Record<string, unknown>[];
  close(): Promise<void>;
}

export interface StartOptions {
  clock?: Clock;
}

/** Builds the app from an env object (validated by loadConfig) and listens on 127.0.0.1:0. */
export async function startServer(env: Record<string, string> = {}, opts: StartOptions = {}): Promise<StartedServer> {
  const config = loadConfig({ TESSERA_LISTEN: "127.0.0.1:0", ...env });
  const logs: Record<string, unknown>[] = [];
  const logger = createLogger(config.logLevel, { write: (line: string) => void logs.push(JSON.parse(line)) });
  const app = await createApp(config, { logger, ...(opts.clock ? { clock: opts.clock } : {}) });
  let closed = false;
  try {
    const { port } = await app.listen();
    return {
      url: `http://127.0.0.1:${port}`,
      port,
      app,
      logs,
      async close() {
        if (closed) return;
        closed = true;
        await app.close();
      },
    };
  } catch (err) {
    await app.close();
    throw err;
  }
}

export interface SpawnedAuthority {
  url: string;
  port: number;
  stdout: string[];
  stderr: string[];
  /** Resolves with the exit code (or the signal name) once the process has gone and its output is read. */
  exited: Promise<number | string>;
  /** Sends the signal (SIGTERM by default) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Runs `node --import tsx src/main.ts` (or another entry point, such as the sidecar's) with env added to this
 * process's environment, without waiting for it.
 */
export function runMain(env: Record<string, string>, entry = "src/main.ts"): Omit<SpawnedAuthority, "url" | "port"> {
  const proc = spawn(process.execPath, ["--import", "tsx", entry], {
    cwd: ROOT,
    env: { ...process.env, TESSERA_LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  collectLines(proc.stdout, stdout);
  collectLines(proc.stderr, stderr);
  const exited = new Promise<number | string>((resolve) =>
    proc.once("close", (code, signal) => resolve(code ?? signal ?? "unknown")),
  );
  return {
    stdout,
    stderr,
    exited,
    async kill(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/**
 * Starts a real authority process on a free port (or the given one, to restart on the same address) and waits until
 * GET /healthz answers 200.
 */
export async function spawnAuthority(env: Record<string, string> = {}, timeoutMs = 20_000, port?: number): Promise<SpawnedAuthority> {
  return spawnProcess("src/main.ts", "authority", env, timeoutMs, port);
}

/** Starts a real sidecar process (`src/sidecar/main.ts`) on a free port; healthy means listening, not yet serving. */
export async function spawnSidecar(env: Record<string, string>, timeoutMs = 20_000): Promise<SpawnedAuthority> {
  return spawnProcess("src/sidecar/main.ts", "sidecar", env, timeoutMs);
}

async function spawnProcess(
  entry: string,
  what: string,
  env: Record<string, string>,
  timeoutMs: number,
  fixedPort?: number,
): Promise<SpawnedAuthority> {
  const port = fixedPort ?? (await freePort());
  const url = `http://127.0.0.1:${port}`;
  const run = runMain({ ...env, TESSERA_LISTEN: `127.0.0.1:${port}` }, entry);
  let gone: number | string | undefined;
  void run.exited.then((c) => (gone = c));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone !== undefined) {
      throw new Error(`${what} exited with ${gone} before it was healthy:\n${run.stderr.join("\n")}`);
    }
    if (await healthy(url)) return { ...run, url, port };
    await new Promise((r) => setTimeout(r, 50));
  }
  await run.kill("SIGKILL");
  throw new Error(`${what} on port ${port} was not healthy within ${timeoutMs}ms:\n${run.stderr.join("\n")}`);
}

async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

function collectLines(stream: NodeJS.ReadableStream, into: string[]): void {
  let partial = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop() ?? "";
    into.push(...parts);
  });
  stream.on("end", () => {
    if (partial !== "") into.push(partial);
  });
}

export interface RedisScope {
  /** TESSERA_REDIS_URL and a TESSERA_REDIS_PREFIX no other test uses. */
  env: Record<string, string>;
  prefix: string;
  /** Deletes every key under the prefix (SCAN + UNLINK). */
  cleanup(): Promise<void>;
}

/** A unique key prefix on the given Redis, for one test or one file. */
export function redisScope(url: string, label = "e2e"): RedisScope {
  const prefix = `tessera-test:${label}:${randomUUID()}:`;
  return {
    env: { TESSERA_REDIS_URL: url, TESSERA_REDIS_PREFIX: prefix },
    prefix,
    cleanup: () => deleteKeys(url, prefix),
  };
}

/**
 * A unique key prefix on the given Redis Cluster (its seeds, `host:port,...`, every primary among them): env names the
 * Cluster mode; cleanup deletes the prefix's keys on every node.
 */
export function clusterScope(seeds: string, label = "e2e"): RedisScope & { nodeUrls: string[] } {
  const prefix = `tessera-test:${label}:${randomUUID()}:`;
  const nodeUrls = seeds.split(",").map((s) => `redis://${s}`);
  return {
    env: { TESSERA_REDIS_CLUSTER_NODES: seeds, TESSERA_REDIS_PREFIX: prefix },
    prefix,
    nodeUrls,
    cleanup: async () => void (await Promise.all(nodeUrls.map((url) => deleteKeys(url, prefix)))),
  };
}

export async function deleteKeys(url: string, prefix: string): Promise<void> {
  // One key per UNLINK: on a Cluster node the keys lie in several slots.
  await scanKeys(url, prefix, async (redis, keys) => void (await Promise.all(keys.map((k) => redis.unlink(k)))));
}

/** Number of keys under the prefix. */
export async function countKeys(url: string, prefix: string): Promise<number> {
  let n = 0;
  await scanKeys(url, prefix, async (_redis, keys) => void (n += keys.length));
  return n;
}

async function scanKeys(url: string, prefix: string, each: (redis: Redis, keys: string[]) => Promise<void>): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 500);
      if (keys.length > 0) await each(redis, keys);
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}
