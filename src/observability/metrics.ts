/** Prometheus metrics (prom-client), one registry per app so several apps in one process (tests) do not collide. */
import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import { StoreUnavailableError } from "../domain/errors.js";

export class Metrics {
  readonly registry = new Registry();
  readonly rpcTotal = new Counter({
    name: "tessera_rpc_total",
    help: "RPCs handled, by service, method and gRPC code.",
    labelNames: ["service", "method", "code"] as const,
    registers: [this.registry],
  });
  readonly rpcDuration = new Histogram({
    name: "tessera_rpc_duration_seconds",
    help: "RPC latency, by service, method and gRPC code.",
    labelNames: ["service", "method", "code"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly introspections = new Counter({
    name: "tessera_introspect_total",
    help: "Introspect answers by result: active, or the inactive reason.",
    labelNames: ["result"] as const,
    registers: [this.registry],
  });
  readonly refreshReuse = new Counter({
    name: "tessera_refresh_reuse_total",
    help: "Refresh-token reuse detections (each revoked a session).",
    registers: [this.registry],
  });
  readonly sessionsEvicted = new Counter({
    name: "tessera_sessions_evicted_total",
    help: "Sessions revoked to keep a subject within TESSERA_MAX_SESSIONS.",
    registers: [this.registry],
  });
  readonly auditEvents = new Counter({
    name: "tessera_audit_events_total",
    help: "Security audit events recorded, by type and severity (each also written to the log).",
    labelNames: ["type", "severity"] as const,
    registers: [this.registry],
  });
  readonly auditDropped = new Counter({
    name: "tessera_audit_dropped_total",
    help: "Audit events not stored because the in-process audit buffer was full (they are still in the log).",
    registers: [this.registry],
  });
  readonly storeErrors = new Counter({
    name: "tessera_store_errors_total",
    help: "Store operations that failed because the store was unreachable or too slow, by operation.",
    labelNames: ["op"] as const,
    registers: [this.registry],
  });
  readonly storeDuration = new Histogram({
    name: "tessera_store_duration_seconds",
    help: "Store operation latency, by operation.",
    labelNames: ["op"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });

  /** introspections' series by result, looked up once (prom-client hashes a label object on every inc). */
  private readonly introspectionSeries = new Map<string, { inc(): void }>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "tessera_" });
  }

  /** Counts one Introspect answer: "active" or the inactive reason (a handful of values). */
  readonly countIntrospection = (result: string): void => {
    let series = this.introspectionSeries.get(result);
    if (series === undefined) this.introspectionSeries.set(result, (series = this.introspections.labels({ result })));
    series.inc();
  };

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * The store (or any part of it: the whole Store, a KeyStore, a SessionStore...), with every operation timed and every
 * unavailability counted under its method name. Same behaviour and type otherwise; `close` and `subscribe` are passed
 * through (subscribe is synchronous and returns a function, not a promise).
 */
const UNTIMED = new Set(["close", "subscribe"]);

export function instrumentStore<S extends object>(store: S, metrics: Metrics): S {
  // One wrapper per method, made on first use and keyed by the function itself (a method replaced later, as test
  // doubles do, gets a wrapper of its own), not a new closure and label lookup on every call.
  type Op = (...args: unknown[]) => Promise<unknown>;
  const wrapped = new WeakMap<Op, Op>();
  const wrap = (op: string, fn: Op): Op => {
    const duration = metrics.storeDuration.labels({ op });
    const errors = metrics.storeErrors.labels({ op });
    return (...args) => {
      const started = performance.now();
      const observe = () => duration.observe((performance.now() - started) / 1000);
      return fn.apply(store, args).then(
        (value) => {
          observe();
          return value;
        },
        (err: unknown) => {
          observe();
          if (err instanceof StoreUnavailableError) errors.inc();
          throw err;
        },
      );
    };
  };
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function" || typeof prop !== "string" || UNTIMED.has(prop)) return value;
      let fn = wrapped.get(value as Op);
      if (fn === undefined) wrapped.set(value as Op, (fn = wrap(prop, value as Op)));
      return fn;
    },
  });
}
