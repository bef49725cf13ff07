/**
 * The audit recorder: the log line is written synchronously; the store gets batches (on size, on the interval, on
 * close), never a call per event; a full buffer drops and counts; a failed write is retried; suspicious_activity is
 * raised once per window when the score reaches the threshold.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import type { AuditEvent } from "../../src/domain/audit.js";
import { Audit, type AuditTrailConfig } from "../../src/domain/audit-trail.js";
import { ManualClock } from "../../src/domain/clock.js";
import { newSessionId } from "../../src/domain/ids.js";
import { StoreUnavailableError } from "../../src/domain/errors.js";
import type { Store } from "../../src/domain/store.js";
import { MemoryStore } from "../../src/store/memory.js";

const T0 = Date.UTC(2026, 0, 1);
const CTX = { caller: "gw", ip: "198.51.100.1", userAgent: "ua", deviceId: "d1", requestId: "r1" };

function setup(config: Partial<AuditTrailConfig> = {}, store: Store = new MemoryStore()) {
  const clock = new ManualClock(T0);
  const logged: AuditEvent[] = [];
  const dropped: number[] = [];
  const errors: string[] = [];
  const appends: number[] = [];
  const spied = new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== "appendAudit") return typeof value === "function" ? value.bind(target) : value;
      return (events: AuditEvent[], ...rest: unknown[]) => {
        appends.push(events.length);
        return (value as (...a: unknown[]) => unknown).call(target, events, ...rest);
      };
    },
  });
  const audit = new Audit({
    store: spied,
    clock,
    config: { maxEvents: 1000, maxAgeMs: 86_400_000, riskWindowMs: 900_000, riskThreshold: 50, ...config },
    log: (e) => logged.push(e),
    onDropped: (total) => dropped.push(total),
    onError: (_err, what) => errors.push(what),
  });
  const stored = async () => (await store.listAudit({ limit: 10_000 })).events.reverse();
  return { audit, store, clock, logged, dropped, errors, appends, stored };
}

afterEach(() => {
  vi.useRealTimers();
});

describe("recording", () => {
  it("writes the log line at once and fills in severity, time and context", () => {
    const { audit, logged, appends } = setup();
    audit.record({ type: "refresh_reuse_detected", context: CTX, subject: "alice", sessionId: "s1", detail: { n: 1, ok: true } });
    expect(logged).toEqual([
      {
        type: "refresh_reuse_detected",
        severity: "critical",
        at: T0,
        ...CTX,
        subject: "alice",
        sessionId: "s1",
        detail: { n: "1", ok: "true" },
      },
    ]);
    expect(appends).toEqual([]); // nothing reached the store yet
    expect(audit.pending).toBe(1);
  });

  it("without a context, caller, client and request are empty", () => {
    const { audit, logged } = setup();
    audit.record({ type: "keys_rotated" });
    expect(logged[0]).toMatchObject({ caller: "", ip: "", userAgent: "", deviceId: "", requestId: "", subject: "", sessionId: "" });
  });

  it("cuts long detail values", () => {
    const { audit, logged } = setup();
    audit.record({ type: "token_revoked", detail: { reason: "x".repeat(1000) } });
    expect(logged[0]!.detail.reason).toHaveLength(256);
  });

  it("the sessions a logout everywhere ended reach the statistics, neither the log line nor the stored trail", async () => {
    const { audit, store, logged, stored } = setup();
    const ids = Array.from({ length: 40 }, () => newSessionId("alice"));
    const life = { platform: "ios", expires_at: T0 + 86_400_000, idle_expires_at: T0 + 3_600_000 };
    for (const sessionId of ids) audit.record({ type: "token_issued", subject: "alice", sessionId, detail: life });
    // Thirty of them ended (the other ten opened elsewhere, after it): more ids than one detail value could hold.
    audit.record({ type: "subject_revoked", subject: "alice", detail: { reason: "r", sessions: 30 }, endedSessions: ids.slice(0, 30) });
    await audit.flush();
    const stats = await store.readStats({ fromHour: T0, toHour: T0, now: T0 });
    expect(stats.live).toEqual({ sessions: 10, byPlatform: { ios: 10 }, subjects: 1 });
    expect(stats.hours[0]!.durations.count).toBe(30);
    const logLine = logged.find((e) => e.type === "subject_revoked")!;
    expect(logLine).not.toHaveProperty("endedSessions");
    expect(logLine.detail).toEqual({ reason: "r", sessions: "30" });
    const kept = (await stored()).find((e) => e.type === "subject_revoked")!;
    expect(kept).not.toHaveProperty("endedSessions");
    expect(kept.detail).toEqual({ reason: "r", sessions: "30" });
  });
});

describe("flushing", () => {
  it("on the interval: one batch for everything recorded meanwhile", async () => {
    vi.useFakeTimers();
    const { audit, appends, stored } = setup({ flushIntervalMs: 50, batchSize: 100 });
    for (let i = 0; i < 7; i++) audit.record({ type: "token_issued", subject: `s${i}` });
    await vi.advanceTimersByTimeAsync(49);
    expect(appends).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(appends).toEqual([7]);
    expect((await stored()).map((e) => e.subject)).toEqual(["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
  });

  it("on size: a full batch goes at once, without waiting for the interval", async () => {
    vi.useFakeTimers();
    const { audit, appends } = setup({ flushIntervalMs: 10_000, batchSize: 5 });
    for (let i = 0; i < 12; i++) audit.record({ type: "token_issued", subject: "a" });
    await vi.advanceTimersByTimeAsync(0);
    expect(appends).toEqual([5, 5]);
    expect(audit.pending).toBe(2);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(appends).toEqual([5, 5, 2]);
  });

  it("on close: everything buffered is written; later events are logged and counted as dropped", async () => {
    const { audit, appends, stored, logged, dropped } = setup({ flushIntervalMs: 60_000, batchSize: 4 });
    for (let i = 0; i < 10; i++) audit.record({ type: "token_issued", subject: "a" });
    await audit.close();
    expect(appends.reduce((a, b) => a + b, 0)).toBe(10);
    expect(await stored()).toHaveLength(10);
    audit.record({ type: "token_issued", subject: "late" });
    expect(logged).toHaveLength(11);
    expect(dropped).toEqual([1]);
    expect(audit.dropped).toBe(1);
  });

  it("a full buffer drops new events and counts each (their log lines are still written)", async () => {
    const { audit, logged, dropped, stored } = setup({ bufferSize: 3, batchSize: 100, flushIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) audit.record({ type: "token_issued", subject: `s${i}` });
    expect(logged).toHaveLength(5);
    expect(dropped).toEqual([1, 2]);
    await audit.flush();
    expect((await stored()).map((e) => e.subject)).toEqual(["s0", "s1", "s2"]);
    audit.record({ type: "token_issued", subject: "s5" });
    expect(dropped).toEqual([1, 2]);
    await audit.close();
  });

  it("a failed write is kept and retried on the next interval, in order", async () => {
    vi.useFakeTimers();
    const inner = new MemoryStore();
    let down = true;
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop === "appendAudit" && typeof value === "function") {
          return (...args: unknown[]) => (down ? Promise.reject(new StoreUnavailableError()) : value.apply(target, args));
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const { audit, errors, stored, dropped } = setup({ flushIntervalMs: 50 }, store);
    audit.record({ type: "token_issued", subject: "first" });
    await vi.advanceTimersByTimeAsync(50);
    expect(errors).toEqual(["flush"]);
    audit.record({ type: "token_issued", subject: "second" });
    down = false;
    await vi.advanceTimersByTimeAsync(50);
    expect((await stored()).map((e) => e.subject)).toEqual(["first", "second"]);
    expect(dropped).toEqual([]);
  });

  it("a store that keeps refusing is tried again ever less often (doubling up to 5 s), whatever comes meanwhile; a success resets it", async () => {
    vi.useFakeTimers();
    const inner = new MemoryStore();
    let down = true;
    const tries: number[] = [];
    const store = new Proxy(inner, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver);
        if (prop === "appendAudit" && typeof value === "function") {
          return (...args: unknown[]) => {
            tries.push(Date.now());
            return down ? Promise.reject(new StoreUnavailableError()) : value.apply(target, args);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const { audit, stored, dropped } = setup({ flushIntervalMs: 50, batchSize: 10 }, store);
    const start = Date.now();
    audit.record({ type: "token_issued", subject: "e0" });
    await vi.advanceTimersByTimeAsync(1_000);
    // A burst of more than a batch while backing off does not send a write sooner.
    for (let i = 1; i <= 25; i++) audit.record({ type: "token_issued", subject: `e${i}` });
    await vi.advanceTimersByTimeAsync(19_000);
    const at = tries.map((t) => t - start);
    expect(at).toEqual([50, 100, 200, 400, 800, 1600, 3200, 6400, 11400, 16400]);
    down = false;
    await vi.advanceTimersByTimeAsync(5_000);
    expect((await stored()).map((e) => e.subject)).toEqual(Array.from({ length: 26 }, (_, i) => `e${i}`));
    expect(dropped).toEqual([]);
    // Writes succeed again: the next failure is retried after one interval again.
    down = true;
    tries.length = 0;
    const again = Date.now();
    audit.record({ type: "token_issued", subject: "later" });
    await vi.advanceTimersByTimeAsync(150);
    expect(tries.map((t) => t - again)).toEqual([50, 100]);
    down = false;
    await audit.close();
  });

  it("close with the store down gives up after one try and counts what is left as dropped", async () => {
    const store = new MemoryStore();
    store.appendAudit = () => Promise.reject(new StoreUnavailableError());
    const { audit, dropped } = setup({ flushIntervalMs: 60_000 }, store);
    audit.record({ type: "token_issued", subject: "a" });
    audit.record({ type: "token_issued", subject: "b" });
    await audit.close();
    expect(dropped).toEqual([1, 2]);
  });

  it("a burst larger than the buffer: store writes stay batched and every event is either stored or counted", async () => {
    const { audit, appends, stored, dropped } = setup({ bufferSize: 1000, batchSize: 250, flushIntervalMs: 50, maxEvents: 10_000 });
    for (let i = 0; i < 3000; i++) audit.record({ type: "token_issued", subject: "a" });
    await audit.close();
    expect(appends.every((n) => n <= 250)).toBe(true);
    expect((await stored()).length + dropped.length).toBe(3000);
    expect(dropped.length).toBeGreaterThan(0);
  });
});

describe("suspicious activity", () => {
  it("raises one warning when the score reaches the threshold, then none within the window", async () => {
    const { audit, clock, stored, logged } = setup({ riskThreshold: 50 });
    const issueFrom = (ip: string) =>
      audit.record({ type: "token_issued", context: { ...CTX, ip }, subject: "alice", sessionId: `s-${ip}` });
    for (let i = 1; i <= 6; i++) issueFrom(`198.51.100.${i}`); // 6 IPs: 40 points
    await audit.flush();
    expect(logged.filter((e) => e.type === "suspicious_activity")).toEqual([]);
    issueFrom("198.51.100.7"); // 7 IPs: 50
    await audit.flush();
    issueFrom("198.51.100.8");
    clock.advance(1000);
    await audit.flush();
    const alerts = (await stored()).filter((e) => e.type === "suspicious_activity");
    expect(alerts).toHaveLength(1);
    expect(alerts[0]).toMatchObject({
      severity: "warning",
      subject: "alice",
      sessionId: "s-198.51.100.7",
      caller: "gw",
      ip: "198.51.100.7",
      detail: { score: "50", threshold: "50", distinct_ips: "7", trigger: "token_issued" },
    });
    expect(await audit.risk("alice")).toMatchObject({ score: 60, distinctIps: 8 });
  });

  it("raises it again once the window has passed", async () => {
    const { audit, clock, stored } = setup({ riskThreshold: 40, riskWindowMs: 60_000 });
    const reuse = () => audit.record({ type: "refresh_reuse_detected", context: CTX, subject: "bob" });
    reuse();
    await audit.flush();
    clock.advance(30_000);
    reuse();
    await audit.flush();
    clock.advance(30_000);
    reuse();
    await audit.flush();
    expect((await stored()).filter((e) => e.type === "suspicious_activity").map((e) => e.at)).toEqual([T0, T0 + 60_000]);
  });
});
