/**
 * Configuration: every TESSERA_* variable is declared once, in VARIABLES below (name, default, bounds, a one-line doc
 * and the part of Tessera that uses it), read from the environment once, at start, validated eagerly and frozen.
 * Every error names the variable. The table in docs/configuration.md is generated from VARIABLES
 * (`npm run docs:config`; `npm test` fails when it is stale).
 *
 * The result is grouped by consumer, and each group's field names are its consumer's option names, so the
 * composition root (src/app.ts) hands each part its group. Adding a variable: its declaration here, plus its
 * consumer.
 */
import { MAC_ALGORITHMS, SIGNING_ALGORITHMS } from "../domain/keys.js";
import { loadAccess, type CallerAccess } from "./callers.js";
import { CLAIMS_KEY_BYTES } from "../domain/sealed-claims.js";
import { checkClaimsKeys, claimsKey } from "./claims-keys.js";
import { ConfigError } from "./errors.js";
import { loadKeyMaterial, type DeclaredKeyMaterial, type KeyMaterial } from "./signing-keys.js";
import { loadTls, type TlsConfig } from "./tls.js";
import {
  base64Bytes,
  base64BytesFile,
  duration,
  hostPort,
  integer,
  isLoopback,
  list,
  oneOf,
  path,
  rate,
  readAll,
  redisUrl,
  seconds,
  boolean,
  text,
  variable,
  variablesOf,
  hidden,
  type NameOf,
  type Values,
} from "./variable.js";

export { ConfigError, isLoopback };
export type { RateLimit } from "./variable.js";

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** Every variable Tessera reads, by the part of Tessera that reads it. docs/configuration.md lists them in this order. */
export const VARIABLES = {
  /** The listener, the two request paths (src/server/) and shutdown. */
  server: {
    listen: variable({
      name: "TESSERA_LISTEN", default: "127.0.0.1:8080", parse: hostPort,
      doc:
        "`host:port` to listen on (`[::1]:8080` for IPv6). One port serves gRPC (HTTP/2 without TLS), the Connect " +
        "protocol and gRPC-Web over HTTP/2 and HTTP/1.1. Port `0` picks a free port.",
    }),
    /** The paths of the PEM files; loadConfig reads them into a TlsConfig (unset: plaintext, h2c and HTTP/1.1). */
    tls: {
      cert: variable({
        name: "TESSERA_TLS_CERT", parse: path,
        doc:
          "PEM certificate (chain) of the server. With `TESSERA_TLS_KEY`, the port speaks TLS only: HTTP/2 and " +
          "HTTP/1.1 chosen by ALPN.",
      }),
      key: variable({
        name: "TESSERA_TLS_KEY", parse: path,
        doc: "PEM private key of `TESSERA_TLS_CERT`; both or neither.",
      }),
      clientCa: variable({
        name: "TESSERA_TLS_CLIENT_CA", parse: path,
        doc:
          "PEM CA bundle for client certificates (needs TLS). Set: clients are asked for a certificate (not " +
          "required), and one this CA signed identifies an mTLS caller.",
      }),
    },
    maxRequestBytes: variable({
      name: "TESSERA_MAX_REQUEST_BYTES", default: "16384", parse: integer(1024, 16 * 1024 * 1024),
      doc: "Largest request message accepted.",
    }),
    maxTimeoutMs: variable({
      name: "TESSERA_MAX_TIMEOUT", default: "30s", parse: duration("100ms"),
      doc:
        "Longest any call may run: a caller's longer (or missing) deadline is capped to it and the call ends with " +
        "`DEADLINE_EXCEEDED`.",
    }),
    readTimeoutMs: variable({
      name: "TESSERA_READ_TIMEOUT", default: "10s", parse: duration("100ms"),
      doc:
        "Longest time from a request's headers to its complete body, on every protocol (`DEADLINE_EXCEEDED`; " +
        "HTTP/1.1: 408). Methods that stream their requests (reflection) get `TESSERA_MAX_TIMEOUT`.",
    }),
    maxPendingBytes: variable({
      name: "TESSERA_MAX_PENDING_BYTES", default: "67108864", parse: integer(1024 * 1024, 64 * 1024 * 1024 * 1024),
      doc:
        "Request bytes the port's HTTP/2 streams may hold at once in unary request bodies not yet complete (a " +
        "stalled or trickling body holds its bytes up to `TESSERA_READ_TIMEOUT`). A stream whose next bytes would go " +
        "past it is refused with `RESOURCE_EXHAUSTED` (Connect: HTTP 429), unless no other stream holds any. The " +
        "default, 64 MiB, is 4096 stalled bodies of the default `TESSERA_MAX_REQUEST_BYTES`.",
    }),
    maxConnections: variable({
      name: "TESSERA_MAX_CONNECTIONS", default: "10000", parse: integer(1, 1_000_000),
      doc:
        "Open connections accepted at once; a connection beyond it is closed at once.",
    }),
    grpcFastPath: variable({
      name: "TESSERA_GRPC_FAST_PATH", default: "true", parse: boolean,
      doc:
        "Unary gRPC calls to Tessera's own methods take the lean path. `false` sends every call through connect-node " +
        "(an operator's fallback; the answers are the same).",
    }),
    shutdownDelayMs: variable({
      name: "TESSERA_SHUTDOWN_DELAY", default: "0s", parse: duration("0s"),
      doc:
        "On SIGTERM/SIGINT, how long to go on serving, with `/readyz` 503 and health `NOT_SERVING`, before the drain " +
        "begins, so load balancers stop sending first. Behind one, longer than it takes to notice (Kubernetes: `10s`, " +
        "with `terminationGracePeriodSeconds` above this plus `TESSERA_SHUTDOWN_GRACE`); `0s` drains at once.",
    }),
    shutdownGraceMs: variable({
      name: "TESSERA_SHUTDOWN_GRACE", default: "10s", parse: duration("0s"),
      doc:
        "Once the drain begins (after `TESSERA_SHUTDOWN_DELAY`), how long calls in flight may take before they are " +
        "cancelled with `UNAVAILABLE`.",
    }),
  },
  /** The store: Redis (createRedisClient, RedisStore) or, with no URL, the embedded in-memory store. */
  store: {
    redisUrl: variable({
      name: "TESSERA_REDIS_URL", parse: redisUrl,
      doc:
        "`redis://` or `rediss://` URL (may carry a password and a database number). Unset: the embedded in-memory " +
        "store (one process; state is lost on restart, and the log says so). One of the three Redis modes: this, " +
        "`TESSERA_REDIS_CLUSTER_NODES` or `TESSERA_REDIS_SENTINELS`.",
    }),
    clusterNodes: variable({
      name: "TESSERA_REDIS_CLUSTER_NODES", parse: list("host:port", hostPort),
      doc:
        "Redis Cluster: comma-separated `host:port` seeds (any few of its nodes; the rest are discovered). Password " +
        "and TLS from `TESSERA_REDIS_PASSWORD` and `TESSERA_REDIS_TLS`. See [Running in production](../README.md#running-in-production).",
    }),
    sentinels: variable({
      name: "TESSERA_REDIS_SENTINELS", parse: list("host:port", hostPort),
      doc:
        "Redis behind Sentinel: comma-separated `host:port` of the sentinels, with `TESSERA_REDIS_SENTINEL_MASTER`. " +
        "A failover is followed by itself; calls fail `UNAVAILABLE` while it lasts.",
    }),
    sentinelMaster: variable({
      name: "TESSERA_REDIS_SENTINEL_MASTER", parse: text(256),
      doc: "The name the sentinels monitor the primary under (their `sentinel monitor <name> ...`).",
    }),
    username: variable({
      name: "TESSERA_REDIS_USERNAME", parse: text(256),
      doc: "ACL user of the Cluster's or the Sentinel-managed nodes (the URL mode carries its own in the URL).",
    }),
    password: variable({
      name: "TESSERA_REDIS_PASSWORD", parse: text(4096),
      doc: "Password of the Cluster's or the Sentinel-managed nodes (the URL mode carries its own in the URL).",
    }),
    sentinelPassword: variable({
      name: "TESSERA_REDIS_SENTINEL_PASSWORD", parse: text(4096),
      doc: "Password of the sentinels themselves, when they ask for one.",
    }),
    tls: variable({
      name: "TESSERA_REDIS_TLS", default: "false", parse: boolean,
      doc:
        "`true`: TLS to the Cluster's nodes, or to the sentinels and the nodes they name (the URL mode says it with " +
        "`rediss://`). Certificates are checked against the system's CAs, or `TESSERA_REDIS_TLS_CA`.",
    }),
    tlsCa: variable({
      name: "TESSERA_REDIS_TLS_CA", parse: path,
      doc: "PEM file of the CA(s) that sign the Redis servers' certificates, for `rediss://` or `TESSERA_REDIS_TLS=true`.",
    }),
    memoryMaxSessions: variable({
      name: "TESSERA_MEMORY_MAX_SESSIONS", default: "1000000", parse: integer(1, 100_000_000),
      doc:
        "The in-memory store (no Redis) holds at most this many sessions, live or revoked (a revoked one is kept " +
        "until its access tokens have expired). Beyond, Issue answers `RESOURCE_EXHAUSTED` until some end, rather " +
        "than the process running out of memory: under 1 KB each, so the default stays under 1 GB. Rate limits " +
        "(`TESSERA_RATE_*`) keep one caller or subject from filling it. Not used with Redis (bound it with `maxmemory`).",
    }),
    prefix: variable({
      name: "TESSERA_REDIS_PREFIX", default: "tessera:", parse: text(),
      doc: "Prefix of every Redis key, so several deployments can share one Redis.",
    }),
    commandTimeoutMs: variable({
      name: "TESSERA_STORE_TIMEOUT", default: "1s", parse: duration("10ms"),
      doc: "A Redis command that takes longer fails the call with `UNAVAILABLE`.",
    }),
    waitReplicas: variable({
      name: "TESSERA_REDIS_WAIT_REPLICAS", default: "0", parse: integer(0, 16),
      doc:
        "Replicas that must hold a revocation before it is acknowledged (Redis `WAIT`); fewer in time: `UNAVAILABLE`. " +
        "`0` does not wait.",
    }),
    waitTimeoutMs: variable({
      name: "TESSERA_REDIS_WAIT_TIMEOUT", default: "500ms", parse: duration("1ms"),
      doc: "How long to wait for them; must be shorter than `TESSERA_STORE_TIMEOUT` when waiting is on.",
    }),
  },
  /** Signing and verifying tokens: the TokenCodec's options, and the KeyRing's algorithm. */
  tokens: {
    issuer: variable({
      name: "TESSERA_ISSUER", default: "tessera", parse: text(256),
      doc: "`iss` of every token; tokens from another issuer are rejected. Use your service URL.",
    }),
    signingAlg: variable({
      name: "TESSERA_SIGNING_ALG", default: "ES256", parse: oneOf([...SIGNING_ALGORITHMS, ...MAC_ALGORITHMS]),
      doc:
        "`ES256`, `ES384`, `EdDSA` (Ed25519), `RS256` or `PS256`: the first process on an empty store creates the key. " +
        "`HS256` only with `TESSERA_HS256_SECRET` (then the JWKS publishes no key: sidecars and resource servers cannot " +
        "verify). Not used with `TESSERA_SIGNING_KEYS_FILE` (the file's keys say theirs).",
    }),
    clockSkewMs: variable({
      name: "TESSERA_CLOCK_SKEW", default: "5s", parse: duration("0s"),
      doc: "Leeway for `exp`, `nbf` and `iat` checks.",
    }),
    maxTokenLength: variable({
      name: "TESSERA_MAX_TOKEN_LENGTH", default: "8192", parse: integer(1024, 65_536),
      doc: "Longest token accepted in any request field, and the longest Issue and Refresh will sign (`INVALID_ARGUMENT` beyond).",
    }),
    refreshTokenMac: variable({
      name: "TESSERA_REFRESH_TOKEN_MAC", default: "true", parse: boolean,
      doc:
        "Refresh tokens, which only Tessera reads, carry an HMAC (`HS256`) under a secret each process derives from the " +
        "signing key (HKDF; never published nor stored) instead of the key's signature, which costs a refresh a " +
        "signature check and a signature. Both kinds are accepted either way. Set `false` while a rolling upgrade from " +
        "a version without this setting runs (those processes accept only signed ones), then unset.",
    }),
    verifiedCacheSize: variable({
      name: "TESSERA_VERIFY_CACHE_SIZE", default: "10000", parse: integer(0, 1_000_000),
      doc:
        "Tokens whose signature verified that are remembered, so a repeat skips the signature check (type, time " +
        "claims, audience and revocation are still checked on every call). `0` turns it off.",
    }),
  },
  /** The signing keys' lifecycle: the KeyRing's policy (with sessions.refreshTtlMaxMs for how long retired keys stay). */
  keys: {
    rotationPeriodMs: variable({
      name: "TESSERA_KEY_ROTATION_PERIOD", default: "30d", parse: duration("0s"),
      doc:
        "A new signing key every this long (published `TESSERA_KEY_PREPUBLISH` before it signs; of several processes on " +
        "one store exactly one rotates). `0s`: only on request (`KeyService.RotateKeys`).",
    }),
    prepublishMs: variable({
      name: "TESSERA_KEY_PREPUBLISH", default: "10m", parse: duration("0s"),
      doc:
        "How long a new key is in the JWKS before it signs, so every verifier that caches the JWKS has it first. At " +
        "least twice `TESSERA_JWKS_MAX_AGE`.",
    }),
    jwksMaxAgeMs: variable({
      name: "TESSERA_JWKS_MAX_AGE", default: "5m", parse: duration("1s"),
      doc: "How long verifiers may cache the JWKS: the `Cache-Control: max-age` of `/.well-known/jwks.json`.",
    }),
    encryptionKey: variable({
      name: "TESSERA_KEY_ENCRYPTION_KEY", parse: base64Bytes(32),
      doc:
        "Key-encryption key (KEK): private signing keys are kept in the store sealed with it (AES-256-GCM), so a dump " +
        "or a replica of the store holds no usable key. Keys stored in plain are sealed at start. Unset: plain JWKs " +
        "(with Redis, a warning at start). The same on every process. See [Signing keys](../README.md#signing-keys).",
    }),
    encryptionKeyFile: variable({
      name: "TESSERA_KEY_ENCRYPTION_KEY_FILE", parse: base64BytesFile(32),
      doc: "A file holding the KEK as base64 text, instead of `TESSERA_KEY_ENCRYPTION_KEY` (not both).",
    }),
    encryptionKeyPrevious: variable({
      name: "TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS", parse: base64Bytes(32), show: hidden,
      doc:
        "The KEK being replaced: it only opens keys, and at start every key sealed with it is sealed again with " +
        "`TESSERA_KEY_ENCRYPTION_KEY`. Set while rotating the KEK, on every process; then unset.",
    }),
    encryptionKeyPreviousFile: variable({
      name: "TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS_FILE", parse: base64BytesFile(32),
      doc: "A file holding the previous KEK as base64 text, instead of `TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS` (not both).",
    }),
    signingKeysFile: variable({
      name: "TESSERA_SIGNING_KEYS_FILE", parse: path,
      doc:
        "A JWKS of private keys (kid, alg, private members, optional `tessera_activate_at`) from a secret manager: the " +
        "keys sign and rotate as the file says, none is generated or stored; reloaded on SIGHUP. See " +
        "[Signing keys](../README.md#signing-keys).",
    }),
    hs256Secret: variable({
      name: "TESSERA_HS256_SECRET", parse: base64Bytes(32, 1024),
      doc:
        "The HMAC secret of `TESSERA_SIGNING_ALG=HS256`, the same on every process; never published nor stored. " +
        "Tokens signed with it can be verified only by Tessera (Introspect), not by a sidecar.",
    }),
    hs256SecretFile: variable({
      name: "TESSERA_HS256_SECRET_FILE", parse: base64BytesFile(32, 1024),
      doc: "A file holding the HS256 secret as base64 text, instead of `TESSERA_HS256_SECRET` (not both).",
    }),
  },
  /** What Issue and Refresh hand out: the Authority's options (with tokens.clockSkewMs and audit.riskWindowMs). */
  sessions: {
    defaultAudience: variable({
      name: "TESSERA_AUDIENCE", default: "tessera", parse: list("audience"),
      doc: "Comma-separated default `aud` for access tokens when Issue names none.",
    }),
    accessTtlMs: variable({
      name: "TESSERA_ACCESS_TTL", default: "15m", parse: duration("1s"),
      doc: "Access token lifetime when Issue does not ask for one.",
    }),
    accessTtlMaxMs: variable({
      name: "TESSERA_ACCESS_TTL_MAX", default: "1h", parse: duration("1s"),
      doc: "Longest `access_ttl` a caller may ask for; longer is `INVALID_ARGUMENT`.",
    }),
    refreshTtlMs: variable({
      name: "TESSERA_REFRESH_TTL", default: "7d", parse: duration("1s"),
      doc: "Session (refresh token) absolute lifetime when Issue does not ask for one.",
    }),
    refreshTtlMaxMs: variable({
      name: "TESSERA_REFRESH_TTL_MAX", default: "90d", parse: duration("1s"),
      doc: "Longest `refresh_ttl` (\"remember me\") a caller may ask for.",
    }),
    refreshIdleTtlMs: variable({
      name: "TESSERA_REFRESH_IDLE_TTL", default: "7d", parse: duration("1s"),
      doc: "A session not refreshed for this long ends.",
    }),
    refreshGraceMs: variable({
      name: "TESSERA_REFRESH_GRACE", default: "10s", parse: duration("0s"),
      doc: "How long a retry of the same refresh from the same client gets the same answer. `0s` disables.",
    }),
    maxSessions: variable({
      name: "TESSERA_MAX_SESSIONS", default: "20", parse: integer(1, 10_000),
      doc: "Sessions per subject; the least recently used one is revoked beyond it.",
    }),
  },
  /**
   * The key that seals Issue's sensitive claims into the tokens (src/config/claims-keys.ts, the Authority's
   * ClaimsCipher). Unset: Issue with sensitive claims is FAILED_PRECONDITION.
   */
  claims: {
    key: variable({
      name: "TESSERA_CLAIMS_KEY", parse: claimsKey,
      doc:
        "32 random bytes in base64 (`openssl rand -base64 32`): the key that encrypts `sensitive_claims` into the " +
        "tokens (AES-256-GCM, a JWE) and decrypts them for Introspect. The same on every process. Unset (and no " +
        "`TESSERA_CLAIMS_KEY_FILE`): Issue with `sensitive_claims` is `FAILED_PRECONDITION`. See [Sensitive claims](security.md#sensitive-claims).",
    }),
    keyFile: variable({
      name: "TESSERA_CLAIMS_KEY_FILE", parse: base64BytesFile(CLAIMS_KEY_BYTES),
      doc: "Path of a file holding `TESSERA_CLAIMS_KEY` (base64), read at start; instead of the variable, not with it.",
    }),
    previousKey: variable({
      name: "TESSERA_CLAIMS_KEY_PREVIOUS", parse: claimsKey,
      doc:
        "The claims key before the current one, during a rotation: decrypts only (tokens it sealed still read, and a " +
        "refresh seals their claims again under the current key). Needs a current key, and a different one.",
    }),
    previousKeyFile: variable({
      name: "TESSERA_CLAIMS_KEY_PREVIOUS_FILE", parse: base64BytesFile(CLAIMS_KEY_BYTES),
      doc: "Path of a file holding `TESSERA_CLAIMS_KEY_PREVIOUS` (base64), read at start; instead of the variable, not with it.",
    }),
  },
  /** Who may call what (callerAuth). loadConfig reads the callers file; unset: open mode. */
  access: {
    callers: variable({
      name: "TESSERA_CALLERS_FILE", parse: path,
      doc:
        "Path of the [callers file](security.md#who-may-call-what): who may call, and which RPCs. Unset: open mode, allowed only " +
        "on a loopback `TESSERA_LISTEN` unless `TESSERA_ALLOW_UNAUTHENTICATED=true`.",
    }),
    allowUnauthenticated: variable({
      name: "TESSERA_ALLOW_UNAUTHENTICATED", default: "false", parse: boolean,
      doc:
        "`true` lets Tessera run open (every caller unauthenticated, with every permission) on a non-loopback " +
        "address. Not allowed together with `TESSERA_CALLERS_FILE`.",
    }),
  },
  /** Rate limits and the refresh lockout: the Limits' options (src/api/rate-limit.ts). */
  limits: {
    caller: variable({
      name: "TESSERA_RATE_CALLER", default: "0", note: "off", parse: rate,
      doc:
        "Calls per caller and RPC, as `calls/window` (`1000/1s`, `50000/1m`; the window in whole seconds). `0`: no " +
        "limit. See [Rate limits](security.md#rate-limits).",
    }),
    subject: variable({
      name: "TESSERA_RATE_SUBJECT", default: "0", note: "off", parse: rate,
      doc: "Issue calls per subject, and Refresh calls per subject (counted apart), as `calls/window`. `0`: no limit.",
    }),
    ip: variable({
      name: "TESSERA_RATE_IP", default: "0", note: "off", parse: rate,
      doc: "Issue calls per client IP (`client.ip`; IPv6 per /64), as `calls/window`. `0`: no limit.",
    }),
    lockout: {
      after: variable({
        name: "TESSERA_REFRESH_LOCKOUT_AFTER", default: "20", parse: integer(0, 1_000_000),
        doc:
          "Failed refreshes of one session within `TESSERA_REFRESH_LOCKOUT_WINDOW` that lock the session out of " +
          "Refresh. `0`: no session lockout. See [Refresh lockout](security.md#refresh-lockout).",
      }),
      subjectAfter: variable({
        name: "TESSERA_REFRESH_LOCKOUT_SUBJECT_AFTER", default: "100", parse: integer(0, 1_000_000),
        doc:
          "Failed refreshes of one subject (all its sessions together) within the window that lock the subject out of " +
          "Refresh. `0`: no subject lockout.",
      }),
      windowMs: variable({
        name: "TESSERA_REFRESH_LOCKOUT_WINDOW", default: "15m", parse: seconds(),
        doc: "The window failed refreshes are counted in.",
      }),
      lockMs: variable({
        name: "TESSERA_REFRESH_LOCKOUT_TIME", default: "15m", parse: seconds(),
        doc: "How long a lockout lasts.",
      }),
    },
  },
  /** The audit trail and the risk score: the Audit's options. */
  audit: {
    maxEvents: variable({
      name: "TESSERA_AUDIT_MAX_EVENTS", default: "100000", parse: integer(100, 100_000_000),
      doc:
        "The stored [audit trail](security.md#security-audit) keeps about this many events (at least the newest this many; Redis " +
        "may keep up to ~100 more).",
    }),
    maxAgeMs: variable({
      name: "TESSERA_AUDIT_MAX_AGE", default: "30d", parse: duration("1m"),
      doc: "Stored audit events older than this are dropped. The log keeps every event regardless.",
    }),
    riskWindowMs: variable({
      name: "TESSERA_RISK_WINDOW", default: "15m", parse: duration("1s"),
      doc:
        "The window the [risk score](security.md#suspicious-activity-the-risk-score) counts a subject's signals in.",
    }),
    riskThreshold: variable({
      name: "TESSERA_RISK_THRESHOLD", default: "50", parse: integer(1, 100),
      doc:
        "A risk score (0 to 100) at or above this raises a `suspicious_activity` audit event, at most once per window " +
        "and subject.",
    }),
  },
  /** The logger's one setting. */
  logLevel: variable({
    name: "TESSERA_LOG_LEVEL", default: "info", parse: oneOf(LOG_LEVELS),
    doc: "`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`.",
  }),
};

/** What one variable cannot say alone; each check names the variable to change. */
function checkTogether(v: Values<typeof VARIABLES>): void {
  checkClaimsKeys(v.claims);
  const { sessions, store } = v;
  if (sessions.accessTtlMs > sessions.accessTtlMaxMs) throw new ConfigError("TESSERA_ACCESS_TTL", "exceeds TESSERA_ACCESS_TTL_MAX");
  if (sessions.refreshTtlMs > sessions.refreshTtlMaxMs) throw new ConfigError("TESSERA_REFRESH_TTL", "exceeds TESSERA_REFRESH_TTL_MAX");
  const { keys } = v;
  if (keys.prepublishMs < 2 * keys.jwksMaxAgeMs) {
    throw new ConfigError("TESSERA_KEY_PREPUBLISH", "must be at least twice TESSERA_JWKS_MAX_AGE (a verifier may hold the JWKS that long, twice over)");
  }
  if (keys.rotationPeriodMs > 0 && keys.rotationPeriodMs < keys.prepublishMs) {
    throw new ConfigError("TESSERA_KEY_ROTATION_PERIOD", "must be 0s or at least TESSERA_KEY_PREPUBLISH");
  }
  checkRedisMode(store);
  // WAIT blocks the connection: it must end before the store's command timeout cuts it off.
  if (store.waitReplicas > 0 && store.waitTimeoutMs >= store.commandTimeoutMs) {
    throw new ConfigError("TESSERA_REDIS_WAIT_TIMEOUT", "must be shorter than TESSERA_STORE_TIMEOUT");
  }
}

/** Exactly one Redis mode (or none: memory), and the settings that only make sense with the mode they belong to. */
function checkRedisMode(store: Values<typeof VARIABLES>["store"]): void {
  const modes = [
    store.redisUrl !== undefined && "TESSERA_REDIS_URL",
    store.clusterNodes !== undefined && "TESSERA_REDIS_CLUSTER_NODES",
    store.sentinels !== undefined && "TESSERA_REDIS_SENTINELS",
  ].filter((m): m is string => m !== false);
  if (modes.length > 1) throw new ConfigError(modes[1]!, `cannot be set together with ${modes[0]}: choose one Redis mode`);
  if ((store.sentinels === undefined) !== (store.sentinelMaster === undefined)) {
    const message = store.sentinels === undefined ? "is set without TESSERA_REDIS_SENTINELS" : "must name the primary when TESSERA_REDIS_SENTINELS is set";
    throw new ConfigError("TESSERA_REDIS_SENTINEL_MASTER", message);
  }
  if (store.sentinelPassword !== undefined && store.sentinels === undefined) {
    throw new ConfigError("TESSERA_REDIS_SENTINEL_PASSWORD", "is set without TESSERA_REDIS_SENTINELS");
  }
  const nodeSettings: [string, boolean][] = [
    ["TESSERA_REDIS_USERNAME", store.username !== undefined],
    ["TESSERA_REDIS_PASSWORD", store.password !== undefined],
    ["TESSERA_REDIS_TLS", store.tls],
  ];
  for (const [name, set] of nodeSettings) {
    if (!set) continue;
    if (modes.length === 0) throw new ConfigError(name, "is set, but no Redis is (TESSERA_REDIS_CLUSTER_NODES or TESSERA_REDIS_SENTINELS)");
    if (store.redisUrl !== undefined) throw new ConfigError(name, "is for the Cluster and Sentinel modes: with TESSERA_REDIS_URL, put it in the URL");
  }
  if (store.tlsCa !== undefined && modes.length === 0) throw new ConfigError("TESSERA_REDIS_TLS_CA", "is set, but no Redis is");
}

type Declared = Values<typeof VARIABLES>;
/** One object type rather than an intersection (for readable hovers and messages). */
type Flat<T> = { [K in keyof T]: T[K] } & {};

/**
 * The configuration, by consumer: VARIABLES' shape, with the TLS files and the callers file read (and its path kept,
 * for a reload on SIGHUP).
 */
export type Config = Flat<
  Omit<Declared, "server" | "access" | "keys"> & { readonly server: ServerConfig; readonly access: AccessConfig; readonly keys: KeysConfig }
>;
/** The lifecycle's durations, and the key material: KEKs, the keys file (read), the HS256 secret. */
export type KeysConfig = Flat<Omit<Declared["keys"], keyof KeyMaterial | keyof DeclaredKeyMaterial> & KeyMaterial>;
export type AccessConfig = Readonly<CallerAccess> & {
  /** TESSERA_CALLERS_FILE: the path the callers were read from; undefined in open mode. */
  readonly file: string | undefined;
};
export type ServerConfig = Flat<Omit<Declared["server"], "tls"> & { readonly tls: TlsConfig | undefined }>;
export type StoreConfig = Config["store"];
/** `after` failures of one session (`subjectAfter` of one subject) within `windowMs` lock it for `lockMs`; 0 is off. */
export type RefreshLockout = Config["limits"]["lockout"];

export type VariableName = NameOf<typeof VARIABLES>;

/** Each variable's default as written (undefined: unset is allowed). */
export const DEFAULTS = Object.freeze(
  Object.fromEntries(variablesOf(VARIABLES).map((v) => [v.name, v.default])) as Record<VariableName, string | undefined>,
);

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const declared = readAll(VARIABLES, env);
  checkTogether(declared);
  const { server, access } = declared;
  const tls = loadTls(server.tls);
  const { encryptionKey: _k, encryptionKeyFile: _f, encryptionKeyPrevious: _p, encryptionKeyPreviousFile: _pf, hs256SecretFile: _hf, ...keys } = declared.keys;
  return deepFreeze({
    ...declared,
    keys: { ...keys, ...loadKeyMaterial(declared.keys, declared.tokens.signingAlg) },
    server: { ...server, tls },
    access: { ...loadAccess({ ...access, listen: server.listen, clientCa: tls?.clientCa !== undefined }), file: access.callers },
  });
}

/** Freezes plain objects and arrays all the way down (the PEM buffers stay as they are: typed arrays cannot be frozen). */
function deepFreeze<T>(value: T): T {
  if (Array.isArray(value) || (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === Object.prototype)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
