/**
 * What the parts of the Redis store share: the one ioredis client, the key prefix and the key names built from it,
 * the Lua scripts' registration, the mapping of every failure to StoreUnavailableError (so callers fail closed), and
 * the wait for replicas after a revocation.
 *
 * Key layout under the prefix P (t = the subject's tag, ids.subjectTag, a Redis Cluster hash tag; a session id
 * starts with its subject's tag, so a session is found from its id alone):
 *   P{t}:s:<sid>  session (JSON array)     P{t}:g:<sid>  previous pair, for the grace window only   (sessions.ts)
 *   P{t}:idx      zset of the subject's active sessions (score lastUsedAt)                         (sessions.ts)
 *   P{t}:j:<jti>  revoked token id                                                                   (sessions.ts)
 *   P keys        hash kid -> [order, StoredKey] JSON (never expires)                                (keys.ts)
 *   P{feed}       revocation stream, an entry dropped once its `until` has passed; cursors `<epoch>.<id>` (feed.ts)
 *   P{feed}:m     hash: the feed's epoch, last, first and trimmed-through ids (never expires, a few bytes) (feed.ts)
 *   P{stats}:hours     hash `<hour>:<name>` -> one UTC hour's counters and duration histogram, 8 days (stats.ts)
 *   P{stats}:hourset   zset of the hours the hash holds                                             (stats.ts)
 *   P{stats}:expiry, :subjects, :platforms  StatsService's live-session index: zset session id (bytes) -> expiry,
 *                 hash subject tag (bytes) -> its sessions' packed records, hash platform -> count   (stats.ts)
 *   P audit       audit stream (ids `<at ms>-<seq>`), MAXLEN ~ TESSERA_AUDIT_MAX_EVENTS, MINID now - MAX_AGE (audit.ts)
 *   P{t}:risk     the subject's risk observations (JSON), expiring TESSERA_RISK_WINDOW after the last update (audit.ts)
 */
import calculateSlot from "cluster-key-slot";
import { Cluster, Redis, type ChainableCommander, type RedisOptions } from "ioredis";
import { StoreUnavailableError, TesseraError } from "../../domain/errors.js";
import { sessionTag, subjectTag } from "../../domain/ids.js";
import type { FeedBacklogReport } from "./feed.js";

/** One Redis (Sentinel-managed or not) or a Redis Cluster: the store runs on either, unchanged. */
export type RedisClient = Redis | Cluster;

/** Where Redis is: a `redis://` / `rediss://` URL, a Cluster's seed nodes, or the sentinels of a named primary. */
export type RedisConnection =
  | string
  | { url: string; tlsCa?: Buffer }
  | { cluster: HostAndPort[]; auth?: RedisAuth }
  | { sentinels: HostAndPort[]; master: string; auth?: RedisAuth; sentinelPassword?: string };

export interface HostAndPort {
  host: string;
  port: number;
}

/** Credentials and TLS of the Cluster's nodes, or of the sentinels and the nodes they name. */
export interface RedisAuth {
  username?: string;
  password?: string;
  /** TLS on; `ca`: the CA(s) that sign the servers' certificates (default: the system's). */
  tls?: { ca?: Buffer };
}

/**
 * An ioredis client that fails fast: no offline queue, no retries of a command, a timeout on each command. A Cluster
 * client follows MOVED and ASK redirections and refreshes its slot map itself; a Sentinel-managed one asks the
 * sentinels for the primary on every reconnect and reconnects when a failover is announced or the node it holds
 * turns into a replica (READONLY), so a failover is followed without a restart.
 */
export function createRedisClient(conn: Exclude<RedisConnection, { cluster: HostAndPort[] }>, opts: { commandTimeoutMs: number }): Redis;
export function createRedisClient(conn: RedisConnection, opts: { commandTimeoutMs: number }): RedisClient;
export function createRedisClient(conn: RedisConnection, opts: { commandTimeoutMs: number }): RedisClient {
  const failFast: RedisOptions = {
    enableOfflineQueue: false,
    // Commands made in the same tick go out in one write, by writesPerTick below rather than ioredis's auto-pipelining.
    enableAutoPipelining: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1000),
    // Reconnect forever, backing off up to one second.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 10), 1000),
  };
  let redis: RedisClient;
  if (typeof conn === "string" || "url" in conn) {
    const url = typeof conn === "string" ? conn : conn.url;
    const ca = typeof conn === "string" ? undefined : conn.tlsCa;
    redis = new Redis(url, ca && url.startsWith("rediss:") ? { ...failFast, tls: { ca } } : failFast);
  } else if ("cluster" in conn) {
    redis = new Cluster(conn.cluster, {
      redisOptions: { ...failFast, ...nodeAuth(conn.auth) },
      enableOfflineQueue: false,
      enableAutoPipelining: false,
      // Primaries only: a read from a replica could miss a revocation just acknowledged.
      scaleReads: "master",
      clusterRetryStrategy: failFast.retryStrategy!,
      // A command that meets a failover (CLUSTERDOWN, TRYAGAIN, a moved slot) is retried within its own timeout.
      retryDelayOnFailover: 100,
      retryDelayOnClusterDown: 100,
      retryDelayOnTryAgain: 100,
      slotsRefreshTimeout: Math.max(opts.commandTimeoutMs, 1000),
    });
  } else {
    redis = new Redis({
      ...failFast,
      ...nodeAuth(conn.auth),
      sentinels: conn.sentinels,
      name: conn.master,
      role: "master",
      ...(conn.sentinelPassword !== undefined ? { sentinelPassword: conn.sentinelPassword } : {}),
      ...(conn.auth?.tls ? { enableTLSForSentinelMode: true, sentinelTLS: conn.auth.tls } : {}),
      // Hear of a failover from the sentinels (+switch-master) rather than only when the old primary stops answering.
      failoverDetector: true,
      sentinelRetryStrategy: failFast.retryStrategy!,
      // A primary turned replica answers writes with READONLY: reconnect, and the sentinels name the new primary.
      reconnectOnError: (err) => (err.message.startsWith("READONLY") ? 1 : false),
    });
  }
  if (redis instanceof Cluster) redis.on("+node", (node: Redis) => writesPerTick(node));
  else writesPerTick(redis);
  redis.on("error", ignore);
  return redis;
}

/**
 * Makes the commands a connection is given in one turn of the event loop go out in one write: the first command of
 * a turn corks the socket, and a setImmediate (after the turn's I/O callbacks, where the calls that issue the
 * commands run) uncorks it. Measured against ioredis's auto-pipelining, which builds a Pipeline object per turn (and
 * copies every defined script onto it). A bare client, MGETs from a timer: 69 against 104 µs of CPU per command with
 * 3 a turn, 27 against 40 with 30 (one write per command: 36); and auto-pipelining's batches reached the old
 * generation, about 2 KB per command, with 10 ms young-generation pauses against under 1 ms. Tessera under Introspect
 * (three interleaved pairs, h2load -c8 -m8): 25 % more calls per second, 21 % less CPU per call; at 3 000/s, 10 % less
 * CPU per call and 34 % less promoted to the old generation. A pipeline (RedisContext.batch) writes its own single
 * buffer through the same socket, so order is kept.
 * A turn's writes go out early once WRITE_AT bytes wait, and the rest of the turn's are gathered again: Redis then
 * works on the first of a turn's scripts while the event loop makes the others, where it used to wait for the whole
 * turn and the event loop then for all of Redis's answers (the two took turns, one core between them). Issue for one
 * subject (h2load, 64 in flight; each call a 5 KB script), three pairs: 3 741-3 957 against 3 283-3 417 calls/s, and
 * with ES256 signed in place (jws.ts; now on the signing thread) 4 435-4 700. Introspect's turns (a few hundred bytes a
 * call) stay one write.
 */
function writesPerTick(redis: Redis): void {
  const send = redis.sendCommand;
  let corked: { uncork(): void; writableLength: number } | undefined;
  const uncork = () => {
    const stream = corked;
    corked = undefined;
    stream?.uncork();
  };
  redis.sendCommand = function (this: Redis, command, stream) {
    if (corked === undefined && stream === undefined && this.status === "ready") {
      this.stream.cork();
      corked = this.stream;
      setImmediate(uncork);
    }
    const sent = send.call(this, command, stream);
    if (corked !== undefined && corked.writableLength >= WRITE_AT) uncork();
    return sent;
  } as Redis["sendCommand"];
}

/** What a corked connection holds before it writes (Redis reads a client's input 16 KiB at a time). */
const WRITE_AT = 16 * 1024;

function nodeAuth(auth: RedisAuth | undefined): RedisOptions {
  if (!auth) return {};
  return {
    ...(auth.username !== undefined ? { username: auth.username } : {}),
    ...(auth.password !== undefined ? { password: auth.password } : {}),
    ...(auth.tls ? { tls: auth.tls.ca ? { ca: auth.tls.ca } : {} } : {}),
  };
}

/**
 * A connection of its own for a blocking read (XREAD BLOCK would hold up every command of the shared client), like
 * `redis` but with `commandTimeoutMs`, and with commands waiting for the connection rather than failing while it is
 * being made. On a Cluster, a Cluster client of its own: its reads go to the node of the key they read.
 */
export function blockingConnection(redis: RedisClient, commandTimeoutMs: number | undefined): RedisClient {
  const conn =
    redis instanceof Cluster
      ? redis.duplicate([], { enableOfflineQueue: true, redisOptions: { ...redis.options.redisOptions, commandTimeout: commandTimeoutMs, enableOfflineQueue: true } })
      : redis.duplicate({ commandTimeout: commandTimeoutMs, enableOfflineQueue: true });
  conn.on("error", ignore);
  return conn;
}

/** The command timeout the client was made with (createRedisClient), whichever kind it is. */
export function commandTimeoutOf(redis: RedisClient): number | undefined {
  return redis instanceof Cluster ? redis.options.redisOptions?.commandTimeout : redis.options.commandTimeout;
}

/** A Lua script as ioredis defines it. Time comes from ARGV, never from the server: the caller's clock decides. */
export interface Script {
  /** How many of the arguments are keys; "varies": as many as the call passes (declared per call). */
  numberOfKeys: number | "varies";
  lua: string;
}

export interface RedisStoreOptions {
  prefix: string;
  /**
   * > 0: a revocation is acknowledged only once that many replicas have it (Redis WAIT, up to `waitTimeoutMs`);
   * fewer in time fails the call with UNAVAILABLE (the revocation stays applied on the primary, and a retry waits
   * again).
   */
  waitReplicas?: number;
  waitTimeoutMs?: number;
  /**
   * From how many indexed sessions a subject's index of lives (`P{t}:x`) is kept (default 8; sessions.ts LIVES_FROM).
   * For tests, which hold both ways of opening a session to the memory store.
   */
  livesFrom?: number;
  /** Told when a failed append's entries go to the revocation feed's backlog, and when the backlog was appended. */
  onFeedBacklog?: (report: FeedBacklogReport) => void;
}

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;

/** Scripts queued to be sent together (RedisContext.batch). */
export interface ScriptBatch {
  script(name: string, keys: string[], args: (string | number)[]): void;
  exec(): Promise<[Error | null, unknown][]>;
}

/** The subject's risk observations, under its base (`P{t}:`). */
export function riskKeyOf(base: string): string {
  return `${base}risk`;
}

export class RedisContext {
  readonly prefix: string;
  private readonly waitReplicas: number;
  private readonly waitTimeoutMs: number;
  /** The defined scripts whose number of keys each call says. */
  private readonly varying = new Set<string>();

  constructor(
    readonly redis: RedisClient,
    opts: RedisStoreOptions,
  ) {
    this.prefix = opts.prefix;
    this.waitReplicas = opts.waitReplicas ?? 0;
    this.waitTimeoutMs = opts.waitTimeoutMs ?? 500;
    // An unreachable server must never crash the process with an unhandled 'error' event.
    redis.on("error", ignore);
  }

  /** Defines a part's scripts on the client (names unique across parts: each becomes the command `tessera_<name>`). */
  define(scripts: Record<string, Script>): void {
    for (const [name, { numberOfKeys, lua }] of Object.entries(scripts)) {
      if (numberOfKeys === "varies") this.varying.add(name);
      this.redis.defineCommand(commandName(name), numberOfKeys === "varies" ? { lua } : { numberOfKeys, lua });
    }
  }

  /** Runs one of the defined scripts. */
  script(name: string, keys: string[], args: (string | number)[]): Promise<unknown> {
    const call = (this.redis as unknown as Record<string, ScriptCall>)[commandName(name)]!;
    return this.varying.has(name) ? call.call(this.redis, keys.length, ...keys, ...args) : call.call(this.redis, ...keys, ...args);
  }

  /** Queues one of the defined scripts on a pipeline (ioredis puts the defined commands on pipelines too). */
  private pipelineScript(pipeline: ChainableCommander, name: string, keys: string[], args: (string | number)[]): void {
    const queue = (pipeline as unknown as Record<string, (...a: (string | number)[]) => unknown>)[commandName(name)]!;
    if (this.varying.has(name)) queue.call(pipeline, keys.length, ...keys, ...args);
    else queue.call(pipeline, ...keys, ...args);
  }

  /**
   * A batch of scripts, each on the keys of one slot, sent at once; `exec()` answers every one, in the order queued,
   * and the scripts of one slot run in that order (the audit's parts and the statistics' parts depend on it). On one
   * Redis they share one pipeline (one write), whose scripts ioredis loads before it is sent. On a Cluster (whose
   * pipelines must keep to one slot) each is sent as it is, routed by its keys, and each node's connection writes what
   * it was given in the turn at once (writesPerTick), rather than one write per slot; a script of a slot already in
   * the batch is sent once the one before it has answered, since the Cluster client sends a command again after a
   * redirection, a failover's retry or a NOSCRIPT, and it would then run after the ones sent behind it.
   */
  batch(): ScriptBatch {
    const redis = this.redis;
    if (redis instanceof Cluster) {
      const calls: Promise<unknown>[] = [];
      const lastOfSlot = new Map<number, Promise<unknown>>();
      return {
        script: (name, keys, args) => {
          const slot = calculateSlot(keys[0]!);
          const before = lastOfSlot.get(slot);
          const send = () => this.script(name, keys, args);
          const call = before === undefined ? send() : before.then(send, send);
          lastOfSlot.set(slot, call);
          calls.push(call);
        },
        exec: async () => (await Promise.allSettled(calls)).map((r) => (r.status === "fulfilled" ? [null, r.value] : [r.reason as Error, undefined])),
      };
    }
    const pipeline = redis.pipeline();
    return {
      script: (name, keys, args) => this.pipelineScript(pipeline, name, keys, args),
      exec: async () => (await pipeline.exec()) ?? [],
    };
  }

  /**
   * MGET of keys that share one slot (one subject's): Introspect's one read. On a Cluster it is sent straight on the
   * connection to the primary that holds the slot, written with that node's other commands of the turn, rather than
   * through the Cluster client, which works out every command's keys, slot and node again, each behind its own
   * redirection handling (measured on a 3-primary Cluster against the Cluster client's mget, both with writesPerTick,
   * four interleaved pairs: 3 923 against 3 583 Introspect/s, 285 against 311 µs of CPU per call). A node that no
   * longer holds the slot (MOVED, ASK, CLUSTERDOWN, TRYAGAIN) or whose connection is not up hands the read to the
   * Cluster client, which follows the redirection and refreshes its slot map; any other failure stands.
   */
  mgetInSlot(keys: string[]): Promise<(string | null)[]> {
    const redis = this.redis;
    if (!(redis instanceof Cluster)) return redis.mget(keys);
    const node = primaryOf(redis, keys[0]!);
    if (node === undefined || node.status !== "ready") return redis.mget(keys);
    return node.mget(keys).catch((err: unknown) => {
      if (err instanceof Error && HANDED_ON.test(err.message)) return redis.mget(keys);
      throw err;
    });
  }

  /** Runs `op`; any failure but a domain error becomes StoreUnavailableError. */
  async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (err instanceof TesseraError) throw err;
      throw new StoreUnavailableError(err);
    }
  }

  /** Whether a revocation is acknowledged only once replicas have it (RedisStoreOptions.waitReplicas > 0). */
  get waitsForReplicas(): boolean {
    return this.waitReplicas > 0;
  }

  /**
   * With waitReplicas configured: WAIT until that many replicas have every write this connection made so far (so
   * also a revocation an earlier, failed call applied), or fail. Returns `result` unchanged. `written`: a key in the
   * slot of each write to be waited for. WAIT counts the writes of the connection it is sent on, so on a Cluster it
   * goes to the node of each written key (a pipeline with one keyed command is sent to that key's node, on the
   * connection the write took); on one Redis a single WAIT covers them all.
   */
  async replicated<T>(result: T, ...written: string[]): Promise<T> {
    if (this.waitReplicas === 0) return result;
    const redis = this.redis;
    const waits =
      redis instanceof Cluster
        ? written.map(async (key) => {
            const replies = (await redis.pipeline().exists(key).wait(this.waitReplicas, this.waitTimeoutMs).exec()) ?? [];
            const [err, acked] = replies[1] ?? [new Error("no reply to WAIT"), 0];
            if (err) throw err;
            return Number(acked);
          })
        : [redis.wait(this.waitReplicas, this.waitTimeoutMs)];
    const acked = Math.min(...(await Promise.all(waits)));
    if (acked < this.waitReplicas) {
      throw new StoreUnavailableError(new Error(`revocation reached ${acked} of ${this.waitReplicas} replicas in time`));
    }
    return result;
  }

  /** `P{t}:`, the start of every key of one subject. */
  base(subject: string): string {
    return `${this.prefix}{${subjectTag(subject)}}:`;
  }
  /** The base of the subject a session id names, or null if the string cannot be one of our session ids. */
  sessionBase(sessionId: string): string | null {
    const tag = sessionTag(sessionId);
    return tag === null ? null : `${this.prefix}{${tag}}:`;
  }
  riskKey(subject: string): string {
    return riskKeyOf(this.base(subject));
  }

  /** Resolves when Redis answers PING. While the first connection is still being made, waits for it (bounded). */
  async ping(): Promise<void> {
    await this.guard(async () => {
      await this.connected();
      await this.redis.ping();
    });
  }

  /** QUIT, so replies in flight arrive; a server that does not answer within a second (or the command timeout) is cut off. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const cutOff = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.min(commandTimeoutOf(this.redis) ?? 1000, 1000));
    });
    try {
      await Promise.race([this.redis.quit().then(() => undefined), cutOff]);
    } catch {
      // fall through to disconnect
    } finally {
      clearTimeout(timer);
      this.redis.disconnect();
    }
  }

  /** Waits for the client to be ready, at most one command timeout; a client that gave up is not waited for. */
  private async connected(): Promise<void> {
    const r = this.redis;
    if (r.status === "ready") return;
    if (r.status === "end" || r.status === "close") throw new Error(`redis client is ${r.status}`);
    if (r.status === "wait") r.connect().catch(ignore);
    const waitMs = commandTimeoutOf(r) ?? 1000;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        r.off("ready", onReady);
        r.off("end", onEnd);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      const onEnd = () => done(new Error("redis connection ended"));
      const timer = setTimeout(() => done(new Error(`redis not ready within ${waitMs}ms`)), waitMs);
      r.once("ready", onReady);
      r.once("end", onEnd);
    });
  }
}

/** Lua: `last_generated_id(key)`, the newest id a stream ever handed out (XINFO STREAM), or nil if there is none. */
export const LUA_LAST_GENERATED_ID = `
local function last_generated_id(key)
  if redis.call('EXISTS', key) == 0 then return nil end
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then return info[i + 1] end
  end
end
`;

/**
 * `list` cut into consecutive parts of at most `size`, in order: what a batch sends as several scripts, so that no one
 * script holds Redis (and every other client) for long.
 */
export function partsOf<T>(list: readonly T[], size: number): T[][] {
  const parts: T[][] = [];
  for (let from = 0; from < list.length; from += size) parts.push(list.slice(from, from + size));
  return parts;
}

/** Milliseconds from now to deadline, at least 1 (for PX / PEXPIRE). Lua twin: `ttl` in SESSION_PRELUDE. */
export function ttl(deadline: number, now: number): number {
  return Math.max(1, Math.floor(deadline - now));
}

/** A well-formed stream id Redis still refuses (0-0, or past the largest id): nothing lies beyond it. */
export function isStreamIdRefusal(err: unknown): boolean {
  return err instanceof Error && err.name === "ReplyError" && /ID/i.test(err.message);
}

/** Failures of a command sent to a node directly that the Cluster client is asked to retry (mgetInSlot). */
const HANDED_ON = /^(?:MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b|Stream isn't writeable|Connection is closed/;

/**
 * The connection to the primary that holds a key's slot, as the Cluster client's slot map has it now; undefined
 * before the map is known. (ioredis keeps its node connections in a pool it does not export: ioredis is pinned to one
 * version in package.json, and the Cluster contract suites and failover tests run through this.)
 */
function primaryOf(cluster: Cluster, key: string): Redis | undefined {
  const node = cluster.slots[calculateSlot(key)]?.[0];
  if (node === undefined) return undefined;
  return (cluster as unknown as { connectionPool: { getInstanceByKey(key: string): Redis | undefined } }).connectionPool.getInstanceByKey(node);
}

function commandName(script: string): string {
  return `tessera_${script}`;
}

function ignore(): void {}
