/**
 * Starts throwaway redis-server processes on free loopback ports (no persistence unless asked), for tests that need
 * their own Redis: the shared one of the suite, and ones the restart and failure tests kill and start again.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { until } from "./wait.js";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = new Socket();
    let buf = "";
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(500, () => done(false));
    sock.once("error", () => done(false));
    sock.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("PONG")) done(true);
      else if (buf.includes("\r\n")) done(false); // -LOADING and friends: not ready yet
    });
    sock.connect(port, "127.0.0.1", () => sock.write("PING\r\n"));
  });
}

export class RedisServer {
  private proc: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), "tessera-redis-"));

  private constructor(
    readonly port: number,
    private readonly persistent: boolean,
    private readonly extraArgs: readonly string[],
  ) {}

  /**
   * A new server on a free port. `persistent` turns on the append-only file so a restart keeps the data; `args` are
   * more redis-server options (`--cluster-enabled yes`, `--replicaof ...`).
   */
  static async start(opts: { persistent?: boolean; args?: readonly string[] } = {}): Promise<RedisServer> {
    const server = new RedisServer(await freePort(), opts.persistent ?? false, opts.args ?? []);
    await server.start();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--dir", this.dir];
    args.push("--appendonly", this.persistent ? "yes" : "no", "--appendfsync", "always", ...this.extraArgs);
    this.proc = spawn(process.env.REDIS_SERVER_BIN ?? "redis-server", args, { stdio: "ignore" });
    const started = Date.now();
    while (Date.now() - started < 10_000) {
      if (this.proc.exitCode !== null) throw new Error(`redis-server exited with ${this.proc.exitCode}`);
      if (await ping(this.port)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`redis-server on port ${this.port} did not answer within 10s`);
  }

  /** Kills the process (SIGKILL: no chance to save anything) and waits for it to be gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Runs redis-cli with `args`; resolves with its output. */
export function redisCli(args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.env.REDIS_CLI_BIN ?? "redis-cli", args, { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(" ")}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/**
 * A throwaway Redis Cluster of `primaries` primaries, each with `replicas` replicas, on free loopback ports:
 * redis-server with `--cluster-enabled yes`, joined by `redis-cli --cluster create`, ready once every node reports
 * `cluster_state:ok`, knows every node and agrees on the slots.
 */
export class RedisCluster {
  private constructor(readonly nodes: RedisServer[]) {}

  static async start(primaries = 3, replicas = 0): Promise<RedisCluster> {
    const nodes: RedisServer[] = [];
    const total = primaries * (1 + replicas);
    try {
      for (let i = 0; i < total; i++) {
        // The bus port is set: its default, the port + 10000, is past 65535 for a free port above 55535.
        const bus = String(await freePort());
        nodes.push(await RedisServer.start({ args: ["--cluster-enabled", "yes", "--cluster-port", bus, "--cluster-node-timeout", "2000"] }));
      }
      await redisCli(["--cluster", "create", ...nodes.map((n) => `127.0.0.1:${n.port}`), "--cluster-replicas", String(replicas), "--cluster-yes"]);
      const started = Date.now();
      for (;;) {
        const infos = await Promise.all(nodes.map((n) => redisCli(["-p", String(n.port), "cluster", "info"])));
        if (infos.every((i) => /cluster_state:ok/.test(i) && /cluster_slots_assigned:16384/.test(i) && new RegExp(`cluster_known_nodes:${total}\\b`).test(i))) break;
        if (Date.now() - started > 20_000) throw new Error(`the cluster did not settle: ${infos.join(" | ")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      // Every replica in sync with its primary (a WAIT would count none before).
      for (;;) {
        const replication = await Promise.all(nodes.map((n) => redisCli(["-p", String(n.port), "info", "replication"])));
        const followers = replication.filter((r) => /role:slave/.test(r));
        if (followers.length === primaries * replicas && followers.every((r) => /master_link_status:up/.test(r))) break;
        if (Date.now() - started > 30_000) throw new Error("the cluster's replicas did not sync");
        await new Promise((r) => setTimeout(r, 100));
      }
      return new RedisCluster(nodes);
    } catch (err) {
      await Promise.all(nodes.map((n) => n.stop()));
      throw err;
    }
  }

  /** The nodes that are primaries now, by port. */
  async primaryPorts(): Promise<number[]> {
    const ports: number[] = [];
    for (const n of this.nodes) {
      const role = await redisCli(["-p", String(n.port), "role"]).catch(() => "");
      if (role.startsWith("master")) ports.push(n.port);
    }
    return ports;
  }

  /** The seeds as TESSERA_REDIS_CLUSTER_NODES takes them. */
  get seeds(): string {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`).join(",");
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}

/**
 * A primary, a replica and three sentinels monitoring them (quorum 2) on free loopback ports: the Sentinel setup a
 * failover test kills the primary of. `master` is the name the sentinels know the primary by.
 */
export class RedisSentinelSet {
  readonly master = "tessera-primary";

  private constructor(
    readonly primary: RedisServer,
    readonly replica: RedisServer,
    private readonly sentinels: ChildProcess[],
    readonly sentinelPorts: number[],
    private readonly dir: string,
  ) {}

  static async start(opts: { downAfterMs?: number } = {}): Promise<RedisSentinelSet> {
    const primary = await RedisServer.start();
    const replica = await RedisServer.start({ args: ["--replicaof", "127.0.0.1", String(primary.port)] });
    const dir = mkdtempSync(join(tmpdir(), "tessera-sentinel-"));
    const sentinels: ChildProcess[] = [];
    const ports: number[] = [];
    const set = new RedisSentinelSet(primary, replica, sentinels, ports, dir);
    try {
      await until(async () => /master_link_status:up/.test(await redisCli(["-p", String(replica.port), "info", "replication"])), 20_000, "the replica to sync", 100);
      for (let i = 0; i < 3; i++) {
        const port = await freePort();
        const conf = join(dir, `sentinel-${i}.conf`);
        writeFileSync(
          conf,
          [
            `port ${port}`,
            "bind 127.0.0.1",
            `dir ${dir}`,
            `sentinel monitor ${set.master} 127.0.0.1 ${primary.port} 2`,
            `sentinel down-after-milliseconds ${set.master} ${opts.downAfterMs ?? 1000}`,
            `sentinel failover-timeout ${set.master} 5000`,
            `sentinel parallel-syncs ${set.master} 1`,
            "",
          ].join("\n"),
        );
        sentinels.push(spawn(process.env.REDIS_SERVER_BIN ?? "redis-server", [conf, "--sentinel"], { stdio: "ignore" }));
        ports.push(port);
      }
      await sentinelsReady(ports, set.master, (port, ...args) => redisCli(["-p", String(port), ...args]));
      return set;
    } catch (err) {
      await set.stop();
      throw err;
    }
  }

  /** TESSERA_REDIS_SENTINELS. */
  get seeds(): string {
    return this.sentinelPorts.map((p) => `127.0.0.1:${p}`).join(",");
  }

  /** The port the sentinels now name as the primary's. */
  /**
   * The primary's port as every sentinel reports it, or undefined while they disagree (a sentinel learns of a
   * failover from the others' hello messages, every 2 s; a client that asks a stale one is sent to the old primary).
   */
  async primaryPort(): Promise<number | undefined> {
    const ports = await Promise.all(
      this.sentinelPorts.map(async (port) => {
        const out = await redisCli(["-p", String(port), "sentinel", "get-master-addr-by-name", this.master]).catch(() => "");
        return Number(out.trim().split("\n")[1]);
      }),
    );
    return ports.every((p) => p === ports[0] && Number.isInteger(p)) ? ports[0] : undefined;
  }

  async stop(): Promise<void> {
    for (const s of this.sentinels) if (s.exitCode === null && s.signalCode === null) s.kill("SIGKILL");
    await Promise.all([this.primary.stop(), this.replica.stop()]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Waits until every sentinel (asked through `cli`, which adds what the connection needs) knows the replica and the
 * other sentinels of `master`: the set is ready for a failover.
 */
export async function sentinelsReady(ports: number[], master: string, cli: (port: number, ...args: string[]) => Promise<string>): Promise<void> {
  for (const port of ports) {
    await until(async () => {
      const info = await cli(port, "sentinel", "master", master).catch(() => "");
      const field = (name: string) => Number(new RegExp(`^${name}\\n(\\d+)$`, "m").exec(info)?.[1] ?? -1);
      return field("num-slaves") >= 1 && field("num-other-sentinels") >= ports.length - 1;
    }, 30_000, `the sentinel on ${port} to know the replica and the other sentinels`, 100);
  }
}

/**
 * Counts the writes that reach a client connection's socket (one per `_write` or `_writev`, each one syscall's worth)
 * until `restore()`.
 */
export function countWrites(stream: unknown): { readonly count: number; restore(): void } {
  const s = stream as Record<"_write" | "_writev", ((...a: unknown[]) => unknown) | undefined>;
  const original = { _write: s._write, _writev: s._writev };
  let count = 0;
  for (const name of ["_write", "_writev"] as const) {
    const fn = original[name];
    if (fn) {
      s[name] = function (this: unknown, ...a: unknown[]) {
        count++;
        return fn.apply(this, a);
      };
    }
  }
  return {
    get count() {
      return count;
    },
    restore: () => Object.assign(s, original),
  };
}
