/**
 * The busy path's own counter and histogram (src/observability/metrics.ts HotCounter, HotHistogram) against
 * prom-client's Counter and Histogram: fed the same observations, their registries must expose the same text, line
 * for line, and get() the same values with the same labels (what GET /metrics and the tests' counters read).
 */
import { Counter, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/domain/audit.js";
import { auditSinks } from "../../src/observability/audit-log.js";
import { createLogger } from "../../src/observability/logger.js";
import { HotCounter, HotHistogram, Metrics } from "../../src/observability/metrics.js";

const BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.1, 1];
const LABELS = ["service", "method", "code"] as const;
const A = { service: "tessera.v1.TokenService", method: "Introspect", code: "ok" };
const B = { service: "tessera.v1.TokenService", method: "Issue", code: "invalid_argument" };
// Below the first bound, on a bound, between bounds, above every bound, and zero.
const OBSERVED: Array<[typeof A, number]> = [
  [A, 0.0001],
  [A, 0.0005],
  [A, 0.0007],
  [B, 0.001],
  [A, 0.042],
  [B, 3.5],
  [A, 0],
  [B, 0.5],
];

function pair() {
  const theirs = new Registry();
  const ours = new Registry();
  return {
    theirs,
    ours,
    histograms: [
      new Histogram({ name: "t_seconds", help: "h \\ help", labelNames: LABELS, buckets: BUCKETS, registers: [theirs] }),
      new HotHistogram({ name: "t_seconds", help: "h \\ help", labelNames: LABELS, buckets: BUCKETS, registers: [ours] }),
    ] as const,
    counters: [
      new Counter({ name: "t_total", help: "c", labelNames: LABELS, registers: [theirs] }),
      new HotCounter({ name: "t_total", help: "c", labelNames: LABELS, registers: [ours] }),
    ] as const,
  };
}

const plain = (values: Array<{ value: number; labels: object; metricName?: string }>) =>
  values.map(({ value, labels, metricName }) => ({ value, labels: { ...labels }, metricName }));

describe("HotHistogram and HotCounter expose what prom-client's would", () => {
  it("the same text and values for the same observations, through series bound once", async () => {
    const { theirs, ours, histograms, counters } = pair();
    for (const [hist, count] of [
      [histograms[0], counters[0]],
      [histograms[1], counters[1]],
    ] as const) {
      const bound = new Map<object, { h: { observe(v: number): void }; c: { inc(): void } }>();
      for (const [labels, value] of OBSERVED) {
        let s = bound.get(labels);
        if (s === undefined) bound.set(labels, (s = { h: hist.labels(labels), c: count.labels(labels) }));
        s.h.observe(value);
        s.c.inc();
      }
    }
    const text = await ours.metrics();
    expect(text).toBe(await theirs.metrics());
    // The figures themselves, not only the likeness: A has 5 observations, 3 of them at or below 0.0005.
    expect(text).toContain('t_seconds_bucket{le="0.0005",service="tessera.v1.TokenService",method="Introspect",code="ok"} 3');
    expect(text).toContain('t_seconds_count{service="tessera.v1.TokenService",method="Issue",code="invalid_argument"} 3');
    expect(text).toContain('t_total{service="tessera.v1.TokenService",method="Introspect",code="ok"} 5');

    for (const name of ["t_seconds", "t_total"]) {
      const mine = await ours.getSingleMetric(name)!.get();
      const reference = await theirs.getSingleMetric(name)!.get();
      expect(plain(mine.values)).toEqual(plain(reference.values));
      expect({ ...mine, values: [] }).toMatchObject({ name: reference.name, help: reference.help, type: reference.type, aggregator: reference.aggregator });
    }
  });

  it("labels() gives one series per label set, whichever object holds the values", () => {
    const { histograms, counters } = pair();
    expect(histograms[1].labels({ ...A })).toBe(histograms[1].labels({ code: "ok", method: "Introspect", service: A.service }));
    expect(histograms[1].labels(A)).not.toBe(histograms[1].labels(B));
    const c = counters[1].labels(A);
    c.inc();
    counters[1].labels({ ...A }).inc();
    expect(c.value).toBe(2);
    // One label: its value is the key.
    const one = new HotCounter({ name: "one_total", help: "c", labelNames: ["result"] as const, registers: [] });
    expect(one.labels({ result: "active" })).toBe(one.labels({ result: "active" }));
    expect(one.labels({ result: "active" })).not.toBe(one.labels({ result: "revoked" }));
    expect(one.labels({ result: "revoked" }).labels).toEqual({ result: "revoked" });
  });

  it("Introspect's answers and the audit events are counted by label, each series on a line of its own", async () => {
    const m = new Metrics();
    for (const result of ["active", "active", "revoked"]) m.countIntrospection(result);
    const { log } = auditSinks(createLogger("silent"), m);
    const event = (type: string, severity: string) => ({ type, severity }) as unknown as AuditEvent;
    for (const e of [event("session_opened", "info"), event("session_opened", "info"), event("refresh_reuse", "critical")]) log(e);
    const text = await m.render();
    expect(text).toContain("# TYPE tessera_introspect_total counter");
    expect(text).toContain('tessera_introspect_total{result="active"} 2');
    expect(text).toContain('tessera_introspect_total{result="revoked"} 1');
    expect(text).toContain('tessera_audit_events_total{type="session_opened",severity="info"} 2');
    expect(text).toContain('tessera_audit_events_total{type="refresh_reuse",severity="critical"} 1');
  });

  it("an app's registry shows the RPC series as before; reset zeroes them, and a series bound before still counts", async () => {
    const m = new Metrics();
    const bound = m.rpcTotal.labels(A);
    m.rpcDuration.labels(A).observe(0.002);
    bound.inc();
    m.storeDuration.labels({ op: "tokenState" }).observe(0.0003);
    const text = await m.render();
    expect(text).toContain("# TYPE tessera_rpc_duration_seconds histogram");
    expect(text).toContain('tessera_rpc_duration_seconds_bucket{le="0.0025",service="tessera.v1.TokenService",method="Introspect",code="ok"} 1');
    expect(text).toContain('tessera_rpc_duration_seconds_bucket{le="0.001",service="tessera.v1.TokenService",method="Introspect",code="ok"} 0');
    expect(text).toContain('tessera_rpc_total{service="tessera.v1.TokenService",method="Introspect",code="ok"} 1');
    expect(text).toContain('tessera_store_duration_seconds_bucket{le="0.0005",op="tokenState"} 1');
    expect(text).toContain("tessera_process_resident_memory_bytes"); // the default metrics are still there
    m.registry.resetMetrics();
    const zeroed = await m.render();
    expect(zeroed).toContain('tessera_rpc_total{service="tessera.v1.TokenService",method="Introspect",code="ok"} 0');
    expect(zeroed).toContain('tessera_rpc_duration_seconds_count{service="tessera.v1.TokenService",method="Introspect",code="ok"} 0');
    expect(zeroed).toContain('tessera_rpc_duration_seconds_bucket{le="+Inf",service="tessera.v1.TokenService",method="Introspect",code="ok"} 0');
    bound.inc();
    expect(await m.render()).toContain('tessera_rpc_total{service="tessera.v1.TokenService",method="Introspect",code="ok"} 1');
  });
});
