/**
 * Configuration: read from the environment once, at start, validated eagerly into a frozen object. Every error
 * names the variable. The defaults live in DEFAULTS below and nowhere else (the README's table mirrors them).
 */
import { isIP } from "node:net";
import { SIGNING_ALGORITHMS, type SigningAlgorithm } from "../domain/keys.js";
import { formatDuration, parseDuration } from "./duration.js";
import { loadAccess, type CallerSpec } from "./callers.js";
import { ConfigError } from "./errors.js";
import { loadTls, type TlsConfig } from "./tls.js";

export interface Config {
  listen: { host: string; port: number };
  /** Unset: the embedded in-memory store. */
  redisUrl: string | undefined;
  redisPrefix: string;
  issuer: string;
  audience: string[];
  signingAlg: SigningAlgorithm;
  accessTtlMs: number;
  accessTtlMaxMs: number;
  refreshTtlMs: number;
  refreshTtlMaxMs: number;
  refreshIdleTtlMs: number;
  refreshGraceMs: number;
  maxSessions: number;
  clockSkewMs: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  /** Redis commands that take longer fail with UNAVAILABLE. */
  storeTimeoutMs: number;
  /** Replicas that must have a revocation before it is acknowledged (Redis WAIT); 0: do not wait. */
  redisWaitReplicas: number;
  /** How long to wait for them. */
  redisWaitTimeoutMs: number;
  /** Largest request body accepted, in bytes. */
  maxRequestBytes: number;
  /** Longest token accepted anywhere, in characters. */
  maxTokenLength: number;
  /** Tokens whose signature verified that are remembered, so a repeat skips the signature check; 0: off. */
  verifyCacheSize: number;
  /** Longest deadline honoured; a caller asking for more (or for none) gets this. */
  maxTimeoutMs: number;
  /** Longest time from a request's headers to its complete body, on every path and protocol. */
  readTimeoutMs: number;
  /** Unary gRPC calls to Tessera's own methods take the lean path (TESSERA_GRPC_FAST_PATH); false: all connect-node. */
  grpcFastPath: boolean;
  /** On SIGTERM/SIGINT, how long calls in flight may take before they are cancelled with UNAVAILABLE. */
  shutdownGraceMs: number;
  /** Who may call what (TESSERA_CALLERS_FILE). Unset: open mode (loopback, or TESSERA_ALLOW_UNAUTHENTICATED). */
  callers: readonly CallerSpec[] | undefined;
  allowUnauthenticated: boolean;
  /** Unset: plaintext (h2c and HTTP/1.1 on one port). */
  tls: TlsConfig | undefined;
  /** The audit trail keeps about this many events (TESSERA_AUDIT_MAX_EVENTS)... */
  auditMaxEvents: number;
  /** ...and none older than this (TESSERA_AUDIT_MAX_AGE). */
  auditMaxAgeMs: number;
  /** Suspicious-activity signals count within this window (TESSERA_RISK_WINDOW). */
  riskWindowMs: number;
  /** A risk score (0-100) at or above this raises a suspicious_activity event (TESSERA_RISK_THRESHOLD). */
  riskThreshold: number;
  /** Calls per caller and method (TESSERA_RATE_CALLER); undefined: no limit. */
  rateCaller: RateLimit | undefined;
  /** Issue and Refresh calls per subject, each method counted apart (TESSERA_RATE_SUBJECT); undefined: no limit. */
  rateSubject: RateLimit | undefined;
  /** Issue calls per client IP, IPv6 per /64 (TESSERA_RATE_IP); undefined: no limit. */
  rateIp: RateLimit | undefined;
  /** Failed refreshes that lock a session or subject out of Refresh (TESSERA_REFRESH_LOCKOUT_*). */
  refreshLockout: RefreshLockout;
}

/** At most `points` calls per fixed window of `windowMs` (whole seconds). */
export interface RateLimit {
  points: number;
  windowMs: number;
}

/** `after` failures of one session (`subjectAfter` of one subject) within `windowMs` lock it for `lockMs`; 0 is off. */
export interface RefreshLockout {
  after: number;
  subjectAfter: number;
  windowMs: number;
  lockMs: number;
}

export const DEFAULTS = {
  TESSERA_LISTEN: "127.0.0.1:8080",
  TESSERA_REDIS_PREFIX: "tessera:",
  TESSERA_ISSUER: "tessera",
  TESSERA_AUDIENCE: "tessera",
  TESSERA_SIGNING_ALG: "ES256",
  TESSERA_ACCESS_TTL: "15m",
  TESSERA_ACCESS_TTL_MAX: "1h",
  TESSERA_REFRESH_TTL: "7d",
  TESSERA_REFRESH_TTL_MAX: "90d",
  TESSERA_REFRESH_IDLE_TTL: "7d",
  TESSERA_REFRESH_GRACE: "10s",
  TESSERA_MAX_SESSIONS: "20",
  TESSERA_CLOCK_SKEW: "5s",
  TESSERA_LOG_LEVEL: "info",
  TESSERA_STORE_TIMEOUT: "1s",
  TESSERA_REDIS_WAIT_REPLICAS: "0",
  TESSERA_REDIS_WAIT_TIMEOUT: "500ms",
  TESSERA_MAX_REQUEST_BYTES: "16384",
  TESSERA_MAX_TOKEN_LENGTH: "8192",
  TESSERA_VERIFY_CACHE_SIZE: "10000",
  TESSERA_MAX_TIMEOUT: "30s",
  TESSERA_READ_TIMEOUT: "10s",
  TESSERA_GRPC_FAST_PATH: "true",
  TESSERA_SHUTDOWN_GRACE: "10s",
  TESSERA_ALLOW_UNAUTHENTICATED: "false",
  TESSERA_AUDIT_MAX_EVENTS: "100000",
  TESSERA_AUDIT_MAX_AGE: "30d",
  TESSERA_RISK_WINDOW: "15m",
  TESSERA_RISK_THRESHOLD: "50",
  TESSERA_RATE_CALLER: "0",
  TESSERA_RATE_SUBJECT: "0",
  TESSERA_RATE_IP: "0",
  TESSERA_REFRESH_LOCKOUT_AFTER: "20",
  TESSERA_REFRESH_LOCKOUT_SUBJECT_AFTER: "100",
  TESSERA_REFRESH_LOCKOUT_WINDOW: "15m",
  TESSERA_REFRESH_LOCKOUT_TIME: "15m",
} as const;

export type ConfigKey =
  | keyof typeof DEFAULTS
  | "TESSERA_REDIS_URL"
  | "TESSERA_CALLERS_FILE"
  | "TESSERA_TLS_CERT"
  | "TESSERA_TLS_KEY"
  | "TESSERA_TLS_CLIENT_CA";

export { ConfigError };

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

export function loadConfig(env: Record<string, string | undefined> = process.env): Readonly<Config> {
  const get = (key: keyof typeof DEFAULTS): string => {
    const v = env[key];
    return v === undefined || v.trim() === "" ? DEFAULTS[key] : v.trim();
  };
  const duration = (key: keyof typeof DEFAULTS, min = 1): number => {
    const ms = parseDuration(get(key));
    if (ms === undefined) throw new ConfigError(key, `"${get(key)}" is not a duration (examples: 15m, 7d, 1h30m, 500ms)`);
    if (ms < min) throw new ConfigError(key, `must be at least ${formatDuration(min)}`);
    return ms;
  };
  const integer = (key: keyof typeof DEFAULTS, min: number, max: number): number => {
    const raw = get(key);
    const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new ConfigError(key, `"${raw}" is not a whole number from ${min} to ${max}`);
    }
    return n;
  };
  /** Limiter windows are whole seconds: rate-limiter-flexible's Redis backend counts in seconds. */
  const seconds = (key: keyof typeof DEFAULTS): number => {
    const ms = duration(key, 1000);
    if (ms % 1000 !== 0) throw new ConfigError(key, `"${get(key)}" is not a whole number of seconds`);
    return ms;
  };
  const boolean = (key: keyof typeof DEFAULTS): boolean => {
    const raw = get(key).toLowerCase();
    if (raw === "true" || raw === "1") return true;
    if (raw === "false" || raw === "0") return false;
    throw new ConfigError(key, `"${get(key)}" is not true or false`);
  };
  const rate = (key: keyof typeof DEFAULTS): RateLimit | undefined => {
    const raw = get(key);
    if (raw === "0") return undefined;
    const m = /^(\d{1,9})\/(\S+)$/.exec(raw);
    const points = Number(m?.[1]);
    const windowMs = m ? parseDuration(m[2]!) : undefined;
    if (!m || points < 1 || windowMs === undefined) {
      throw new ConfigError(key, `"${raw}" is not calls/window (examples: 100/1s, 1000/1m) or 0 (no limit)`);
    }
    if (windowMs < 1000 || windowMs % 1000 !== 0) throw new ConfigError(key, `the window must be a whole number of seconds`);
    return { points, windowMs };
  };

  const accessTtlMs = duration("TESSERA_ACCESS_TTL", 1000);
  const accessTtlMaxMs = duration("TESSERA_ACCESS_TTL_MAX", 1000);
  if (accessTtlMs > accessTtlMaxMs) throw new ConfigError("TESSERA_ACCESS_TTL", "exceeds TESSERA_ACCESS_TTL_MAX");
  const refreshTtlMs = duration("TESSERA_REFRESH_TTL", 1000);
  const refreshTtlMaxMs = duration("TESSERA_REFRESH_TTL_MAX", 1000);
  if (refreshTtlMs > refreshTtlMaxMs) throw new ConfigError("TESSERA_REFRESH_TTL", "exceeds TESSERA_REFRESH_TTL_MAX");

  const alg = get("TESSERA_SIGNING_ALG");
  if (!(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) {
    throw new ConfigError("TESSERA_SIGNING_ALG", `"${alg}" is not one of ${SIGNING_ALGORITHMS.join(", ")}`);
  }
  const logLevel = get("TESSERA_LOG_LEVEL");
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError("TESSERA_LOG_LEVEL", `"${logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  }
  const audience = get("TESSERA_AUDIENCE")
    .split(",")
    .map((a) => a.trim())
    .filter((a) => a !== "");
  if (audience.length === 0) throw new ConfigError("TESSERA_AUDIENCE", "needs at least one audience");

  const redisUrl = env.TESSERA_REDIS_URL?.trim() || undefined;
  if (redisUrl !== undefined) {
    let url: URL;
    try {
      url = new URL(redisUrl);
    } catch {
      throw new ConfigError("TESSERA_REDIS_URL", "is not a URL (example: redis://127.0.0.1:6379/0)");
    }
    if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
      throw new ConfigError("TESSERA_REDIS_URL", "must start with redis:// or rediss://");
    }
  }
  const issuer = get("TESSERA_ISSUER");
  if (issuer.length > 256) throw new ConfigError("TESSERA_ISSUER", "is longer than 256 characters");
  const listen = parseListen(get("TESSERA_LISTEN"));
  const tls = loadTls(env);
  const access = loadAccess({
    callersFile: env.TESSERA_CALLERS_FILE,
    allowUnauthenticated: get("TESSERA_ALLOW_UNAUTHENTICATED"),
    listenHost: listen.host,
    loopback: isLoopback(listen.host),
    clientCa: tls?.clientCa !== undefined,
  });

  return Object.freeze({
    listen,
    redisUrl,
    redisPrefix: get("TESSERA_REDIS_PREFIX"),
    issuer,
    audience,
    signingAlg: alg as SigningAlgorithm,
    accessTtlMs,
    accessTtlMaxMs,
    refreshTtlMs,
    refreshTtlMaxMs,
    refreshIdleTtlMs: duration("TESSERA_REFRESH_IDLE_TTL", 1000),
    refreshGraceMs: duration("TESSERA_REFRESH_GRACE", 0),
    maxSessions: integer("TESSERA_MAX_SESSIONS", 1, 10_000),
    clockSkewMs: duration("TESSERA_CLOCK_SKEW", 0),
    logLevel: logLevel as Config["logLevel"],
    storeTimeoutMs: duration("TESSERA_STORE_TIMEOUT", 10),
    redisWaitReplicas: integer("TESSERA_REDIS_WAIT_REPLICAS", 0, 16),
    redisWaitTimeoutMs: waitTimeout(
      duration("TESSERA_REDIS_WAIT_TIMEOUT", 1),
      duration("TESSERA_STORE_TIMEOUT", 10),
      integer("TESSERA_REDIS_WAIT_REPLICAS", 0, 16),
    ),
    maxRequestBytes: integer("TESSERA_MAX_REQUEST_BYTES", 1024, 16 * 1024 * 1024),
    maxTokenLength: integer("TESSERA_MAX_TOKEN_LENGTH", 256, 65_536),
    verifyCacheSize: integer("TESSERA_VERIFY_CACHE_SIZE", 0, 1_000_000),
    maxTimeoutMs: duration("TESSERA_MAX_TIMEOUT", 100),
    readTimeoutMs: duration("TESSERA_READ_TIMEOUT", 100),
    grpcFastPath: boolean("TESSERA_GRPC_FAST_PATH"),
    shutdownGraceMs: duration("TESSERA_SHUTDOWN_GRACE", 0),
    ...access,
    tls,
    auditMaxEvents: integer("TESSERA_AUDIT_MAX_EVENTS", 100, 100_000_000),
    auditMaxAgeMs: duration("TESSERA_AUDIT_MAX_AGE", 60_000),
    riskWindowMs: duration("TESSERA_RISK_WINDOW", 1000),
    riskThreshold: integer("TESSERA_RISK_THRESHOLD", 1, 100),
    rateCaller: rate("TESSERA_RATE_CALLER"),
    rateSubject: rate("TESSERA_RATE_SUBJECT"),
    rateIp: rate("TESSERA_RATE_IP"),
    refreshLockout: {
      after: integer("TESSERA_REFRESH_LOCKOUT_AFTER", 0, 1_000_000),
      subjectAfter: integer("TESSERA_REFRESH_LOCKOUT_SUBJECT_AFTER", 0, 1_000_000),
      windowMs: seconds("TESSERA_REFRESH_LOCKOUT_WINDOW"),
      lockMs: seconds("TESSERA_REFRESH_LOCKOUT_TIME"),
    },
  });
}

/** WAIT blocks the connection: it must end before the store's command timeout cuts it off. */
function waitTimeout(waitMs: number, storeTimeoutMs: number, replicas: number): number {
  if (replicas > 0 && waitMs >= storeTimeoutMs) {
    throw new ConfigError("TESSERA_REDIS_WAIT_TIMEOUT", "must be shorter than TESSERA_STORE_TIMEOUT");
  }
  return waitMs;
}

function parseListen(value: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || host === undefined || !Number.isInteger(port) || port > 65535) {
    throw new ConfigError("TESSERA_LISTEN", `"${value}" is not host:port (examples: 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080)`);
  }
  if (m[1] !== undefined && isIP(host) !== 6) throw new ConfigError("TESSERA_LISTEN", `"${host}" is not an IPv6 address`);
  return { host, port };
}

/** Whether the listen address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
