/** The audit vocabulary's pure functions: risk signals, merging, facts, the score and when it alerts; filters; ids. */
import { describe, expect, it } from "vitest";
import {
  AUDIT_SEVERITIES,
  AUDIT_TYPES,
  RISK_CAPS,
  RISK_RULES,
  assessRisk,
  auditMatches,
  compareAuditIds,
  emptyRisk,
  mergeRisk,
  nextAuditId,
  riskFacts,
  riskScore,
  riskTag,
  riskSignal,
  shouldAlert,
  type AuditEvent,
  type RiskFacts,
} from "../../src/domain/audit.js";

const T0 = Date.UTC(2026, 0, 1);
const W = 15 * 60_000;
const NONE: RiskFacts = { distinctIps: 0, distinctDevices: 0, refreshes: 0, reuses: 0, revokedPresented: 0 };

function event(over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: "token_issued",
    severity: "info",
    at: T0,
    caller: "gw",
    subject: "alice",
    sessionId: "s1",
    ip: "198.51.100.1",
    userAgent: "ua",
    deviceId: "d1",
    requestId: "r1",
    detail: {},
    ...over,
  };
}

describe("event types", () => {
  it("every type has one of the four severities; the issue's required ones are there", () => {
    for (const severity of Object.values(AUDIT_TYPES)) expect(AUDIT_SEVERITIES).toContain(severity);
    expect(AUDIT_TYPES).toMatchObject({
      token_issued: "info",
      token_refreshed: "info",
      refresh_reuse_detected: "critical",
      token_revoked: "notice",
      session_revoked: "notice",
      subject_revoked: "notice",
      session_evicted: "notice",
      caller_denied: "warning",
      rate_limited: "notice",
      revoked_token_presented: "warning",
      refresh_failed: "notice",
      suspicious_activity: "warning",
    });
  });
});

describe("riskScore", () => {
  it("is 0 for ordinary use: two IPs, two devices, ten refreshes", () => {
    expect(riskScore({ ...NONE, distinctIps: 2, distinctDevices: 2, refreshes: 10 })).toBe(0);
  });

  it.each<[string, Partial<RiskFacts>, number]>([
    ["each IP beyond two", { distinctIps: 5 }, 3 * RISK_RULES.perIp],
    ["each device beyond two", { distinctDevices: 4 }, 2 * RISK_RULES.perDevice],
    ["each refresh beyond ten", { refreshes: 13 }, 3 * RISK_RULES.perRefresh],
    ["each reuse detection", { reuses: 1 }, RISK_RULES.perReuse],
    ["each revoked token presented", { revokedPresented: 2 }, 2 * RISK_RULES.perRevokedPresented],
  ])("adds points for %s", (_what, facts, points) => {
    expect(riskScore({ ...NONE, ...facts })).toBe(points);
  });

  it("adds the signals up and caps the sum at 100", () => {
    expect(riskScore({ ...NONE, reuses: 1, revokedPresented: 1 })).toBe(55);
    expect(riskScore({ ...NONE, distinctIps: 8 })).toBe(60);
    expect(riskScore({ distinctIps: 50, distinctDevices: 50, refreshes: 64, reuses: 3, revokedPresented: 9 })).toBe(100);
  });

  it("never decreases when a signal grows (checked over a grid)", () => {
    for (let n = 0; n < 40; n++) {
      for (const key of Object.keys(NONE) as (keyof RiskFacts)[]) {
        const base = { ...NONE, distinctIps: 3, refreshes: 11, [key]: n };
        expect(riskScore({ ...base, [key]: n + 1 })).toBeGreaterThanOrEqual(riskScore(base));
      }
    }
  });
});

describe("riskSignal", () => {
  it("Issue and Refresh carry the IP and device; Refresh, reuse and revoked presentations also count", () => {
    expect(riskSignal(event())).toEqual({ subject: "alice", at: T0, ip: riskTag("198.51.100.1"), deviceId: riskTag("d1") });
    expect(riskSignal(event({ ip: "", deviceId: "" }))).toMatchObject({ ip: "", deviceId: "" });
    expect(riskSignal(event({ type: "token_refreshed" }))?.count).toBe("refresh");
    expect(riskSignal(event({ type: "refresh_reuse_detected" }))?.count).toBe("reuse");
    expect(riskSignal(event({ type: "revoked_token_presented" }))?.count).toBe("revoked_presented");
  });

  it("other events, and events without a subject, carry none", () => {
    for (const type of ["token_revoked", "session_revoked", "subject_revoked", "caller_denied", "suspicious_activity"] as const) {
      expect(riskSignal(event({ type }))).toBeNull();
    }
    expect(riskSignal(event({ subject: "" }))).toBeNull();
  });
});

describe("mergeRisk and riskFacts", () => {
  const sig = (at: number, ip = "", deviceId = "", count?: "refresh" | "reuse" | "revoked_presented") => ({
    subject: "alice",
    at,
    ip,
    deviceId,
    ...(count ? { count } : {}),
  });

  it("records last-seen per IP and device and every counted instant; empty IP or device is not one", () => {
    const r = mergeRisk(null, [sig(T0, "a", "d"), sig(T0 + 5, "a", "", "refresh"), sig(T0 + 2, "", "e", "reuse")], T0 + 5, W);
    expect(r).toEqual({ ips: { a: T0 + 5 }, devices: { d: T0, e: T0 + 2 }, refreshes: [T0 + 5], reuses: [T0 + 2], revokedPresented: [], alertedAt: 0 });
  });

  it("drops what is a window old (at or before now - window), including the alert mark", () => {
    const prev = { ...mergeRisk(null, [sig(T0, "a", "d", "refresh"), sig(T0 + 1, "b")], T0 + 1, W), alertedAt: T0 };
    const r = mergeRisk(prev, [], T0 + W, W);
    expect(r).toEqual({ ...emptyRisk(), ips: { b: T0 + 1 } });
    expect(riskFacts(prev, T0 + W, W)).toEqual({ ...NONE, distinctIps: 1 });
    expect(riskFacts(prev, T0 + W - 1, W)).toEqual({ distinctIps: 2, distinctDevices: 1, refreshes: 1, reuses: 0, revokedPresented: 0 });
  });

  it("caps keys and instants, keeping the newest (ties: the greater key)", () => {
    const signals = Array.from({ length: 80 }, (_, i) => sig(T0 + Math.floor(i / 2), `ip-${String(i).padStart(2, "0")}`, "", "refresh"));
    const r = mergeRisk(null, signals, T0 + 100, W);
    expect(Object.keys(r.ips)).toHaveLength(RISK_CAPS.keys);
    expect(Object.keys(r.ips).sort()[0]).toBe("ip-48");
    expect(r.refreshes).toHaveLength(RISK_CAPS.instants);
    expect(r.refreshes[0]).toBe(T0 + 8);
  });

  it("does not change its input", () => {
    const prev = mergeRisk(null, [sig(T0, "a")], T0, W);
    const copy = structuredClone(prev);
    mergeRisk(prev, [sig(T0 + 1, "b", "d", "reuse")], T0 + 1, W);
    expect(prev).toEqual(copy);
  });

  it("no observations: all zero, score 0", () => {
    expect(assessRisk(null, T0, W)).toEqual({ ...NONE, score: 0 });
  });
});

describe("shouldAlert", () => {
  const obs = (alertedAt: number) => ({ ...emptyRisk(), alertedAt });

  it("at or above the threshold, unless an alert was raised within the window", () => {
    expect(shouldAlert(obs(0), 50, 50, T0, W)).toBe(true);
    expect(shouldAlert(obs(0), 49, 50, T0, W)).toBe(false);
    expect(shouldAlert(obs(T0 - W + 1), 100, 50, T0, W)).toBe(false);
    expect(shouldAlert(obs(T0 - W), 100, 50, T0, W)).toBe(true);
  });
});

describe("auditMatches", () => {
  it("applies every filter set, bounds inclusive", () => {
    const e = event({ severity: "warning", type: "caller_denied", at: T0 + 10 });
    expect(auditMatches(e, { limit: 1 })).toBe(true);
    expect(auditMatches(e, { limit: 1, subject: "alice", sessionId: "s1", types: ["caller_denied"] })).toBe(true);
    expect(auditMatches(e, { limit: 1, subject: "bob" })).toBe(false);
    expect(auditMatches(e, { limit: 1, minSeverity: "warning" })).toBe(true);
    expect(auditMatches(e, { limit: 1, minSeverity: "critical" })).toBe(false);
    expect(auditMatches(e, { limit: 1, from: T0 + 10, to: T0 + 10 })).toBe(true);
    expect(auditMatches(e, { limit: 1, from: T0 + 11 })).toBe(false);
    expect(auditMatches(e, { limit: 1, types: ["token_issued"] })).toBe(false);
  });
});

describe("audit ids", () => {
  it("follow event time, and only ever grow", () => {
    expect(nextAuditId(null, T0)).toBe(`${T0}-0`);
    expect(nextAuditId(`${T0}-0`, T0)).toBe(`${T0}-1`);
    expect(nextAuditId(`${T0}-4`, T0 - 100)).toBe(`${T0}-5`);
    expect(nextAuditId(`${T0}-4`, T0 + 1)).toBe(`${T0 + 1}-0`);
    expect(compareAuditIds(`${T0}-10`, `${T0}-9`)).toBeGreaterThan(0);
    expect(compareAuditIds(`${T0}-0`, `${T0 + 1}-0`)).toBeLessThan(0);
  });
});
