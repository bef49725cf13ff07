/**
 * `createTesseraClient`: typed clients of every Tessera service over one connection, with what every caller otherwise
 * writes by hand: the API key (`authorization: Bearer`), a default deadline on every unary call, and retries with
 * exponential backoff and full jitter of the calls that are safe to repeat.
 *
 * Which calls are retried, and when: only unary calls whose method is declared `idempotency_level = NO_SIDE_EFFECTS`
 * in the protos (Introspect, ListSessions, GetSession, GetJwks, ListKeys, ListAuditEvents), and only when they fail
 * UNAVAILABLE (the server or the store could not be reached: nothing happened, or nothing that repeating changes).
 * Never Issue, Refresh, RotateKeys or RevokeKey (each repeat would do it again: a second session, a rotated-out refresh
 * token presented, another key), and not Revoke either, although revoking twice is harmless: its answer reports what
 * *this* call changed (`sessions_revoked`, `token_revoked`), which a transparent retry after a lost response would turn
 * into 0 and false, and a revocation is a security action whose failure the caller should see and decide about (retry,
 * alert, fail the logout). A caller who wants Revoke retried anyway says so per call with the `retryUnavailable`
 * context key. Streams (WatchRevocations) are never retried here: a follower resumes from its cursor itself.
 *
 * The deadline (`timeoutMs`, default 5 s; a call's own `timeoutMs` wins) covers the whole call, retries and waits
 * included; each retry carries the time left in its `grpc-timeout` (or `connect-timeout-ms`), so the server never
 * works on past the caller's deadline. The revocation feed's stream has no default deadline.
 */
import http from "node:http";
import https from "node:https";
import { Code, ConnectError, createClient, createContextKey, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { DescMethod } from "@bufbuild/protobuf";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { sleep } from "../domain/clock.js";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { RevocationService } from "../../gen/tessera/v1/revocation_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";

/** Backoff of retried calls: at most `attempts` tries in all (1: no retry), waits of full jitter up to `maxMs`. */
export interface RetryOptions {
  /** Tries in all, the first included (1 turns retrying off). */
  attempts: number;
  /** The ceiling of the first wait; it doubles with each retry. */
  baseMs: number;
  /** The ceiling's ceiling. */
  maxMs: number;
}

export interface TesseraClientOptions {
  /** `http://host:port` (HTTP/2 without TLS) or `https://host:port`. */
  baseUrl: string;
  /** Sent as `authorization: Bearer <apiKey>` on every call. Unset: none (an open server, or mTLS). */
  apiKey?: string | undefined;
  /** For an `https://` baseUrl: CA bundle to trust, and a client certificate and key for mTLS (PEM). */
  tls?: { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer } | undefined;
  /** Wire protocol: gRPC (default) or Connect. */
  protocol?: "grpc" | "connect" | undefined;
  /** Connect protocol only: HTTP/2 (default) or HTTP/1.1. gRPC is always HTTP/2. */
  httpVersion?: "1.1" | "2" | undefined;
  /** Default deadline of every unary call (ms); a call's own `timeoutMs` wins; 0: none. Default 5000. */
  timeoutMs?: number | undefined;
  /** Retries of safe calls on UNAVAILABLE. Default `{ attempts: 3, baseMs: 50, maxMs: 1000 }`. */
  retry?: Partial<RetryOptions> | undefined;
  /** More interceptors, run inside the retry loop (once per try), after the credentials are set. */
  interceptors?: Interceptor[] | undefined;
  /** Randomness for the jitter (tests). */
  random?: (() => number) | undefined;
}

export interface TesseraClient {
  readonly tokens: Client<typeof TokenService>;
  readonly sessions: Client<typeof SessionService>;
  readonly keys: Client<typeof KeyService>;
  readonly audit: Client<typeof AuditService>;
  /** The revocation feed (a server stream): no default deadline, never retried. */
  readonly revocations: Client<typeof RevocationService>;
  /** The transport of the unary clients, for createClient of anything else served there (health, for one). */
  readonly transport: Transport;
  /** Closes the connection (calls in flight fail). */
  close(): void;
}

export const DEFAULT_TIMEOUT_MS = 5_000;
export const DEFAULT_RETRY: Readonly<RetryOptions> = Object.freeze({ attempts: 3, baseMs: 50, maxMs: 1_000 });

/**
 * Per-call opt-in: `{ contextValues: createContextValues().set(retryUnavailable, true) }` retries that call on
 * UNAVAILABLE like a read, whatever its method (Revoke, for one). `false` turns retrying off for that call.
 */
export const retryUnavailable = createContextKey<boolean | undefined>(undefined, { description: "tessera: retry on UNAVAILABLE" });

/** Methods never retried on their own, whatever their declared idempotency. */
const NEVER_RETRIED = new Set([
  "tessera.v1.TokenService.Issue",
  "tessera.v1.TokenService.Refresh",
  "tessera.v1.TokenService.Revoke",
  "tessera.v1.KeyService.RotateKeys",
  "tessera.v1.KeyService.RevokeKey",
]);

/** Whether a unary method is retried on UNAVAILABLE by default: declared NO_SIDE_EFFECTS and not in NEVER_RETRIED. */
export function isSafeToRetry(method: DescMethod): boolean {
  if (method.methodKind !== "unary") return false;
  if (NEVER_RETRIED.has(`${method.parent.typeName}.${method.name}`)) return false;
  return method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
}

/** The n-th retry's wait (n from 0): full jitter, uniformly in [0, min(maxMs, baseMs * 2^n)). */
export function backoffDelay(n: number, opts: Pick<RetryOptions, "baseMs" | "maxMs">, random: () => number = Math.random): number {
  const ceiling = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(n, 30));
  return Math.floor(random() * ceiling);
}

/** Typed clients of every Tessera service over one HTTP/2 connection (or HTTP/1.1 keep-alive for Connect over 1.1). */
export function createTesseraClient(opts: TesseraClientOptions): TesseraClient {
  const url = new URL(opts.baseUrl);
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new TypeError(`baseUrl must be http:// or https://, not ${url.protocol}`);
  if (opts.tls !== undefined && url.protocol !== "https:") throw new TypeError("tls options need an https:// baseUrl");
  const tls = url.protocol === "https:" ? (opts.tls ?? {}) : {};
  const protocol = opts.protocol ?? "grpc";
  const httpVersion = protocol === "grpc" ? "2" : (opts.httpVersion ?? "2");
  const retry = { ...DEFAULT_RETRY, ...opts.retry };
  if (!(retry.attempts >= 1) || !(retry.baseMs >= 0) || !(retry.maxMs >= 0)) throw new TypeError("retry: attempts >= 1, baseMs and maxMs >= 0");
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const interceptors = [retrying(retry, opts.random ?? Math.random), credentials(opts.apiKey), ...(opts.interceptors ?? [])];

  const sessionManager = httpVersion === "2" ? new Http2SessionManager(url, { pingIntervalMs: 30_000, idleConnectionTimeoutMs: 60_000 }, tls) : undefined;
  const agent = httpVersion === "2" ? undefined : url.protocol === "https:" ? new https.Agent({ keepAlive: true, ...tls }) : new http.Agent({ keepAlive: true });
  const make = (defaultTimeoutMs: number | undefined): Transport => {
    const common = { baseUrl: url.href.replace(/\/$/, ""), interceptors, ...(defaultTimeoutMs ? { defaultTimeoutMs } : {}) };
    if (protocol === "grpc") return createGrpcTransport({ ...common, sessionManager: sessionManager! });
    if (sessionManager) return createConnectTransport({ ...common, httpVersion: "2", sessionManager });
    return createConnectTransport({ ...common, httpVersion: "1.1", nodeOptions: { agent, ...tls } });
  };
  const transport = make(timeoutMs > 0 ? timeoutMs : undefined);
  const streams = make(undefined);
  return {
    tokens: createClient(TokenService, transport),
    sessions: createClient(SessionService, transport),
    keys: createClient(KeyService, transport),
    audit: createClient(AuditService, transport),
    revocations: createClient(RevocationService, streams),
    transport,
    close() {
      sessionManager?.abort();
      agent?.destroy();
    },
  };
}

function credentials(apiKey: string | undefined): Interceptor {
  return (next) => (req) => {
    if (apiKey !== undefined && !req.header.has("authorization")) req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
}

/** Retries safe unary calls on UNAVAILABLE within the call's deadline (see the file's header). */
function retrying(retry: RetryOptions, random: () => number): Interceptor {
  return (next) => async (req) => {
    if (req.stream) return next(req);
    const optIn = req.contextValues.get(retryUnavailable);
    if (!(optIn ?? isSafeToRetry(req.method)) || retry.attempts <= 1) return next(req);
    const started = performance.now();
    const budget = deadlineHeader(req.header);
    for (let n = 0; ; n++) {
      try {
        return await next(req);
      } catch (e) {
        const err = ConnectError.from(e);
        if (err.code !== Code.Unavailable || n + 1 >= retry.attempts || req.signal.aborted) throw err;
        await sleep(backoffDelay(n, retry, random), req.signal);
        if (req.signal.aborted) throw ConnectError.from(req.signal.reason ?? err);
        if (budget) {
          const left = Math.floor(budget.ms - (performance.now() - started));
          if (left <= 0) throw new ConnectError("the call's deadline passed while waiting to retry", Code.DeadlineExceeded);
          req.header.set(budget.name, budget.name === "grpc-timeout" ? `${left}m` : String(left));
        }
      }
    }
  };
}

const GRPC_TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

/** The call's deadline as its request headers carry it (gRPC or Connect), in ms. */
function deadlineHeader(header: Headers): { name: string; ms: number } | undefined {
  const grpc = header.get("grpc-timeout");
  if (grpc !== null) {
    const m = /^(\d{1,8})([HMSmun])$/.exec(grpc);
    if (m) return { name: "grpc-timeout", ms: Number(m[1]) * GRPC_TIMEOUT_UNITS[m[2]!]! };
  }
  const connect = header.get("connect-timeout-ms");
  if (connect !== null && /^\d{1,10}$/.test(connect)) return { name: "connect-timeout-ms", ms: Number(connect) };
  return undefined;
}
