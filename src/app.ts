/**
 * Composition root: config -> store -> keys -> authority -> routes -> listener. The only module that knows every
 * piece. Returns { listen, close } plus the parts tests want to reach.
 */
import { setMaxListeners } from "node:events";
import { readFileSync } from "node:fs";
import { Code, ConnectError } from "@connectrpc/connect";
import { callerAuth } from "./api/auth.js";
import { Pipeline, type Authorize } from "./api/pipeline.js";
import { Limits, auditLimited } from "./api/rate-limit.js";
import { services } from "./api/routes.js";
import { loadAccess } from "./config/callers.js";
import { claimsKeys } from "./config/claims-keys.js";
import { ConfigError, type Config, type StoreConfig } from "./config/config.js";
import { Audit } from "./domain/audit-trail.js";
import { Authority } from "./domain/authority.js";
import { systemClock, type Clock } from "./domain/clock.js";
import { KeyRing, type KeyRingOptions } from "./domain/keys.js";
import { KeyEncryption } from "./domain/key-encryption.js";
import { readSigningKeysFile } from "./config/signing-keys.js";
import { ClaimsCipher } from "./domain/sealed-claims.js";
import type { CounterStore, Store } from "./domain/store.js";
import { TokenCodec } from "./domain/tokens.js";
import { auditSinks } from "./observability/audit-log.js";
import { createLogger, type Logger } from "./observability/logger.js";
import { Metrics, instrumentStore } from "./observability/metrics.js";
import { consoleRoute, loadConsoleFiles } from "./server/console.js";
import { Readiness } from "./server/readiness.js";
import { serve } from "./server/serve.js";
import { MemoryStore } from "./store/memory.js";
import type { RedisAuth, RedisConnection } from "./store/redis/client.js";
import type { FeedBacklogReport } from "./store/redis/feed.js";

export interface AppOptions {
  logger?: Logger;
  clock?: Clock;
  /** Where the built operator console is (default: dist/console, src/server/console.ts); tests build their own. */
  consoleDir?: string;
}

export interface App {
  listen(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  readonly authority: Authority;
  readonly store: Store;
  readonly keys: KeyRing;
  readonly logger: Logger;
  /** Store reachable and not shutting down: drives grpc.health.v1 and GET /readyz. */
  readonly readiness: Readiness;
  readonly metrics: Metrics;
  /** The security audit trail (record, flush, list, risk). */
  readonly audit: Audit;
  /** Calls in flight now, on every path. */
  inFlight(): number;
  /**
   * Reads TESSERA_CALLERS_FILE again (SIGHUP): a valid file replaces the callers at once, for every call that starts
   * after; an invalid one changes nothing and the log says why (the place in the file). True if the callers changed.
   * Open mode stays open: a reload cannot turn caller authentication on or off (that takes a restart).
   */
  reloadCallers(): boolean;
  /**
   * Reads TESSERA_SIGNING_KEYS_FILE again (SIGHUP): a valid file whose keys hold one that signs now replaces the key set
   * at once; otherwise nothing changes and the log says why. False (and nothing logged) without a keys file.
   */
  reloadSigningKeys(): Promise<boolean>;
}

export async function createApp(config: Config, opts: AppOptions = {}): Promise<App> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const clock = opts.clock ?? systemClock;
  logAccess(logger, config.access);
  const metrics = new Metrics();
  const opened = await openStore(config.store, logger, metrics);
  const store = instrumentStore(opened.store, metrics);
  const keys = new KeyRing(store, config.tokens.signingAlg, clock, 1_000, {
    prepublishMs: config.keys.prepublishMs,
    rotationPeriodMs: config.keys.rotationPeriodMs,
    // A retired key verifies until the last token it signed has expired (a refresh token lives longest) ...
    retainMs: config.sessions.refreshTtlMaxMs + config.tokens.clockSkewMs,
    // ... and the feed tells sidecars (which verify access tokens only) of a revoked key for an access token's life.
    noticeMs: config.sessions.accessTtlMaxMs + config.tokens.clockSkewMs,
  }, keyRingOptions(config.keys));
  logKeys(logger, config, keys);
  // A stored key no KEK opens, a keys file where no key signs now: no start (and the store's connection closed).
  await keys.init().catch(async (err: unknown) => {
    await store.close();
    throw err;
  });
  const audit = new Audit({ store, clock, config: config.audit, ...auditSinks(logger, metrics) });
  // Every 10 s (a quarter of a shorter rotation period): pick up keys other processes added, and rotate when the
  // schedule says so (one process of many does).
  const period = config.keys.rotationPeriodMs;
  const keyTick = setInterval(() => {
    keys.rotateIfDue().then(
      (key) => key && audit.record({ type: "keys_rotated", detail: { kid: key.kid, alg: key.alg, scheduled: true } }),
      (err: unknown) => logger.warn({ err }, "key set reload or scheduled rotation failed"),
    );
  }, period > 0 ? Math.min(10_000, Math.max(250, period / 4)) : 10_000);
  keyTick.unref();
  // A key revoked by another process reaches this one through the revocation feed's wake-up, within milliseconds; so
  // does a Redis that answers again after a failure (it may have come back empty, without the key set: the reload
  // then makes a new signing key).
  let keyReloadQueued = false;
  const unsubscribeKeys = store.subscribe(() => {
    if (keyReloadQueued) return;
    keyReloadQueued = true;
    setTimeout(() => {
      keyReloadQueued = false;
      keys.reload().catch((err: unknown) => logger.warn({ err }, "key set reload failed"));
    }, 20).unref();
  });
  const sealing = claimsKeys(config.claims);
  const authority = new Authority({
    store,
    codec: new TokenCodec(keys, config.tokens),
    clock,
    audit,
    config: { ...config.sessions, clockSkewMs: config.tokens.clockSkewMs, riskWindowMs: config.audit.riskWindowMs },
    // Sensitive claims: sealed under TESSERA_CLAIMS_KEY (opened with it or TESSERA_CLAIMS_KEY_PREVIOUS); none without.
    claims: sealing && new ClaimsCipher(sealing),
    // The audit trail already writes each of these as a log line; here they only feed the counters.
    onEvent: (e) => (e.type === "refresh_reuse" ? metrics.refreshReuse : metrics.sessionsEvicted).inc(),
  });
  // Counters on the store's Redis client and prefix, so every process on it shares them; in memory otherwise.
  const limits = new Limits({
    ...config.limits,
    counters: opened.counters,
    onLimited: auditLimited(audit),
  });
  const readiness = new Readiness({
    store,
    pingTimeoutMs: 2 * config.store.commandTimeoutMs,
    onStoreChange: (up, err) =>
      up ? logger.info({ store: "up" }, "store reachable again: serving") : logger.warn({ err }, "store unreachable: not serving"),
  });
  readiness.start();
  const closing = new AbortController(); // ends the revocation watches when shutdown begins
  setMaxListeners(0, closing.signal);
  // Behind a closure, so a reload (SIGHUP) swaps the callers for every call that starts after it.
  let authorize: Authorize = callerAuth(config.access.callers ? { callers: config.access.callers } : { open: true }, audit);
  const pipeline = new Pipeline({
    logger,
    authorize: (call) => authorize(call),
    admitCaller: limits.admitCaller,
    metrics,
    maxTimeoutMs: config.server.maxTimeoutMs,
  });
  const api = services({
    authority,
    keys,
    maxTokenLength: config.tokens.maxTokenLength,
    onIntrospect: metrics.countIntrospection,
    limits,
    audit,
    feed: { feed: store, clock, closing: closing.signal },
    stats: { stats: store, clock },
  });
  const { listener, cancelCalls } = serve(config.server, {
    api,
    pipeline,
    jwks: () => keys.publicKeys(),
    jwksMaxAgeSeconds: Math.round(config.keys.jwksMaxAgeMs / 1000),
    readiness,
    metrics,
    // The operator console: static files read once from dist/console (built by `npm run build`), at /console/.
    console: consoleRoute(loadConsoleFiles(opts.consoleDir)),
  });

  return {
    authority,
    store,
    keys,
    logger,
    readiness,
    metrics,
    audit,
    inFlight: () => pipeline.inFlight,
    listen: () => listener.listen(),
    reloadCallers() {
      const file = config.access.file;
      if (file === undefined) {
        logger.warn({ auth: "open" }, "SIGHUP: no TESSERA_CALLERS_FILE (open mode), nothing to reload; a reload cannot turn caller authentication on");
        return false;
      }
      try {
        // The same checks as at start (an mtls caller needs TESSERA_TLS_CLIENT_CA); errors name the place in the file.
        const { callers } = loadAccess({
          callers: file,
          allowUnauthenticated: false,
          listen: config.server.listen,
          clientCa: config.server.tls?.clientCa !== undefined,
        });
        if (callers === undefined) return false; // not reached: a file that is set is read, or refused
        authorize = callerAuth({ callers }, audit);
        logger.info({ auth: "callers", callers: callers.map((c) => c.name), file }, "callers file reloaded");
        return true;
      } catch (err) {
        logger.error({ err, file }, "callers file not reloaded: keeping the callers in use");
        return false;
      }
    },
    async reloadSigningKeys() {
      const file = config.keys.signingKeysFile?.path;
      if (file === undefined) return false;
      try {
        const read = readSigningKeysFile(file);
        await keys.useProvided(read);
        logger.info({ file, kids: read.map((k) => k.kid), signing: keys.signingKey().kid }, "signing keys file reloaded");
        return true;
      } catch (err) {
        logger.error({ err, file }, "signing keys file not reloaded: keeping the keys in use");
        return false;
      }
    },
    /**
     * Graceful shutdown: health goes NOT_SERVING (/readyz 503) while the port goes on serving for
     * TESSERA_SHUTDOWN_DELAY, so load balancers stop sending first; then the drain: health Watch and revocation
     * watches end with UNAVAILABLE, new calls are refused, connections are asked to close; calls in flight get
     * TESSERA_SHUTDOWN_GRACE to finish and are then cancelled with UNAVAILABLE; then the store closes.
     */
    close: once(async () => {
      readiness.stop();
      clearInterval(keyTick);
      unsubscribeKeys();
      const delayMs = config.server.shutdownDelayMs;
      if (delayMs > 0) logger.info({ delayMs }, "not ready: serving on for TESSERA_SHUTDOWN_DELAY, then draining");
      await readiness.notServingFor(delayMs);
      readiness.drain();
      pipeline.close();
      closing.abort();
      listener.drain();
      if (!(await settles(pipeline.idle(), config.server.shutdownGraceMs))) {
        logger.warn({ inFlight: pipeline.inFlight }, "shutdown grace period over: cancelling calls in flight");
        cancelCalls(new ConnectError("server is shutting down", Code.Unavailable));
        await settles(pipeline.idle(), 1_000);
      }
      await settles(listener.closed(), 2_000); // let the last responses reach their callers
      listener.destroy();
      // What is still buffered goes to the store before it closes, but a hung store cannot hold up the exit.
      if (!(await settles(audit.close(), 1_000))) logger.warn("audit events still buffered at exit were not written");
      await store.close();
    }),
  };
}

/** Says at start who may call: the callers file's callers, or everybody (open mode, a warning). */
function logAccess(logger: Logger, access: Config["access"]): void {
  if (access.callers === undefined) {
    const why = access.allowUnauthenticated ? "TESSERA_ALLOW_UNAUTHENTICATED=true" : "listening on loopback";
    logger.warn({ auth: "open" }, `no TESSERA_CALLERS_FILE (${why}): every caller is let in, unauthenticated, with every permission`);
  } else {
    logger.info({ auth: "callers", callers: access.callers.map((c) => c.name) }, "caller authentication on");
  }
}

/** Where the signing keys come from (the store, sealed with a KEK or not; a file; the HS256 secret). */
function keyRingOptions(k: Config["keys"]): KeyRingOptions {
  const file = k.signingKeysFile;
  return {
    ...(k.encryption && { encryption: new KeyEncryption(k.encryption.current, k.encryption.previous) }),
    ...(file && { provided: { keys: file.keys, source: `TESSERA_SIGNING_KEYS_FILE (${file.path})` } }),
    ...(k.hs256Secret && { hmac: { secret: k.hs256Secret, source: "TESSERA_HS256_SECRET" } }),
  };
}

/** Says at start where the signing keys come from; warns when private keys go to Redis in plain. */
function logKeys(logger: Logger, config: Config, keys: KeyRing): void {
  const { encryption, signingKeysFile, hs256Secret } = config.keys;
  if (signingKeysFile) logger.info({ keys: "file", file: signingKeysFile.path, kids: signingKeysFile.keys.map((k) => k.kid) }, "signing keys from TESSERA_SIGNING_KEYS_FILE");
  else if (hs256Secret) logger.info({ keys: "hs256" }, "signing with HS256 and TESSERA_HS256_SECRET: the JWKS publishes no key for it");
  if (keys.generates && encryption === undefined && redisConnection(config.store) !== undefined) {
    logger.warn({ keys: "plain" }, "private signing keys are kept in Redis unencrypted: set TESSERA_KEY_ENCRYPTION_KEY");
  }
}

/** The store, and its rate-limit counters (outside the instrumented store: they are not store operations). */
async function openStore(config: StoreConfig, logger: Logger, metrics: Metrics): Promise<{ store: Store; counters: CounterStore }> {
  const conn = redisConnection(config);
  if (conn === undefined) {
    logger.info({ store: "memory" }, "using the embedded in-memory store: state lives in this process only and is lost on restart");
    const store = new MemoryStore({ maxSessions: config.memoryMaxSessions });
    return { store, counters: store.counters };
  }
  const { RedisStore, createRedisClient } = await import("./store/redis.js");
  const redis = createRedisClient(conn.connection, config);
  const store = new RedisStore(redis, { ...config, onFeedBacklog: feedBacklogReporter(logger, metrics) });
  metrics.feedBacklog(() => store.feedBacklog);
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      await store.ping();
      break;
    } catch (err) {
      if (Date.now() > deadline) {
        await store.close();
        throw new Error(`${conn.variable}: Redis did not answer within 10s`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  logger.info({ store: "redis", mode: conn.mode, prefix: config.prefix }, "using the Redis store");
  return { store, counters: store.counters };
}

/**
 * What the revocation feed says of its backlog (entries whose append failed, appended again by this process:
 * src/store/redis/feed.ts), to the log and to tessera_feed_backlog_dropped_total.
 */
export function feedBacklogReporter(logger: Logger, metrics: Metrics): (report: FeedBacklogReport) => void {
  return (report) => {
    logFeedBacklog(logger, report);
    if (report.event === "kept" && report.dropped > 0) metrics.feedBacklogDropped.inc(report.dropped);
  };
}

function logFeedBacklog(logger: Logger, report: FeedBacklogReport): void {
  if (report.event === "appended") {
    logger.info({ feed: "backlog appended", appended: report.appended, expired: report.expired }, "revocation feed: the backlog is appended (entries that no longer mattered let go)");
    return;
  }
  if (report.event === "abandoned") {
    logger.error({ feed: "backlog abandoned", pending: report.pending }, "revocation feed: closing with entries never appended: sidecars will not hear of them from this process");
    return;
  }
  const { entries, pending, dropped, error: err } = report;
  if (dropped > 0) logger.error({ feed: "backlog full", entries, pending, dropped, err }, "revocation feed: append failed and the backlog is full: the oldest entries were dropped");
  else logger.warn({ feed: "backlog", entries, pending, err }, "revocation feed: append failed: its entries are kept and appended again once Redis takes them");
}

/** The Redis the configuration names (one mode of three, config.ts checkRedisMode), or undefined: the memory store. */
function redisConnection(config: StoreConfig): { mode: string; variable: string; connection: RedisConnection } | undefined {
  const ca = config.tlsCa === undefined ? undefined : readRedisCa(config.tlsCa);
  if (config.redisUrl !== undefined) {
    return { mode: "single", variable: "TESSERA_REDIS_URL", connection: ca ? { url: config.redisUrl, tlsCa: ca } : config.redisUrl };
  }
  const auth: RedisAuth = {
    ...(config.username !== undefined ? { username: config.username } : {}),
    ...(config.password !== undefined ? { password: config.password } : {}),
    ...(config.tls ? { tls: ca ? { ca } : {} } : {}),
  };
  if (config.clusterNodes !== undefined) {
    return { mode: "cluster", variable: "TESSERA_REDIS_CLUSTER_NODES", connection: { cluster: config.clusterNodes, auth } };
  }
  if (config.sentinels !== undefined) {
    const connection: RedisConnection = {
      sentinels: config.sentinels,
      master: config.sentinelMaster!,
      auth,
      ...(config.sentinelPassword !== undefined ? { sentinelPassword: config.sentinelPassword } : {}),
    };
    return { mode: "sentinel", variable: "TESSERA_REDIS_SENTINELS", connection };
  }
  return undefined;
}

function readRedisCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError("TESSERA_REDIS_TLS_CA", `cannot be read (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
}

/** Whether the promise settled within ms. */
async function settles(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A function that runs its body once; later calls get the first call's promise. */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}
