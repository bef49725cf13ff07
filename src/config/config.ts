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
  /** Largest request body accepted, in bytes. */
  maxRequestBytes: number;
  /** Longest token accepted anywhere, in characters. */
  maxTokenLength: number;
  /** Longest deadline honoured; a caller asking for more (or for none) gets this. */
  maxTimeoutMs: number;
  /** On SIGTERM/SIGINT, how long calls in flight may take before they are cancelled with UNAVAILABLE. */
  shutdownGraceMs: number;
  /** Who may call what (TESSERA_CALLERS_FILE). Unset: open mode (loopback, or TESSERA_ALLOW_UNAUTHENTICATED). */
  callers: readonly CallerSpec[] | undefined;
  allowUnauthenticated: boolean;
  /** Unset: plaintext (h2c and HTTP/1.1 on one port). */
  tls: TlsConfig | undefined;
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
  TESSERA_MAX_REQUEST_BYTES: "16384",
  TESSERA_MAX_TOKEN_LENGTH: "8192",
  TESSERA_MAX_TIMEOUT: "30s",
  TESSERA_SHUTDOWN_GRACE: "10s",
  TESSERA_ALLOW_UNAUTHENTICATED: "false",
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
    maxRequestBytes: integer("TESSERA_MAX_REQUEST_BYTES", 1024, 16 * 1024 * 1024),
    maxTokenLength: integer("TESSERA_MAX_TOKEN_LENGTH", 256, 65_536),
    maxTimeoutMs: duration("TESSERA_MAX_TIMEOUT", 100),
    shutdownGraceMs: duration("TESSERA_SHUTDOWN_GRACE", 0),
    ...access,
    tls,
  });
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
