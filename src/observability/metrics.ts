/** Prometheus metrics (prom-client), one registry per app so several apps in one process (tests) do not collide. */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from "prom-client";
import { StoreUnavailableError } from "../domain/errors.js";

/**
 * A gauge whose value is read when scraped, from a function given later (the part that holds the value is made after
 * the metrics): returns the setter of that function; 0 until it is set.
 */
function scrapedGauge(registry: Registry, name: string, help: string): (read: () => number) => void {
  let read = (): number => 0;
  const gauge: Gauge = new Gauge({ name, help, registers: [registry], collect: (): void => gauge.set(read()) });
  return (r) => {
    read = r;
  };
}

export class Metrics {
  readonly registry = new Registry();
  readonly rpcTotal = new HotCounter({
    name: "tessera_rpc_total",
    help: "RPCs handled, by service, method and gRPC code.",
    labelNames: ["service", "method", "code"] as const,
    registers: [this.registry],
  });
  readonly rpcDuration = new HotHistogram({
    name: "tessera_rpc_duration_seconds",
    help: "RPC latency, by service, method and gRPC code.",
    labelNames: ["service", "method", "code"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly introspections = new HotCounter({
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
  readonly auditEvents = new HotCounter({
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
  readonly storeDuration = new HotHistogram({
    name: "tessera_store_duration_seconds",
    help: "Store operation latency, by operation.",
    labelNames: ["op"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
    registers: [this.registry],
  });

  /** Where tessera_pending_request_bytes is read when scraped (the port's PendingBytes, src/server/dispatch.ts). */
  readonly pendingRequestBytes = scrapedGauge(
    this.registry,
    "tessera_pending_request_bytes",
    "Bytes held in unary request bodies not yet complete (bounded by TESSERA_MAX_PENDING_BYTES).",
  );
  /** Where tessera_feed_backlog_entries is read when scraped (the Redis store's feed; none on the memory store). */
  readonly feedBacklog = scrapedGauge(
    this.registry,
    "tessera_feed_backlog_entries",
    "Revocation feed entries whose append to Redis failed, waiting for this process to append them again.",
  );
  readonly feedBacklogDropped = new Counter({
    name: "tessera_feed_backlog_dropped_total",
    help: "Revocation feed entries dropped from a full backlog: never appended by this process.",
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: "tessera_" });
  }

  /** Counts one Introspect answer: "active" or the inactive reason (a handful of values). */
  readonly countIntrospection = (result: string): void => this.introspections.labels({ result }).inc();

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * A labelled counter or histogram on a busy path (every call, every Introspect answer, every audit event), shown by
 * prom-client's registry like its own. prom-client checks and hashes the label values on every observation, even
 * through a series bound with `labels()` (measured: 1.8 µs for a histogram's observe and a counter's inc, 0.3-0.6 µs
 * for a labelled counter's inc; prom-client was 3.8 % of Introspect's busy main thread in a CPU profile); a series
 * here is bound once and an observation is a few additions. test/unit/metrics.test.ts holds the exposition
 * to prom-client's, line for line. Unlike prom-client's, `reset` zeroes the series and keeps them: callers keep the
 * series they bound, and what they observe later must still show.
 */
interface HotConfig<L extends string> {
  name: string;
  help: string;
  labelNames: readonly L[];
  registers: Registry[];
}

/** What prom-client's registry reads of a value (`sharedLabels`: the series' labels, in the exposition's order). */
interface Exposed {
  value: number;
  labels: Record<string, string | number>;
  sharedLabels?: Record<string, string>;
  metricName?: string;
}

abstract class HotMetric<L extends string, S extends { labels: Record<string, string> }> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = "sum";
  abstract readonly type: "counter" | "histogram";
  private readonly series = new Map<string, S>();
  private readonly labelNames: readonly L[];

  constructor(config: HotConfig<L>) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames;
    for (const registry of config.registers) registry.registerMetric(this as unknown as Metric);
  }

  /**
   * The series of these label values, made on first use. With one label its value is the key, so a lookup on a busy
   * path costs a Map read (Introspect's answers); with more, the values are joined first, and such callers keep the
   * series they use (the pipeline, the store's wrapper).
   */
  labels(values: Record<L, string>): S {
    const names = this.labelNames;
    const key = names.length === 1 ? values[names[0]!] : names.map((name) => values[name]).join("\u0000");
    let series = this.series.get(key);
    if (series === undefined) {
      const labels: Record<string, string> = {};
      for (const name of this.labelNames) labels[name] = values[name];
      this.series.set(key, (series = this.newSeries(labels)));
    }
    return series;
  }

  protected abstract newSeries(labels: Record<string, string>): S;
  protected abstract expose(series: S): Exposed[];

  /** The exposition's values: prom-client's registry prefers this to get(). */
  getForPromString() {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...this.series.values()].flatMap((s) => this.expose(s)) };
  }

  /** Every value with its labels in one object, as prom-client's get() gives them. */
  get() {
    const data = this.getForPromString();
    return { ...data, values: data.values.map(({ value, labels, sharedLabels, metricName }) => ({ value, metricName, labels: { ...labels, ...sharedLabels } })) };
  }

  reset(): void {
    for (const s of this.series.values()) this.zero(s);
  }

  protected abstract zero(series: S): void;
}

class CounterSeries {
  value = 0;
  constructor(readonly labels: Record<string, string>) {}
  inc(): void {
    this.value++;
  }
}

export class HotCounter<L extends string> extends HotMetric<L, CounterSeries> {
  readonly type = "counter";
  protected newSeries(labels: Record<string, string>): CounterSeries {
    return new CounterSeries(labels);
  }
  protected expose(s: CounterSeries): Exposed[] {
    return [{ value: s.value, labels: s.labels }];
  }
  protected zero(s: CounterSeries): void {
    s.value = 0;
  }
}

class HistogramSeries {
  /** Observations per bucket, not cumulative; the last slot takes those above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class HotHistogram<L extends string> extends HotMetric<L, HistogramSeries> {
  readonly type = "histogram";
  private readonly bounds: readonly number[];
  constructor(config: HotConfig<L> & { buckets: readonly number[] }) {
    super(config);
    this.bounds = [...config.buckets].sort((a, b) => a - b);
  }
  protected newSeries(labels: Record<string, string>): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
  protected expose(s: HistogramSeries): Exposed[] {
    const bucket = `${this.name}_bucket`;
    let below = 0;
    const out: Exposed[] = this.bounds.map((le, i) => ({ value: (below += s.counts[i]!), labels: { le }, sharedLabels: s.labels, metricName: bucket }));
    out.push(
      { value: s.count, labels: { le: "+Inf" }, sharedLabels: s.labels, metricName: bucket },
      { value: s.sum, labels: {}, sharedLabels: s.labels, metricName: `${this.name}_sum` },
      { value: s.count, labels: {}, sharedLabels: s.labels, metricName: `${this.name}_count` },
    );
    return out;
  }
  protected zero(s: HistogramSeries): void {
    s.counts.fill(0);
    s.sum = 0;
    s.count = 0;
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
