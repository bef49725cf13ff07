/**
 * The memory store's session index holds a subject's active sessions only, as Redis's `P{t}:idx` does: the sessions it
 * revoked (evicted, reused, revoked), which it keeps for the retention, are never walked again by the subject's next
 * Issue. One subject logging in over and over must not make each login slower than the last (nor block the event loop
 * for every other caller).
 */
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/domain/clock.js";
import { MemoryStore } from "../../src/store/memory.js";
import { RETENTION, sessionAt, T0 } from "../contract/fixtures.js";

/** A store clock that counts its readings: the memory store reads it once per entry it looks at. */
class CountingClock extends ManualClock {
  readings = 0;
  override now(): number {
    this.readings++;
    return super.now();
  }
}

describe("memory store: a subject's revoked sessions", () => {
  it("are not walked by its next Issue, however many the retention keeps", async () => {
    const clock = new CountingClock(T0);
    const store = new MemoryStore({ clock });
    const open = async () => {
      const before = clock.readings;
      const { evicted } = await store.createSession(sessionAt(T0, { subject: "looping" }), { maxSessions: 2, now: T0, retentionMs: RETENTION });
      return { evicted, readings: clock.readings - before };
    };
    await open();
    await open();
    const early = await open(); // the first that evicts
    expect(early.evicted).toHaveLength(1);
    for (let i = 0; i < 2_000; i++) await open();
    const late = await open();
    expect(late.evicted).toHaveLength(1);
    // 2 002 of the 2 004 sessions are kept as revoked for the retention; the login after them looks at as many entries
    // as the first that evicted.
    expect(store.size().sessions).toBe(2_004);
    expect(late.readings).toBe(early.readings);
    expect(await store.listSessions("looping", T0)).toHaveLength(2);
  });

  it("are out of the index once revoked one by one or all at once, and their tombstones still answer", async () => {
    const store = new MemoryStore({ clock: new ManualClock(T0) });
    const opts = { maxSessions: 10, now: T0, retentionMs: RETENTION };
    const a = sessionAt(T0, { subject: "bob" });
    const b = sessionAt(T0, { subject: "bob" });
    const c = sessionAt(T0, { subject: "bob" });
    for (const s of [a, b, c]) await store.createSession(s, opts);
    expect(await store.revokeSession({ sessionId: a.id, now: T0, retentionMs: RETENTION, reason: "test" })).toBe(true);
    expect((await store.listSessions("bob", T0)).map((s) => s.id).sort()).toEqual([b.id, c.id].sort());
    expect((await store.revokeSubject({ subject: "bob", now: T0, retentionMs: RETENTION, reason: "test" })).sort()).toEqual([b.id, c.id].sort());
    expect(await store.listSessions("bob", T0)).toEqual([]);
    // Revoked, not forgotten: a token of each still reads its session as revoked, and a new login opens afresh.
    for (const s of [a, b, c]) {
      const state = await store.tokenState({ subject: "bob", sessionId: s.id, jti: "x" });
      expect(state.session?.status).toBe("revoked");
    }
    await store.createSession(sessionAt(T0, { subject: "bob" }), opts);
    expect(await store.listSessions("bob", T0)).toHaveLength(1);
  });
});

describe("memory store: its most sessions (TESSERA_MEMORY_MAX_SESSIONS)", () => {
  it("refuses a session past the bound with RESOURCE_EXHAUSTED, drops nothing, and opens again once some have expired", async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryStore({ clock, maxSessions: 5 });
    const opts = { maxSessions: 2, now: T0, retentionMs: RETENTION };
    // One subject over and over: two live sessions, the rest revoked (evicted) and kept for the retention.
    const opened = [];
    for (let i = 0; i < 5; i++) {
      const s = sessionAt(T0, { subject: "looping" });
      await store.createSession(s, opts);
      opened.push(s);
    }
    const refused = store.createSession(sessionAt(T0, { subject: "another" }), opts);
    await expect(refused).rejects.toMatchObject({ code: "resource_exhausted", message: expect.stringContaining("TESSERA_MEMORY_MAX_SESSIONS") });
    // Nothing held was dropped to make room: the evicted stay revoked, the live stay live, the refused one is not there.
    expect(store.size().sessions).toBe(5);
    const states = await Promise.all(opened.map((s) => store.tokenState({ subject: "looping", sessionId: s.id, jti: "x" })));
    expect(states.map((st) => st.session?.status).sort()).toEqual(["active", "active", "revoked", "revoked", "revoked"]);
    expect(await store.listSessions("another", T0)).toEqual([]);
    // Revocations still go through when full.
    const live = opened.filter((_, i) => states[i]!.session?.status === "active");
    expect(await store.revokeSession({ sessionId: live[0]!.id, now: T0, retentionMs: RETENTION, reason: "test" })).toBe(true);

    // Once the revoked ones' retention is over, the store frees them and opens again.
    clock.advance(RETENTION + 1);
    const later = clock.now();
    await store.createSession(sessionAt(later, { subject: "another" }), { ...opts, now: later });
    expect(store.size().sessions).toBeLessThan(5);
    expect(await store.listSessions("another", later)).toHaveLength(1);
  });
});
