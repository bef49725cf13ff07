/**
 * The one call pipeline. Every RPC passes through it, whichever path brought it: the lean unary gRPC path
 * (src/server/grpc-unary.ts) builds a `Call` from its HTTP/2 stream, and connect-node's calls come through
 * `connectInterceptor` below. Outermost first:
 *
 *   request id -> caller authentication and permission -> in-flight tracking (refused once shutdown began)
 *   -> per-caller rate limit -> the handler, raced against the call's end (the caller's deadline, the server's
 *   TESSERA_MAX_TIMEOUT, the caller going away, shutdown) -> metrics and one log line, whatever the outcome.
 *
 * Errors leave it as ConnectErrors (src/api/errors.ts maps domain errors to codes and details), so both paths write
 * the same status. The pipeline knows nothing of either path's request objects: only of `Call`.
 */
import { randomUUID } from "node:crypto";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { callerKey, requestIdKey, type Caller } from "./context.js";
import { toConnectError } from "./errors.js";

/** The part of an AbortSignal the pipeline uses; the lean path passes a lighter object of its own. */
export interface CallSignal {
  readonly aborted: boolean;
  readonly reason: unknown;
  addEventListener(type: "abort", listener: () => void): void;
  removeEventListener(type: "abort", listener: () => void): void;
}

/** One call as the pipeline sees it. */
export interface Call {
  /** The generated method descriptor; `method.parent` is its service. */
  readonly method: DescMethod;
  /** Request headers (lower-case names). */
  readonly header: { get(name: string): string | null };
  /** Per-call values: the transport puts the peer identity in; the pipeline adds the caller and request id. */
  readonly values: ContextValues;
  /** The request message of a unary call (for the audit context of a refusal); undefined for streams. */
  readonly message: unknown;
  /** Fires when the caller goes away (or, on connect-node, its deadline passes). */
  readonly signal: CallSignal;
  /** The caller's deadline in ms, when the transport leaves enforcing it to the pipeline. */
  readonly timeoutMs?: number | undefined;
}

/** Who is calling, and whether they may: sets and returns the caller (undefined for open services), or throws. */
export type Authorize = (call: Call) => Caller | undefined;
/** Takes the caller's budget for this method, or throws RESOURCE_EXHAUSTED (or UNAVAILABLE). */
export type AdmitCaller = (caller: Caller, call: Call) => Promise<void>;

export interface PipelineDeps {
  logger: Logger;
  /** Caller authentication and authorization (src/api/auth.ts); absent only in tests of other layers. */
  authorize?: Authorize | undefined;
  /** The per-caller rate limit (src/api/rate-limit.ts); absent: none. */
  admitCaller?: AdmitCaller | undefined;
  metrics?: Metrics | undefined;
  /** Longest a call may run, whatever deadline its caller asked for (TESSERA_MAX_TIMEOUT). */
  maxTimeoutMs?: number | undefined;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const HEALTH = "grpc.health.v1.Health";
/** setTimeout takes at most 2^31-1 ms; a longer delay would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class Pipeline {
  private readonly logger: Logger;
  private readonly authorize: Authorize | undefined;
  private readonly admitCaller: AdmitCaller | undefined;
  private readonly metrics: Metrics | undefined;
  private readonly maxTimeoutMs: number;
  /** Calls in flight, each with the function that ends it early (shutdown). */
  private readonly running = new InFlight();
  private closing = false;
  /** Both metric series of each service/method/code, bound together once (labels() joins three values per lookup). */
  private readonly series = new Map<string, (seconds: number) => void>();
  private idleWaiters: Array<() => void> = [];

  constructor(deps: PipelineDeps) {
    this.logger = deps.logger;
    this.authorize = deps.authorize;
    this.admitCaller = deps.admitCaller;
    this.metrics = deps.metrics;
    this.maxTimeoutMs = Math.min(deps.maxTimeoutMs ?? MAX_TIMER_MS, MAX_TIMER_MS);
  }

  /** Runs `handler` for `call` through every step; resolves with its answer or rejects with a ConnectError. */
  async run<T>(call: Call, handler: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const given = call.header.get("x-request-id");
    const requestId = given !== null && REQUEST_ID.test(given) ? given : randomUUID();
    call.values.set(requestIdKey, requestId);
    try {
      const caller = this.authorize?.(call); // sets the caller in call.values
      if (this.closing) throw new ConnectError("server is shutting down", Code.Unavailable);
      const res = await this.untilEnd(call, async () => {
        if (caller !== undefined && this.admitCaller !== undefined) await this.admitCaller(caller, call);
        return handler();
      });
      this.done(call, started, requestId, "OK", undefined);
      return res;
    } catch (e) {
      const err = toConnectError(e);
      this.done(call, started, requestId, Code[err.code] ?? "Unknown", err);
      throw err;
    }
  }

  /**
   * The handler's outcome, or the call's end if that comes first: the signal (the caller went away), the deadline
   * (the caller's, capped at TESSERA_MAX_TIMEOUT) or shutdown. The store's own timeout bounds what still runs below.
   */
  private untilEnd<T>(call: Call, handler: () => Promise<T>): Promise<T> {
    const { signal } = call;
    if (signal.aborted) return Promise.reject(ConnectError.from(signal.reason, Code.Canceled));
    const callerBound = call.timeoutMs !== undefined && call.timeoutMs < this.maxTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const end = (err: unknown, value?: T) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        this.running.delete(entry);
        if (this.running.size === 0) for (const w of this.idleWaiters.splice(0)) w();
        if (err === undefined) resolve(value as T);
        else reject(err);
      };
      const onAbort = () => end(ConnectError.from(signal.reason, Code.Canceled));
      const timer = setTimeout(
        () =>
          end(
            callerBound
              ? new ConnectError("the operation timed out", Code.DeadlineExceeded)
              : new ConnectError(`server time limit of ${this.maxTimeoutMs}ms exceeded`, Code.DeadlineExceeded),
          ),
        callerBound ? call.timeoutMs : this.maxTimeoutMs,
      );
      signal.addEventListener("abort", onAbort);
      const entry = this.running.add(end);
      handler().then(
        (value) => end(undefined, value),
        (e: unknown) => end(e ?? new Error("handler rejected without a reason")), // run() maps it to a code
      );
    });
  }

  /** Metrics and the one log line of a finished call. */
  private done(call: Call, started: number, requestId: string, code: string, err: ConnectError | undefined): void {
    const service = call.method.parent.typeName;
    const method = call.method.name;
    const ms = performance.now() - started;
    if (this.metrics !== undefined) this.seriesOf(this.metrics, service, method, code)(ms / 1000);
    const level = logLevel(service, err);
    // Build the line only if it is written (at TESSERA_LOG_LEVEL=warn, the busy path builds nothing).
    if (!this.logger.isLevelEnabled(level)) return;
    const line = {
      rpc: { service, method },
      requestId,
      caller: call.values.get(callerKey)?.name,
      code: err === undefined ? "ok" : code,
      ms: Math.round(ms * 1000) / 1000,
      ...(err === undefined ? {} : { err: err.cause ?? err }),
    };
    this.logger[level](line, err === undefined ? "rpc" : "rpc failed");
  }

  /** Records one call's duration and count. The keys are bounded: known methods times gRPC codes. */
  private seriesOf(metrics: Metrics, service: string, method: string, code: string): (seconds: number) => void {
    const key = `${service}/${method}/${code}`;
    let record = this.series.get(key);
    if (record === undefined) {
      const labels = { service, method, code };
      const duration = metrics.rpcDuration.labels(labels);
      const total = metrics.rpcTotal.labels(labels);
      record = (seconds) => {
        duration.observe(seconds);
        total.inc();
      };
      this.series.set(key, record);
    }
    return record;
  }

  /** Calls in flight. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Refuse new calls from now on (UNAVAILABLE). */
  close(): void {
    this.closing = true;
  }

  /** Resolves when no call is in flight. */
  idle(): Promise<void> {
    return this.running.size === 0 ? Promise.resolve() : new Promise((r) => this.idleWaiters.push(r));
  }

  /** Ends every call in flight now with `err` (their handlers' later outcomes are dropped). */
  cancelAll(err: ConnectError): void {
    for (const end of this.running.ends()) end(err);
  }
}

/** One call in `InFlight`: how to end it, and its neighbours. */
export interface Entry {
  end: ((err: unknown) => void) | undefined;
  prev: Entry | undefined;
  next: Entry | undefined;
}

/**
 * The calls in flight, as a doubly linked list whose removed entries keep no links. Not a Set: with one add and one
 * delete per call, a Set's hash tables (each rehash leaves the old table linked to the new one, holding the entries
 * it had) kept the objects of calls alive through two young-generation collections, so they were promoted to the old
 * generation and cost a mark-compact each (measured at 5 000 Introspect/s on Redis: 4.1-4.2 KB a call promoted with
 * the Set, 2.3-2.4 KB with this list; mark-compacts, with their 15-30 ms pauses, a third fewer). A removed entry drops
 * its links and its function, so nothing it held outlives the call.
 */
export class InFlight {
  private readonly head: Entry = { end: undefined, prev: undefined, next: undefined };
  size = 0;

  add(end: (err: unknown) => void): Entry {
    const entry: Entry = { end, prev: this.head, next: this.head.next };
    if (entry.next !== undefined) entry.next.prev = entry;
    this.head.next = entry;
    this.size++;
    return entry;
  }

  delete(entry: Entry): void {
    if (entry.prev === undefined) return; // removed already
    entry.prev.next = entry.next;
    if (entry.next !== undefined) entry.next.prev = entry.prev;
    entry.prev = entry.next = entry.end = undefined;
    this.size--;
  }

  /** The end functions of the calls in flight now. */
  ends(): Array<(err: unknown) => void> {
    const out: Array<(err: unknown) => void> = [];
    for (let e = this.head.next; e !== undefined; e = e.next) out.push(e.end!);
    return out;
  }
}

/** A call's log level: errors by how much they need a reader; health probes (every few seconds) out of `info`. */
function logLevel(service: string, err: ConnectError | undefined): "error" | "warn" | "info" | "debug" {
  if (err === undefined) return service === HEALTH ? "debug" : "info";
  if (err.code === Code.Internal) return "error";
  return err.code === Code.Unavailable ? "warn" : "info";
}

/** Runs connect-node's calls (Connect protocol, gRPC-Web, streams) through the pipeline: its one interceptor. */
export function connectInterceptor(pipeline: Pipeline): Interceptor {
  return (next) => (req) =>
    pipeline.run(
      { method: req.method, header: req.header, values: req.contextValues, message: req.stream ? undefined : req.message, signal: req.signal },
      () => next(req),
    );
}

/** The interceptors of a connect router running `deps`' pipeline (tests of the API layer). */
export function interceptorsFor(deps: PipelineDeps): Interceptor[] {
  return [connectInterceptor(new Pipeline(deps))];
}
