/**
 * The StatsStore contract (src/domain/stats.ts), run against every backend: the statistics are fed by
 * AuditStore.appendAudit from the events appended, and readStats answers the hourly counters, the durations of the
 * sessions that ended (revoked, evicted, reused, logged out everywhere, expired) and the live-session figures, the
 * same on memory and Redis. Instants are passed in; nothing sleeps.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { AuditBounds, AuditEvent, AuditType } from "../../src/domain/audit.js";
import { AUDIT_TYPES } from "../../src/domain/audit.js";
import { newSessionId } from "../../src/domain/ids.js";
import { HOUR_MS, STATS_KEEP_MS, summarizeDurations, sumHours, type StatsStore } from "../../src/domain/stats.js";
import type { AuditStore } from "../../src/domain/store.js";
import { BACKENDS } from "./backends.js";
import { storesFrom } from "./fixtures.js";

type Stated = AuditStore & StatsStore;

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;
const DAY = 24 * HOUR_MS;

function bounds(now: number): AuditBounds {
  return { now, maxEvents: 100_000, maxAgeMs: 30 * DAY, riskWindowMs: 15 * MIN };
}

function ev(type: AuditType, at: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    type,
    severity: AUDIT_TYPES[type],
    at,
    caller: "gateway",
    subject: "alice",
    sessionId: "",
    ip: "203.0.113.7",
    userAgent: "ua",
    deviceId: "d",
    requestId: "r",
    detail: {},
    ...over,
  };
}

/** token_issued as the authority records it: platform and expiries in the detail. */
function issued(at: number, subject: string, platform: string, idleMs = DAY, lifeMs = 30 * DAY): AuditEvent & { sessionId: string } {
  const sessionId = newSessionId(subject);
  return {
    ...ev("token_issued", at, { subject, sessionId }),
    sessionId,
    detail: { platform, expires_at: String(at + lifeMs), idle_expires_at: String(at + idleMs) },
  };
}

function statsContract(storeOf: () => Stated): void {
  const read = (fromHour: number, toHour: number, now: number) => storeOf().readStats({ fromHour, toHour, now });

  it("counts each kind of event per hour", async () => {
    const a = issued(T0 + 5 * MIN, "alice", "ios");
    await storeOf().appendAudit(
      [
        a,
        ev("token_refreshed", T0 + 10 * MIN, { sessionId: a.sessionId, detail: { idle_expires_at: String(T0 + DAY) } }),
        ev("token_refreshed", T0 + 11 * MIN, { sessionId: a.sessionId, detail: { grace_replay: "true" } }),
        ev("token_revoked", T0 + HOUR_MS + 1),
        ev("rate_limited", T0 + HOUR_MS + 2, { detail: { limit: "subject_lockout" } }),
        ev("rate_limited", T0 + HOUR_MS + 3, { detail: { limit: "ip", key: "1.2.3.4" } }),
        ev("suspicious_activity", T0 + HOUR_MS + 4),
        ev("refresh_failed", T0 + HOUR_MS + 5),
      ],
      bounds(T0 + HOUR_MS + 10),
    );
    const s = await read(T0, T0 + 2 * HOUR_MS, T0 + HOUR_MS + 10);
    expect(s.hours.map((h) => h.hour)).toEqual([T0, T0 + HOUR_MS, T0 + 2 * HOUR_MS]);
    expect(s.hours[0]!.counts).toMatchObject({ logins: 1, refreshes: 2, token_revocations: 0 });
    expect(s.hours[1]!.counts).toMatchObject({ logins: 0, token_revocations: 1, lockouts: 1, rate_limited: 2, suspicious_activity: 1 });
    expect(Object.values(s.hours[2]!.counts).every((n) => n === 0)).toBe(true);
    expect(s.live).toEqual({ sessions: 1, byPlatform: { ios: 1 }, subjects: 1 });
  });

  it("ends sessions on revocation, eviction, reuse and logout everywhere, with their durations", async () => {
    const a1 = issued(T0, "alice", "ios");
    const a2 = issued(T0 + MIN, "alice", "web");
    const b1 = issued(T0 + 2 * MIN, "bob", "android");
    const b2 = issued(T0 + 3 * MIN, "bob", "android");
    const c1 = issued(T0 + 4 * MIN, "carol", "web");
    const c2 = issued(T0 + 5 * MIN, "carol", "web");
    await storeOf().appendAudit([a1, a2, b1, b2, c1, c2], bounds(T0 + 5 * MIN));
    expect((await read(T0, T0, T0 + 6 * MIN)).live).toEqual({ sessions: 6, byPlatform: { ios: 1, web: 3, android: 2 }, subjects: 3 });

    await storeOf().appendAudit(
      [
        ev("session_revoked", T0 + 10 * MIN, { sessionId: a1.sessionId, detail: { sessions: "1" } }), // 10 min
        ev("session_evicted", T0 + 20 * MIN, { subject: "bob", sessionId: b1.sessionId }), // 18 min
        ev("refresh_reuse_detected", T0 + 30 * MIN, { subject: "carol", sessionId: c1.sessionId }), // 26 min
        ev("session_revoked", T0 + 31 * MIN, { sessionId: c1.sessionId, detail: { sessions: "0" } }), // ended already
      ],
      bounds(T0 + 31 * MIN),
    );
    let s = await read(T0, T0, T0 + 32 * MIN);
    expect(s.live).toEqual({ sessions: 3, byPlatform: { web: 2, android: 1 }, subjects: 3 });
    expect(s.hours[0]!.counts).toMatchObject({ session_revocations: 2, evictions: 1, reuse_detections: 1 });
    expect(s.hours[0]!.durations).toMatchObject({ count: 3, sumMs: 54 * MIN, maxMs: 26 * MIN });

    // Logout everywhere ends carol's session opened before it, not one opened after.
    const c3 = issued(T0 + 41 * MIN, "carol", "ios");
    await storeOf().appendAudit(
      [ev("subject_revoked", T0 + 40 * MIN, { subject: "carol", detail: { sessions: "1" } }), c3],
      bounds(T0 + 41 * MIN),
    );
    s = await read(T0, T0, T0 + 42 * MIN);
    expect(s.live).toEqual({ sessions: 3, byPlatform: { web: 1, android: 1, ios: 1 }, subjects: 3 });
    expect(s.hours[0]!.counts.subject_revocations).toBe(1);
    expect(s.hours[0]!.durations).toMatchObject({ count: 4, sumMs: 54 * MIN + 35 * MIN, maxMs: 35 * MIN });
    const summary = summarizeDurations(sumHours(s.hours).durations);
    expect(summary).toMatchObject({ count: 4, meanMs: Math.round((89 * MIN) / 4), maxMs: 35 * MIN });
    expect(summary.medianMs).toBeGreaterThanOrEqual(18 * MIN);
    expect(summary.medianMs).toBeLessThanOrEqual(2 * 26 * MIN);
    expect(summary.p95Ms).toBe(35 * MIN); // the top bucket's bound, capped at the max
  });

  it("ends an idle session at its idle expiry, pushed on by each refresh, and counts it in the hour it expired", async () => {
    const a = issued(T0, "alice", "ios", HOUR_MS, DAY);
    await storeOf().appendAudit([a], bounds(T0));
    // Refreshed at +50 min: idle expiry moves to +110 min.
    await storeOf().appendAudit(
      [ev("token_refreshed", T0 + 50 * MIN, { sessionId: a.sessionId, detail: { idle_expires_at: String(T0 + 110 * MIN) } })],
      bounds(T0 + 50 * MIN),
    );
    expect((await read(T0, T0 + HOUR_MS, T0 + 100 * MIN)).live.sessions).toBe(1);
    const s = await read(T0, T0 + 3 * HOUR_MS, T0 + 3 * HOUR_MS);
    expect(s.live).toEqual({ sessions: 0, byPlatform: {}, subjects: 0 });
    expect(s.hours[0]!.durations.count).toBe(0);
    expect(s.hours[1]!.durations).toMatchObject({ count: 1, sumMs: 110 * MIN, maxMs: 110 * MIN });
    // Never beyond the absolute expiry.
    const b = issued(T0, "bob", "web", HOUR_MS, 2 * HOUR_MS);
    await storeOf().appendAudit(
      [b, ev("token_refreshed", T0 + 50 * MIN, { sessionId: b.sessionId, detail: { idle_expires_at: String(T0 + 150 * MIN) } })],
      bounds(T0 + 50 * MIN),
    );
    const t = await read(T0, T0 + 3 * HOUR_MS, T0 + 3 * HOUR_MS);
    expect(t.hours[2]!.durations).toMatchObject({ count: 1, maxMs: 2 * HOUR_MS });
  });

  it("keeps hours for 8 days only", async () => {
    await storeOf().appendAudit([ev("token_revoked", T0)], bounds(T0));
    expect((await read(T0, T0, T0 + STATS_KEEP_MS - 1)).hours[0]!.counts.token_revocations).toBe(1);
    expect((await read(T0, T0, T0 + STATS_KEEP_MS)).hours[0]!.counts.token_revocations).toBe(0);
    // An event for an hour no longer kept changes nothing.
    await storeOf().appendAudit([ev("token_revoked", T0)], bounds(T0 + STATS_KEEP_MS));
    expect((await read(T0, T0, T0 + STATS_KEEP_MS)).hours[0]!.counts.token_revocations).toBe(0);
  });

  it("logout everywhere ends exactly the sessions it ended (endedSessions): a login of the same millisecond lives", async () => {
    const a1 = issued(T0, "alice", "ios");
    const a2 = issued(T0 + MIN, "alice", "web");
    const b1 = issued(T0 + 2 * MIN, "bob", "ios");
    // Opened just after the logout, in the same millisecond (on another process, whose events came first).
    const a3 = issued(T0 + 10 * MIN, "alice", "web");
    await storeOf().appendAudit([a1, a2, b1, a3], bounds(T0 + 10 * MIN));
    const logout = (at: number, ended: string[]) =>
      ev("subject_revoked", at, { subject: "alice", detail: { sessions: String(ended.length) }, endedSessions: ended });
    await storeOf().appendAudit([logout(T0 + 10 * MIN, [a1.sessionId, a2.sessionId])], bounds(T0 + 11 * MIN));
    let s = await read(T0, T0, T0 + 12 * MIN);
    expect(s.live).toEqual({ sessions: 2, byPlatform: { ios: 1, web: 1 }, subjects: 2 });
    expect(s.hours[0]!.counts.subject_revocations).toBe(1);
    expect(s.hours[0]!.durations).toMatchObject({ count: 2, sumMs: 10 * MIN + 9 * MIN, maxMs: 10 * MIN });
    // A logout that ended nothing (the session opened before it was on a host that had not seen it yet) ends nothing;
    // one naming a session ended already changes nothing either.
    await storeOf().appendAudit([logout(T0 + 20 * MIN, []), logout(T0 + 21 * MIN, [a1.sessionId])], bounds(T0 + 21 * MIN));
    s = await read(T0, T0, T0 + 22 * MIN);
    expect(s.live).toEqual({ sessions: 2, byPlatform: { ios: 1, web: 1 }, subjects: 2 });
    expect(s.hours[0]!.counts.subject_revocations).toBe(3);
    expect(s.hours[0]!.durations.count).toBe(2);
    // Bob's session is not alice's, whatever the event lists.
    await storeOf().appendAudit([logout(T0 + 30 * MIN, [b1.sessionId, a3.sessionId])], bounds(T0 + 30 * MIN));
    s = await read(T0, T0, T0 + 31 * MIN);
    expect(s.live).toEqual({ sessions: 1, byPlatform: { ios: 1 }, subjects: 1 });
    expect(s.hours[0]!.durations).toMatchObject({ count: 3, sumMs: 19 * MIN + 20 * MIN, maxMs: 20 * MIN });
  });

  it("tells a subject's many sessions apart: refreshes, revocations, expiries and logout everywhere, any platform", async () => {
    // Platforms of every length the index stores: none, short, and 400 bytes of UTF-8.
    const platforms = ["ios", "android", "web", "é".repeat(200), ""];
    const list = Array.from({ length: 30 }, (_, i) => issued(T0 + i * 1000, "alice", platforms[i % 5]!, HOUR_MS, DAY));
    const other = issued(T0, "bob", "web", HOUR_MS, DAY);
    await storeOf().appendAudit([...list, other], bounds(T0 + 30_000));
    const refreshed = list.filter((_, i) => i % 3 === 0); // 0, 3, ..., 27: idle expiry moved to +3 h
    const revoked = [1, 4, 7, 10, 13].map((i) => list[i]!); // ended at +50 min
    await storeOf().appendAudit(
      [
        ...refreshed.map((a) => ev("token_refreshed", T0 + 50 * MIN, { sessionId: a.sessionId, detail: { idle_expires_at: String(T0 + 3 * HOUR_MS) } })),
        ...revoked.map((a) => ev("session_revoked", T0 + 50 * MIN, { sessionId: a.sessionId, detail: { sessions: "1" } })),
      ],
      bounds(T0 + 50 * MIN),
    );
    // At +2 h the other 15 of alice's sessions and bob's have expired, an hour after they opened.
    let s = await read(T0, T0 + 4 * HOUR_MS, T0 + 2 * HOUR_MS);
    expect(s.live).toEqual({ sessions: 10, byPlatform: { ios: 2, android: 2, web: 2, ["é".repeat(200)]: 2, "": 2 }, subjects: 1 });
    expect(s.hours[0]!.durations).toMatchObject({ count: 5, sumMs: 5 * 50 * MIN - 35_000, maxMs: 50 * MIN - 1000 });
    expect(s.hours[1]!.durations).toMatchObject({ count: 16, sumMs: 16 * HOUR_MS, maxMs: HOUR_MS });
    // Logout everywhere that ended four of the refreshed ones; it also names the five revoked before (nothing more:
    // nine ids, more than a store may look up one by one) and bob's session (not alice's: nothing).
    const out = [0, 3, 6, 9].map((i) => list[i]!.sessionId);
    const listed = [...out, ...revoked.map((a) => a.sessionId), other.sessionId];
    await storeOf().appendAudit(
      [ev("subject_revoked", T0 + 2 * HOUR_MS, { subject: "alice", detail: { sessions: "4" }, endedSessions: listed })],
      bounds(T0 + 2 * HOUR_MS),
    );
    s = await read(T0, T0 + 4 * HOUR_MS, T0 + 2 * HOUR_MS);
    expect(s.live).toEqual({ sessions: 6, byPlatform: { web: 2, ios: 1, android: 1, ["é".repeat(200)]: 1, "": 1 }, subjects: 1 });
    expect(s.hours[2]!.durations).toMatchObject({ count: 4, sumMs: 4 * 2 * HOUR_MS - 18_000, maxMs: 2 * HOUR_MS });
    // The last six expire at +3 h, each ending at that instant.
    s = await read(T0, T0 + 4 * HOUR_MS, T0 + 4 * HOUR_MS);
    expect(s.live).toEqual({ sessions: 0, byPlatform: {}, subjects: 0 });
    expect(s.hours[3]!.durations).toMatchObject({ count: 6, sumMs: 6 * 3 * HOUR_MS - (12 + 15 + 18 + 21 + 24 + 27) * 1000, maxMs: 3 * HOUR_MS - 12_000 });
  });

  it("indexes only session ids of the form the authority makes, alike on every store", async () => {
    const good = issued(T0, "alice", "ios");
    // The same id with a last character whose unused bits are set, and strings that are no session id.
    const odd = { ...issued(T0, "alice", "ios"), sessionId: `${good.sessionId.slice(0, 37)}B` };
    const short = { ...issued(T0, "alice", "ios"), sessionId: "not-a-session-id" };
    await storeOf().appendAudit([good, odd, short], bounds(T0));
    const s = await read(T0, T0, T0 + 1);
    expect(s.hours[0]!.counts.logins).toBe(3);
    expect(s.live).toEqual({ sessions: 1, byPlatform: { ios: 1 }, subjects: 1 });
  });

  it("applies a long batch in order and sweeps only after all of it (Redis: in parts of 64 ops)", async () => {
    // A session opened at T0 (idle 1 min); then a late batch, flushed at +2 min (after its idle expiry): a hundred
    // counted events, then its revocation at +30 s. Ended by the revocation (30 s), not swept at its expiry (60 s).
    const a = issued(T0, "alice", "ios", MIN, DAY);
    await storeOf().appendAudit([a], bounds(T0));
    const between = Array.from({ length: 100 }, (_, i) => ev("token_revoked", T0 + 1000 + i));
    await storeOf().appendAudit(
      [...between, ev("session_revoked", T0 + 30_000, { sessionId: a.sessionId, detail: { sessions: "1" } })],
      bounds(T0 + 2 * MIN),
    );
    const s = await read(T0, T0, T0 + 2 * MIN);
    expect(s.hours[0]!.counts).toMatchObject({ logins: 1, token_revocations: 100 });
    expect(s.hours[0]!.durations).toMatchObject({ count: 1, sumMs: 30_000, maxMs: 30_000 });
    expect(s.live).toEqual({ sessions: 0, byPlatform: {}, subjects: 0 });
  });

  it("sweeps more expired sessions than one batch", async () => {
    const many = Array.from({ length: 1500 }, (_, i) => issued(T0 + i, `u${i % 7}`, i % 2 ? "ios" : "web", MIN, DAY));
    await storeOf().appendAudit(many, bounds(T0 + 1500));
    expect((await read(T0, T0, T0 + 1500)).live).toEqual({ sessions: 1500, byPlatform: { ios: 750, web: 750 }, subjects: 7 });
    const s = await read(T0, T0, T0 + 2 * MIN);
    expect(s.live).toEqual({ sessions: 0, byPlatform: {}, subjects: 0 });
    expect(s.hours[0]!.durations).toMatchObject({ count: 1500, sumMs: 1500 * MIN, maxMs: MIN });
  });
}

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: Stated;
    const stores = storesFrom(make);
    beforeEach(async () => {
      store = await stores.fresh();
    });
    statsContract(() => store);
  });
}
