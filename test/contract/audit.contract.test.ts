/**
 * The AuditStore contract (src/domain/store.ts), run against every backend: appendAudit / listAudit (round trip,
 * filters, newest first, paging without duplicates or gaps, bounds by age and count, the scan limit) and the risk
 * observations (merged per subject, pruned to the window, capped, read with SessionStore.tokenState in the same
 * round trip, alert claimed once per window). Instants are passed in; nothing sleeps.
 */
import { randomUUID } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { newSessionId } from "../../src/domain/ids.js";
import {
  AUDIT_SCAN_LIMIT,
  RISK_CAPS,
  compareAuditIds as byId,
  mergeRisk,
  riskTag,
  riskSignal,
  type AuditBounds,
  type AuditEvent,
  type AuditQuery,
  type RiskSignal,
  type StoredAuditEvent,
} from "../../src/domain/audit.js";
import type { AuditStore, SessionStore } from "../../src/domain/store.js";
import { BACKENDS } from "./backends.js";
import { storesFrom } from "./fixtures.js";

/** The audit part, and tokenState, which reads the risk observations in the same round trip as the session. */
type Audited = AuditStore & Pick<SessionStore, "tokenState">;

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;
const DAY = 24 * 60 * MIN;
const WINDOW = 15 * MIN;
/** How far beyond maxEvents Redis may keep entries: MAXLEN ~ trims whole stream nodes (100 entries by default). */
const TRIM_SLACK = 100;

function bounds(now: number, over: Partial<AuditBounds> = {}): AuditBounds {
  return { now, maxEvents: 100_000, maxAgeMs: 30 * DAY, riskWindowMs: WINDOW, ...over };
}

function event(at: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type: "token_issued",
    severity: "info",
    at,
    caller: "gateway",
    subject: "alice",
    sessionId: "s-1",
    ip: "203.0.113.7",
    userAgent: "tessera-contract/1.0",
    deviceId: "device-1",
    requestId: `req-${at}`,
    detail: {},
    ...over,
  };
}

const withoutId = ({ id: _id, ...e }: StoredAuditEvent): AuditEvent => e;

function auditContract(storeOf: () => Audited): void {
  /** Every page of the query, following cursors (bounded, so a cursor that does not advance fails instead of hanging). */
  async function pages(q: Omit<AuditQuery, "cursor">): Promise<StoredAuditEvent[][]> {
    const out: StoredAuditEvent[][] = [];
    let cursor: string | null = null;
    for (let i = 0; i < 1000; i++) {
      const page = await storeOf().listAudit({ ...q, cursor });
      expect(page.events.length).toBeLessThanOrEqual(q.limit);
      out.push(page.events);
      if (page.next === null) return out;
      cursor = page.next;
    }
    throw new Error("paging did not end");
  }

  async function everything(q: Omit<AuditQuery, "cursor" | "limit"> = {}): Promise<StoredAuditEvent[]> {
    return (await pages({ ...q, limit: 1000 })).flat();
  }

  describe("audit trail", () => {
    it("appends and lists every field, newest first, with growing ids", async () => {
      const events = [
        event(T0, { detail: { scopes: "read write" } }),
        event(T0 + 1, { type: "token_refreshed", userAgent: 'Mozilla/5.0 ("Ünïcødé" 📱) \\ end/', ip: "2001:db8::1" }),
        event(T0 + 2, { type: "refresh_reuse_detected", severity: "critical", detail: { jti: "j-1", action: "x" } }),
        event(T0 + 3, { type: "caller_denied", severity: "warning", caller: "", subject: "", sessionId: "", ip: "" }),
      ];
      await storeOf().appendAudit(events, bounds(T0 + 3));
      const listed = await everything();
      expect(listed.map(withoutId)).toEqual([...events].reverse());
      const ids = listed.map((e) => e.id).reverse();
      expect(ids).toEqual([...ids].sort(byId));
      expect(new Set(ids).size).toBe(ids.length);
    });

    it("keeps every field as given, control characters and empty strings included", async () => {
      const odd = ["\x1f", "\x1e", "\x1e0", "\x1e1", "a\x1fb\x1ec", "\x1e\x1e1\x1f\x1f", "", " ", "\\x1f"];
      const events = odd.map((s, i) =>
        event(T0 + i, { caller: s, subject: `s${s}`, sessionId: s, ip: s, userAgent: `${s}ua${s}`, deviceId: s, requestId: s, detail: { k: s, [s || "e"]: "v" } }),
      );
      events.push(event(T0 + odd.length, { caller: "", subject: "", sessionId: "", ip: "", userAgent: "", deviceId: "", requestId: "", detail: {} }));
      await storeOf().appendAudit(events, bounds(T0 + odd.length));
      expect((await everything()).map(withoutId)).toEqual([...events].reverse());
    });

    it("appends a long batch in order with growing ids, and returns its subjects' risk (Redis: in parts of 128)", async () => {
      // 300 events: 290 of bob's, then alice's ten, one a millisecond, some late (a millisecond before the one ahead).
      const events = Array.from({ length: 300 }, (_, i) =>
        event(T0 + i - (i % 7 === 6 ? 2 : 0), { subject: i < 290 ? "bob" : "alice", requestId: `r${i}`, ip: `192.0.2.${i % 5}`, deviceId: "d" }),
      );
      const result = await storeOf().appendAudit(events, bounds(T0 + 300));
      const listed = await everything();
      expect(listed.map((e) => e.requestId)).toEqual(events.map((e) => e.requestId).reverse());
      const ids = listed.map((e) => e.id).reverse();
      expect(ids).toEqual([...ids].sort(byId));
      expect(new Set(ids).size).toBe(300);
      const signalsOf = (subject: string) =>
        events.filter((e) => e.subject === subject).map(riskSignal).filter((x): x is RiskSignal => x !== null);
      const riskOf = (subject: string) => mergeRisk(null, signalsOf(subject), T0 + 300, WINDOW);
      expect([...result].sort((x, y) => x.subject.localeCompare(y.subject))).toEqual([
        { subject: "alice", risk: riskOf("alice") },
        { subject: "bob", risk: riskOf("bob") },
      ]);
    });

    it("gives a late event (older than the newest stored) a greater id all the same", async () => {
      await storeOf().appendAudit([event(T0 + 10, { requestId: "first" })], bounds(T0 + 10));
      await storeOf().appendAudit([event(T0 + 5, { requestId: "late" })], bounds(T0 + 11));
      const listed = await everything();
      expect(listed.map((e) => e.requestId)).toEqual(["late", "first"]);
      expect(byId(listed[0]!.id, listed[1]!.id)).toBeGreaterThan(0);
      expect(listed[0]!.at).toBe(T0 + 5);
    });

    it("filters by subject, session, types, minimum severity and time range (bounds inclusive)", async () => {
      const events = [
        event(T0, { subject: "alice", sessionId: "a1" }),
        event(T0 + 1, { subject: "bob", sessionId: "b1" }),
        event(T0 + 2, { subject: "alice", sessionId: "a2", type: "session_revoked", severity: "notice" }),
        event(T0 + 3, { subject: "alice", sessionId: "a1", type: "revoked_token_presented", severity: "warning" }),
        event(T0 + 4, { subject: "alice", sessionId: "a1", type: "refresh_reuse_detected", severity: "critical" }),
        event(T0 + 5, { subject: "bob", sessionId: "b1", type: "suspicious_activity", severity: "warning" }),
      ];
      await storeOf().appendAudit(events, bounds(T0 + 5));
      const at = async (q: Omit<AuditQuery, "cursor" | "limit">) => (await everything(q)).map((e) => e.at - T0);
      expect(await at({ subject: "alice" })).toEqual([4, 3, 2, 0]);
      expect(await at({ sessionId: "a1" })).toEqual([4, 3, 0]);
      expect(await at({ subject: "alice", sessionId: "b1" })).toEqual([]);
      expect(await at({ types: ["session_revoked", "suspicious_activity"] })).toEqual([5, 2]);
      expect(await at({ types: [] })).toEqual([5, 4, 3, 2, 1, 0]);
      expect(await at({ minSeverity: "warning" })).toEqual([5, 4, 3]);
      expect(await at({ minSeverity: "critical" })).toEqual([4]);
      expect(await at({ minSeverity: "info" })).toHaveLength(6);
      expect(await at({ from: T0 + 1, to: T0 + 3 })).toEqual([3, 2, 1]);
      expect(await at({ from: T0 + 6 })).toEqual([]);
      expect(await at({ subject: "alice", minSeverity: "warning", from: T0 + 4 })).toEqual([4]);
    });

    it("pages without duplicates or gaps, also while events are appended between pages", async () => {
      const events = Array.from({ length: 25 }, (_, i) => event(T0 + i, { subject: i % 3 === 0 ? "bob" : "alice" }));
      await storeOf().appendAudit(events, bounds(T0 + 25));
      const whole = await everything({ subject: "alice" });
      expect(whole).toHaveLength(16);

      const seen: StoredAuditEvent[] = [];
      let cursor: string | null = null;
      for (let i = 0; i < 20; i++) {
        const page = await storeOf().listAudit({ subject: "alice", limit: 4, cursor });
        expect(page.events.length).toBeLessThanOrEqual(4);
        seen.push(...page.events);
        // Newer events arriving meanwhile do not shift the pages that follow.
        await storeOf().appendAudit([event(T0 + 100 + i, { subject: "alice" })], bounds(T0 + 100 + i));
        if (page.next === null) break;
        cursor = page.next;
      }
      expect(seen).toEqual(whole);
      expect((await storeOf().listAudit({ subject: "alice", limit: 4 })).events).toHaveLength(4);
    });

    it("an unknown or malformed cursor yields no events, and a limit below 1 none", async () => {
      await storeOf().appendAudit([event(T0)], bounds(T0));
      expect(await storeOf().listAudit({ limit: 10, cursor: "not-a-cursor" })).toEqual({ events: [], next: null });
      expect(await storeOf().listAudit({ limit: 10, cursor: "0-0" })).toEqual({ events: [], next: null });
      expect((await storeOf().listAudit({ limit: 0 })).events).toEqual([]);
      expect((await storeOf().listAudit({ limit: 10, cursor: `${T0 + 1}-0` })).events).toHaveLength(1);
    });

    it("drops events older than maxAge by the caller's clock", async () => {
      await storeOf().appendAudit([event(T0), event(T0 + MIN)], bounds(T0 + MIN, { maxAgeMs: DAY }));
      expect(await everything()).toHaveLength(2);
      await storeOf().appendAudit([event(T0 + DAY + 30_000)], bounds(T0 + DAY + 30_000, { maxAgeMs: DAY }));
      expect((await everything()).map((e) => e.at)).toEqual([T0 + DAY + 30_000, T0 + MIN]);
    });

    it("keeps about maxEvents: every one of the newest maxEvents, and at most a stream node more", async () => {
      const maxEvents = 100;
      for (let batch = 0; batch < 5; batch++) {
        const events = Array.from({ length: 90 }, (_, i) => event(T0 + batch * 90 + i));
        await storeOf().appendAudit(events, bounds(T0 + 450, { maxEvents }));
      }
      const kept = await everything();
      expect(kept.length).toBeGreaterThanOrEqual(maxEvents);
      expect(kept.length).toBeLessThanOrEqual(maxEvents + TRIM_SLACK);
      expect(kept.slice(0, maxEvents).map((e) => e.at)).toEqual(Array.from({ length: maxEvents }, (_, i) => T0 + 449 - i));
    });

    it("examines at most AUDIT_SCAN_LIMIT events per page, and the cursor carries on from there", async () => {
      const needle = event(T0, { subject: "needle" });
      await storeOf().appendAudit([needle], bounds(T0));
      for (let start = 1; start <= AUDIT_SCAN_LIMIT; start += 1000) {
        const hay = Array.from({ length: 1000 }, (_, i) => event(T0 + start + i, { subject: "hay" }));
        await storeOf().appendAudit(hay, bounds(T0 + start + 1000));
      }
      const first = await storeOf().listAudit({ subject: "needle", limit: 10 });
      expect(first.events).toEqual([]);
      expect(first.next).not.toBeNull();
      const rest = (await pages({ subject: "needle", limit: 10 })).flat();
      expect(rest.map(withoutId)).toEqual([needle]);
    });
  });

  describe("risk observations", () => {
    const signals = (events: AuditEvent[]) => events.map(riskSignal).filter((s): s is RiskSignal => s !== null);

    it("appendAudit merges each subject's signals and returns them; riskOf and tokenState read them", async () => {
      expect(await storeOf().riskOf("alice")).toBeNull();
      const batch = [
        event(T0, { ip: "198.51.100.1", deviceId: "phone" }),
        event(T0 + 1, { type: "token_refreshed", ip: "198.51.100.2", deviceId: "phone" }),
        event(T0 + 2, { type: "refresh_reuse_detected", severity: "critical", ip: "203.0.113.9", deviceId: "laptop" }),
        event(T0 + 3, { type: "revoked_token_presented", severity: "warning", ip: "", deviceId: "" }),
        event(T0 + 4, { subject: "bob", ip: "192.0.2.1", deviceId: "bob-phone" }),
        event(T0 + 5, { type: "caller_denied", severity: "warning", subject: "carol" }),
        event(T0 + 6, { type: "session_revoked", severity: "notice", subject: "dave" }),
      ];
      const result = await storeOf().appendAudit(batch, bounds(T0 + 10));
      const alice = mergeRisk(null, signals(batch.slice(0, 4)), T0 + 10, WINDOW);
      const bob = mergeRisk(null, signals(batch.slice(4, 5)), T0 + 10, WINDOW);
      expect(alice).toEqual({
        ips: { [riskTag("198.51.100.1")]: T0, [riskTag("198.51.100.2")]: T0 + 1, [riskTag("203.0.113.9")]: T0 + 2 },
        devices: { [riskTag("phone")]: T0 + 1, [riskTag("laptop")]: T0 + 2 },
        refreshes: [T0 + 1],
        reuses: [T0 + 2],
        revokedPresented: [T0 + 3],
        alertedAt: 0,
      });
      expect([...result].sort((a, b) => a.subject.localeCompare(b.subject))).toEqual([
        { subject: "alice", risk: alice },
        { subject: "bob", risk: bob },
      ]);
      expect(await storeOf().riskOf("alice")).toEqual(alice);
      expect(await storeOf().riskOf("carol")).toBeNull();
      // A session id shaped like one of the subject's (newSessionId): tokenState finds the subject's keys from it.
      const state = await storeOf().tokenState({ subject: "alice", sessionId: newSessionId("alice"), jti: "j" });
      expect(state).toEqual({ jtiRevoked: false, session: null, risk: alice });
      expect(await storeOf().tokenState({ subject: "erin", sessionId: newSessionId("erin"), jti: "j" })).toEqual({
        jtiRevoked: false,
        session: null,
      });
    });

    it("tokenState reads a subject's observations anew once they change", async () => {
      const sessionId = newSessionId("alice");
      const read = async () => (await storeOf().tokenState({ subject: "alice", sessionId, jti: "j" })).risk;
      const [one] = await storeOf().appendAudit([event(T0, { ip: "198.51.100.1" })], bounds(T0));
      expect(await read()).toEqual(one!.risk);
      expect(await read()).toEqual(one!.risk);
      const [two] = await storeOf().appendAudit([event(T0 + 1, { ip: "198.51.100.2", type: "token_refreshed" })], bounds(T0 + 1));
      expect(two!.risk.refreshes).toEqual([T0 + 1]);
      expect(await read()).toEqual(two!.risk);
    });

    it("forgets observations once they are a window old", async () => {
      await storeOf().appendAudit([event(T0, { ip: "198.51.100.1" })], bounds(T0));
      await storeOf().appendAudit([event(T0 + 1, { ip: "198.51.100.2", type: "token_refreshed" })], bounds(T0 + 1));
      const [after] = await storeOf().appendAudit([event(T0 + WINDOW, { ip: "198.51.100.3" })], bounds(T0 + WINDOW));
      expect(after!.risk).toEqual({
        ips: { [riskTag("198.51.100.2")]: T0 + 1, [riskTag("198.51.100.3")]: T0 + WINDOW },
        devices: { [riskTag("device-1")]: T0 + WINDOW },
        refreshes: [T0 + 1],
        reuses: [],
        revokedPresented: [],
        alertedAt: 0,
      });
    });

    it("caps each collection, keeping the newest", async () => {
      const many = Array.from({ length: 100 }, (_, i) =>
        event(T0 + i, { type: "token_refreshed", ip: `198.51.100.${i}`, deviceId: `device-${i}` }),
      );
      const [r] = await storeOf().appendAudit(many, bounds(T0 + 100));
      expect(Object.keys(r!.risk.ips)).toHaveLength(RISK_CAPS.keys);
      expect(Object.keys(r!.risk.devices)).toHaveLength(RISK_CAPS.keys);
      expect(r!.risk.ips[riskTag("198.51.100.99")]).toBe(T0 + 99);
      expect(r!.risk.ips[riskTag("198.51.100.67")]).toBeUndefined();
      expect(r!.risk.refreshes).toEqual(Array.from({ length: RISK_CAPS.instants }, (_, i) => T0 + 36 + i));
      expect(r!.risk).toEqual(mergeRisk(null, signals(many), T0 + 100, WINDOW));
    });

    it("claimRiskAlert is true once per window, and appends keep the mark inside it", async () => {
      const q = { subject: "alice", now: T0, windowMs: WINDOW };
      expect(await storeOf().claimRiskAlert(q)).toBe(true);
      expect(await storeOf().claimRiskAlert({ ...q, now: T0 + 1 })).toBe(false);
      expect((await storeOf().riskOf("alice"))?.alertedAt).toBe(T0);
      const [r] = await storeOf().appendAudit([event(T0 + 2)], bounds(T0 + 2));
      expect(r!.risk.alertedAt).toBe(T0);
      expect(await storeOf().claimRiskAlert({ ...q, now: T0 + WINDOW - 1 })).toBe(false);
      expect(await storeOf().claimRiskAlert({ ...q, now: T0 + WINDOW })).toBe(true);
      expect(await storeOf().claimRiskAlert({ ...q, subject: "bob" })).toBe(true);
    });

    it("of concurrent claims exactly one wins", async () => {
      const claims = Array.from({ length: 10 }, () => storeOf().claimRiskAlert({ subject: "alice", now: T0, windowMs: WINDOW }));
      expect((await Promise.all(claims)).filter(Boolean)).toHaveLength(1);
    });
  });
}

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: Audited;
    const stores = storesFrom(make);
    beforeEach(async () => {
      store = await stores.fresh();
    });
    auditContract(() => store);
  });
}
