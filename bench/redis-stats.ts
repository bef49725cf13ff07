/**
 * What Redis says about the load: commands processed (INFO stats and commandstats, which count the commands a Lua
 * script runs too), its CPU time and memory, the keys it holds by kind, and what clients send it: round trips (through
 * a counting relay) and commands by name (through MONITOR, without the ones scripts run inside Redis).
 */
import { connect, createServer, type AddressInfo, type Socket } from "node:net";
import type { Redis } from "ioredis";

export interface RedisSample {
  /** total_commands_processed: every command, including those run inside Lua scripts. */
  commands: number;
  /** used_cpu_user + used_cpu_sys, seconds. */
  cpu: number;
  usedMemory: number;
  /** calls by command name (cmdstat_<name>). */
  calls: Record<string, number>;
}

export async function sample(redis: Redis): Promise<RedisSample> {
  const info = (await redis.call("INFO", "stats", "cpu", "memory", "commandstats")) as string;
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, "m").exec(info)?.[1] ?? NaN);
  const calls: Record<string, number> = {};
  for (const m of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1]!] = Number(m[2]);
  return {
    commands: field("total_commands_processed"),
    cpu: field("used_cpu_user") + field("used_cpu_sys"),
    usedMemory: field("used_memory"),
    calls,
  };
}

/** Several servers' samples added up (a Cluster's primaries are one store): commands, CPU, memory, calls by name. */
export async function sampleAll(servers: readonly Redis[]): Promise<RedisSample> {
  const all = await Promise.all(servers.map(sample));
  const calls: Record<string, number> = {};
  for (const s of all) for (const [name, n] of Object.entries(s.calls)) calls[name] = (calls[name] ?? 0) + n;
  const sum = (pick: (s: RedisSample) => number) => all.reduce((t, s) => t + pick(s), 0);
  return { commands: sum((s) => s.commands), cpu: sum((s) => s.cpu), usedMemory: sum((s) => s.usedMemory), calls };
}

/** Commands between two samples, less the INFO calls of the sampling itself. */
export function commandsBetween(a: RedisSample, b: RedisSample): { total: number; calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  for (const [name, n] of Object.entries(b.calls)) {
    const d = n - (a.calls[name] ?? 0);
    if (d > 0 && name !== "info") calls[name] = d;
  }
  return { total: Object.values(calls).reduce((s, n) => s + n, 0), calls };
}

/** What a client sent Redis while it was watched; `at` in milliseconds since the epoch. */
export interface Traffic {
  /** Each write the client made: one write is one round trip (ioredis sends a pipeline or MULTI...EXEC at once). */
  writes: number[];
  /** Each command a client sent (not those a Lua script ran inside Redis), by name. */
  commands: Array<{ at: number; name: string }>;
}

/** Counts of `traffic` inside [start, end]: round trips, and client commands by name. */
export function trafficIn(traffic: Traffic, start: number, end: number): { roundTrips: number; commands: Record<string, number> } {
  const commands: Record<string, number> = {};
  for (const c of traffic.commands) if (c.at >= start && c.at <= end) commands[c.name] = (commands[c.name] ?? 0) + 1;
  return { roundTrips: traffic.writes.filter((at) => at >= start && at <= end).length, commands };
}

const epochNow = () => performance.timeOrigin + performance.now();
/** A write that is nothing but a PING: Tessera's readiness probe, not a call's work. */
const PING = /^\*1\r\n\$4\r\nping\r\n$/i;
const SILENT = new Set(["ping", "info", "monitor"]);

/**
 * Watches what clients send Redis: a TCP relay in front of it that records the time of every client write (clients
 * connect to `port`), and MONITOR for the command names (commands from `[... lua]`, which a script ran, and PING,
 * INFO and MONITOR are left out). `stop()` ends both and returns the records.
 */
export async function watchTraffic(redisPort: number): Promise<{ port: number; stop(): Promise<Traffic> }> {
  const traffic: Traffic = { writes: [], commands: [] };
  const sockets = new Set<Socket>();
  const relay = createServer((client) => {
    const upstream = connect(redisPort, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
      s.once("close", () => sockets.delete(s));
    }
    client.on("data", (chunk: Buffer) => {
      if (!PING.test(chunk.toString("latin1"))) traffic.writes.push(epochNow());
      upstream.write(chunk);
    });
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));

  const monitorSocket = connect(redisPort, "127.0.0.1");
  let buf = "";
  let ok!: () => void;
  const started = new Promise<void>((resolve) => (ok = resolve));
  monitorSocket.setEncoding("utf8");
  monitorSocket.on("data", (chunk: string) => {
    buf += chunk;
    const lines = buf.split("\r\n");
    buf = lines.pop()!;
    for (const line of lines) {
      if (line === "+OK") ok();
      const m = /^\+([\d.]+) \[\d+ ([^\]]+)\] "([^"]+)"/.exec(line);
      if (!m || m[2] === "lua") continue;
      const name = m[3]!.toLowerCase();
      if (!SILENT.has(name)) traffic.commands.push({ at: Number(m[1]) * 1000, name });
    }
  });
  monitorSocket.write("MONITOR\r\n");
  await started;
  return {
    port: (relay.address() as AddressInfo).port,
    async stop() {
      await new Promise((r) => setTimeout(r, 100)); // the last MONITOR lines
      monitorSocket.destroy();
      for (const s of sockets) s.destroy();
      await new Promise((r) => relay.close(r));
      return traffic;
    },
  };
}

/** One kind of key: its name pattern (ids replaced by `*`), how many there are, their bytes (MEMORY USAGE). */
export interface KeyKind {
  pattern: string;
  count: number;
  /** Estimated from up to `sample` keys of the kind (all keys of a kind with fewer). */
  bytes: number;
  /** Time to live of one key of the kind when read ("none": it does not expire). */
  ttl: string;
}

/** Every key in the database grouped by kind, with its memory; for a database that holds only what is measured. */
export async function keyKinds(redis: Redis, sample = 200): Promise<KeyKind[]> {
  const kinds = new Map<string, { count: number; sampled: string[] }>();
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "COUNT", 5000);
    cursor = next;
    for (const key of keys) {
      const pattern = key.replace(/[A-Za-z0-9_-]{16,}/g, "*");
      const kind = kinds.get(pattern) ?? { count: 0, sampled: [] };
      kind.count++;
      if (kind.sampled.length < sample) kind.sampled.push(key);
      kinds.set(pattern, kind);
    }
  } while (cursor !== "0");
  const out: KeyKind[] = [];
  for (const [pattern, { count, sampled }] of kinds) {
    const pipeline = redis.pipeline();
    for (const key of sampled) pipeline.call("MEMORY", "USAGE", key, "SAMPLES", "0");
    const sizes = ((await pipeline.exec()) ?? []).map(([, n]) => Number(n));
    const pttl = await redis.pttl(sampled[0]!);
    const bytes = (sizes.reduce((sum, n) => sum + n, 0) / sizes.length) * count;
    out.push({ pattern, count, bytes, ttl: pttl < 0 ? "none" : roughDuration(pttl) });
  }
  return out.sort((a, b) => b.bytes - a.bytes);
}

/** 604799000 -> "7d", 899000 -> "15m". */
function roughDuration(ms: number): string {
  for (const [unit, size] of [["d", 86_400_000], ["h", 3_600_000], ["m", 60_000], ["s", 1000]] as const) {
    if (ms >= size) return `${Math.round(ms / size)}${unit}`;
  }
  return `${ms}ms`;
}
