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
