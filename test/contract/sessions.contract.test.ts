/**
 * The SessionStore contract (src/domain/store.ts; rules in src/domain/sessions.ts), run against every backend:
 * sessions round-trip and are live until their idle or absolute expiry, eviction, rotation with reuse detection and
 * the grace window (also under concurrency), tokenState, and every revocation, each seen in the revocation feed it
 * appends to.
 */
import { randomUUID } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { newSessionId } from "../../src/domain/ids.js";
import type { RevocationFeed, RotateInput, SessionRecord, SessionStore } from "../../src/domain/store.js";
import { BACKENDS } from "./backends.js";
import {
  GRACE,
  HOUR,
  IDLE,
  MIN,
  OTHER_FP,
  RETENTION,
  SEC,
  T0,
  countOutcomes,
  rotation,
  sessionAt,
  sessionHelpers,
  storesFrom,
} from "./fixtures.js";

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: SessionStore & RevocationFeed;
    const stores = storesFrom(make);
    beforeEach(async () => {
      store = await stores.fresh();
    });
    const {
      open,
      opened,
      openMany,
      rotated,
      refreshRace,
      stateOf,
      expectRevoked,
      expectLive,
      liveIds,
      feed,
      sessionEvent,
      tokenEvent,
      subjectEvent,
      revokeJti,
    } = sessionHelpers(() => store);

    describe("sessions", () => {
      it("createSession then getSession and listSessions round-trip every field", async () => {
        const s = await opened({
          client: {
            deviceId: "device-7",
            userAgent: 'Mozilla/5.0 (X11; "Ünïcødé" 📱) \\ end/',
            ip: "2001:db8::1",
            platform: "android",
          },
        });
        expect(await store.getSession(s.id, T0)).toEqual(s);
        expect(await store.listSessions("alice", T0)).toEqual([s]);
      });

      it("listSessions lists only live sessions of the subject, most recently used first", async () => {
        const [a, b, c] = await openMany([T0, T0 + 2, T0 + 1]);
        const idled = sessionAt(T0, { idleExpiresAt: T0 + 30 * SEC });
        const revoked = sessionAt(T0 + 3);
        const bobs = sessionAt(T0 + 4, { subject: "bob" });
        for (const s of [idled, revoked, bobs]) await open(s);
        expect(await store.revokeSession({ sessionId: revoked.id, now: T0 + 5, retentionMs: RETENTION, reason: "x" }))
          .toBe(true);
        expect(await liveIds("alice", T0 + MIN)).toEqual([b!.id, c!.id, a!.id]);
        expect(await liveIds("bob", T0 + MIN)).toEqual([bobs.id]);
        expect(await store.listSessions("nobody", T0)).toEqual([]);
      });

      it("getSession of an unknown id, or of a string that is no session id, is null", async () => {
        const s = await opened();
        expect(await store.getSession(newSessionId("alice"), T0)).toBeNull();
        for (const id of [randomUUID(), "", "x", `${s.id}x`, s.id.slice(0, -1), `${s.id.slice(0, -1)}.`]) {
          expect(await store.getSession(id, T0), id).toBeNull();
        }
        expect(await store.getSession(s.id, T0)).toEqual(s);
      });

      it("createSession refuses an id not minted for the session's subject, and stores nothing", async () => {
        for (const id of [newSessionId("bob"), randomUUID(), "", "s-1"]) {
          await expect(store.createSession(sessionAt(T0, { id }), { maxSessions: 5, now: T0, retentionMs: RETENTION }))
            .rejects.toThrow(/not minted for its subject/);
        }
        expect(await store.listSessions("alice", T0)).toEqual([]);
      });

      it("a session is not live from its idle expiry on", async () => {
        const s = await opened();
        expect(await store.getSession(s.id, T0 + IDLE - 1)).toEqual(s);
        expect(await store.getSession(s.id, T0 + IDLE)).toBeNull();
        expect(await store.listSessions("alice", T0 + IDLE)).toEqual([]);
      });

      it("a session is not live from its absolute expiry on, whatever its idle expiry says", async () => {
        const s = await opened({ idleExpiresAt: T0 + 2 * HOUR, expiresAt: T0 + HOUR });
        expect(await store.getSession(s.id, T0 + HOUR - 1)).toEqual(s);
        expect(await store.getSession(s.id, T0 + HOUR)).toBeNull();
        expect(await store.listSessions("alice", T0 + HOUR)).toEqual([]);
      });
    });

    describe("eviction", () => {
      it("past maxSessions the least recently used session is evicted, revoked and returned", async () => {
        const [s1, s2, s3] = await openMany([T0, T0 + 1, T0 + 2], "alice", 3);
        const s4 = sessionAt(T0 + 3);
        expect(await open(s4, 3)).toEqual([s1!.id]);
        await expectRevoked(s1!, T0 + 3);
        for (const s of [s2!, s3!, s4]) await expectLive(s, T0 + 3);
        expect(await liveIds("alice", T0 + 3)).toEqual([s4.id, s3!.id, s2!.id]);
        expect(await feed()).toEqual([sessionEvent(s1!, T0 + 3)]);
      });

      it("of sessions last used in the same millisecond, the smallest id goes first; listing ties by opening, then id", async () => {
        const tied = await openMany([T0, T0, T0, T0], "alice", 4);
        const older = sessionAt(T0 - 10, { lastUsedAt: T0 }); // opened earlier, last used at the same instant
        const byId = [...tied.map((s) => s!.id)].sort();
        expect(await open(older, 5)).toEqual([]);
        expect(await liveIds("alice", T0)).toEqual([older.id, ...byId]);
        expect(await open(sessionAt(T0 + 1), 5)).toEqual([[...byId, older.id].sort()[0]]);
      });

      it("rotating a session makes it the most recently used, which changes who is evicted next", async () => {
        const [s1, s2, s3] = await openMany([T0, T0 + 1, T0 + 2], "alice", 3);
        await rotated(s1!, T0 + 10);
        expect(await open(sessionAt(T0 + 20), 3)).toEqual([s2!.id]);
        expect(await open(sessionAt(T0 + 30), 3)).toEqual([s3!.id]);
        expect(await open(sessionAt(T0 + 40), 3)).toEqual([s1!.id]);
      });
    });

    describe("rotateRefresh", () => {
      it("rotates: new current jti, last used now, idle expiry pushed out", async () => {
        const s = await opened();
        const now = T0 + 5 * MIN;
        const input = rotation(s, s.currentJti, now);
        const want = { ...s, currentJti: input.nextJti, lastUsedAt: now, idleExpiresAt: now + IDLE };
        expect(await store.rotateRefresh(input)).toEqual({ outcome: "rotated", session: want });
        expect(await store.getSession(s.id, now)).toEqual(want);
        expect((await stateOf(s, input.nextJti)).session?.currentJti).toBe(input.nextJti);
      });

      it("caps the new idle expiry at the absolute expiry", async () => {
        const s = await opened({ expiresAt: T0 + 90 * MIN });
        const after = await rotated(s, T0 + 45 * MIN);
        expect(after.idleExpiresAt).toBe(s.expiresAt);
        expect(await store.getSession(s.id, T0 + 90 * MIN - 1)).toEqual(after);
      });

      it("a retry of the previous jti by the same client inside the grace window replays the pair", async () => {
        const s = await opened();
        const first = rotation(s, s.currentJti, T0 + MIN);
        await store.rotateRefresh(first);
        const retry = await store.rotateRefresh(rotation(s, s.currentJti, T0 + MIN + GRACE - 1));
        expect(retry.outcome).toBe("replayed");
        if (retry.outcome !== "replayed") return;
        expect(retry.pair).toEqual(first.nextPair);
        expect(retry.session.currentJti).toBe(first.nextJti);
        expect((await store.getSession(s.id, T0 + 2 * MIN))?.currentJti).toBe(first.nextJti);
        expect(await feed()).toEqual([]);
        // Nothing rotated or revoked: the winner's token is still the current one.
        await rotated({ ...s, currentJti: first.nextJti }, T0 + 2 * MIN);
      });

      it.each<[string, Partial<RotateInput> & { now: number }]>([
        ["at exactly graceMs after the rotation", { now: T0 + MIN + GRACE }],
        ["from another client inside the grace window", { now: T0 + MIN + 1, clientFingerprint: OTHER_FP }],
        ["with graceMs = 0", { now: T0 + MIN, graceMs: 0 }],
      ])("a retry of the previous jti %s is reuse and revokes the session", async (_, over) => {
        const s = await opened();
        const first = rotation(s, s.currentJti, T0 + MIN, { graceMs: over.graceMs ?? GRACE });
        await store.rotateRefresh(first);
        expect(await store.rotateRefresh(rotation(s, s.currentJti, over.now, over))).toEqual({ outcome: "reused" });
        const current = { ...s, currentJti: first.nextJti };
        await expectRevoked(current, over.now);
        expect(await store.rotateRefresh(rotation(current, current.currentJti, over.now + 1))).toEqual({
          outcome: "ended",
          why: "revoked",
        });
        // The token of the revoked session appends the session's entry again (a retry's append makes good a lost one).
        expect(await feed()).toEqual([
          sessionEvent(s, over.now),
          sessionEvent(s, over.now + 1, "revoked session presented"),
        ]);
      });

      it("a jti older than the previous one is reuse", async () => {
        const s = await opened();
        const s1 = await rotated(s, T0 + 1);
        await rotated(s1, T0 + 2);
        expect(await store.rotateRefresh(rotation(s, s.currentJti, T0 + 3))).toEqual({ outcome: "reused" });
        await expectRevoked(s, T0 + 3);
      });

      it("an unknown session or another subject's session has ended (missing) and nothing changes", async () => {
        const s = await opened();
        const ended = { outcome: "ended", why: "missing" };
        const unknown = rotation(s, s.currentJti, T0 + 1, { sessionId: randomUUID() });
        expect(await store.rotateRefresh(unknown)).toEqual(ended);
        expect(await store.rotateRefresh(rotation(s, s.currentJti, T0 + 1, { subject: "mallory" }))).toEqual(ended);
        expect(await store.getSession(s.id, T0 + 1)).toEqual(s);
        expect(await feed()).toEqual([]);
      });

      it.each<[string, Partial<SessionRecord>, number]>([
        ["idle", {}, T0 + IDLE],
        ["absolute", { idleExpiresAt: T0 + 2 * HOUR, expiresAt: T0 + HOUR }, T0 + HOUR],
      ])("a session past its %s expiry has ended", async (_, over, now) => {
        const s = await opened(over);
        expect((await store.rotateRefresh(rotation(s, s.currentJti, now))).outcome).toBe("ended");
        expect(await feed()).toEqual([]);
      });

      it("20 concurrent refreshes of one token, graceMs > 0: one rotates, the rest replay its pair", async () => {
        const s = await opened();
        const { inputs, results } = await refreshRace(s);
        expect(countOutcomes(results)).toEqual({ rotated: 1, replayed: 19 });
        const winner = inputs[results.findIndex((r) => r.outcome === "rotated")]!;
        for (const r of results) {
          if (r.outcome === "replayed") expect(r.pair).toEqual(winner.nextPair);
        }
        expect((await store.getSession(s.id, T0 + MIN))?.currentJti).toBe(winner.nextJti);
      });

      it("20 concurrent refreshes of one token, graceMs = 0: one rotates, one is reuse, the rest end", async () => {
        // "reused" means "this call revoked the session", so only one call can get it; the later ones see a revoked
        // session and end with why "revoked".
        const s = await opened();
        const { results } = await refreshRace(s, { graceMs: 0 });
        expect(countOutcomes(results)).toEqual({ rotated: 1, reused: 1, "ended:revoked": 18 });
        await expectRevoked(s, T0 + MIN);
        // One entry from the reuse, one more from each call that found the session revoked.
        const entries = await feed();
        expect(entries).toEqual(Array.from({ length: 19 }, () => sessionEvent(s, T0 + MIN)));
        expect(entries.filter((e) => e.reason !== "revoked session presented")).toHaveLength(1);
      });
    });

    describe("tokenState", () => {
      it("reports the session's status, expiries and current jti", async () => {
        const s = await opened();
        expect(await stateOf(s)).toEqual({
          jtiRevoked: false,
          session: {
            status: "active",
            idleExpiresAt: s.idleExpiresAt,
            expiresAt: s.expiresAt,
            currentJti: s.currentJti,
          },
        });
        const after = await rotated(s, T0 + 1);
        expect((await stateOf(s)).session?.currentJti).toBe(after.currentJti);
      });

      it("reads a session anew once it changes, and no caller can change what the next read sees", async () => {
        const s = await opened();
        const first = await stateOf(s);
        expect((await stateOf(s)).session).toEqual(first.session);
        // A caller that writes to its answer (a frozen one throws) leaves the stored session as it is.
        try {
          (first.session as { currentJti: string }).currentJti = "changed";
        } catch {
          // frozen
        }
        expect((await stateOf(s)).session?.currentJti).toBe(s.currentJti);
        expect(await store.revokeSession({ sessionId: s.id, now: T0 + 1, retentionMs: RETENTION, reason: "x" })).toBe(true);
        expect((await stateOf(s)).session?.status).toBe("revoked");
        // Another subject's read of the same session, after this one's: still no session of that subject.
        expect((await store.tokenState({ subject: `${s.subject}-other`, sessionId: s.id, jti: "j" })).session).toBeNull();
      });

      it("has no session for an unknown session id, well-formed or not", async () => {
        for (const sessionId of [newSessionId("alice"), randomUUID(), ""]) {
          expect(await store.tokenState({ subject: "alice", sessionId, jti: "j" })).toEqual({ jtiRevoked: false, session: null });
        }
      });

      it("has no session when the session is another subject's", async () => {
        const s = await opened();
        expect((await store.tokenState({ subject: s.subject, sessionId: s.id, jti: "j" })).session).not.toBeNull();
        expect((await store.tokenState({ subject: `${s.subject}-other`, sessionId: s.id, jti: "j" })).session).toBeNull();
      });

      it("reports jtiRevoked once the jti is revoked, for that jti only", async () => {
        const s = await opened();
        expect((await stateOf(s, "access-1")).jtiRevoked).toBe(false);
        expect(await revokeJti("access-1")).toBe(true);
        expect((await stateOf(s, "access-1")).jtiRevoked).toBe(true);
        expect((await stateOf(s, "access-2")).jtiRevoked).toBe(false);
        expect((await stateOf(s, "access-1")).session?.status).toBe("active");
      });

      it("keeps a revoked jti to its subject: the same jti of another subject is not revoked", async () => {
        const s = await opened(); // alice's
        expect(await revokeJti("shared-jti")).toBe(true); // alice's
        const bob = { subject: "bob", sessionId: newSessionId("bob"), jti: "shared-jti" };
        expect((await store.tokenState(bob)).jtiRevoked).toBe(false);
        expect((await stateOf(s, "shared-jti")).jtiRevoked).toBe(true);
        expect(await store.revokeToken({ subject: "bob", jti: "shared-jti", expiresAt: T0 + HOUR, now: T0, reason: "x" })).toBe(true);
        expect((await store.tokenState(bob)).jtiRevoked).toBe(true);
      });
    });

    describe("revokeToken", () => {
      it("is true the first time and false the second, which appends the entry again", async () => {
        expect(await revokeJti("j1", T0, "first")).toBe(true);
        expect(await revokeJti("j1", T0 + 1, "second")).toBe(false);
        expect(await feed()).toEqual([tokenEvent("j1", T0, "first"), tokenEvent("j1", T0 + 1, "second")]);
      });

      it("is false for a token already expired, and records nothing", async () => {
        const q = { subject: "alice", now: T0, reason: "late" };
        expect(await store.revokeToken({ ...q, jti: "at-now", expiresAt: T0 })).toBe(false);
        expect(await store.revokeToken({ ...q, jti: "before", expiresAt: T0 - 1 })).toBe(false);
        expect(
          (await store.tokenState({ subject: "alice", sessionId: randomUUID(), jti: "at-now" })).jtiRevoked,
        ).toBe(false);
        expect(await feed()).toEqual([]);
      });
    });

    describe("revokeSession", () => {
      function revoke(s: SessionRecord, now: number, subject: string | undefined = s.subject) {
        return store.revokeSession({ sessionId: s.id, subject, now, retentionMs: RETENTION, reason: "user logout" });
      }

      it("is true and revokes, then false (idempotent) but appends the entry again", async () => {
        const s = await opened();
        expect(await revoke(s, T0 + 1)).toBe(true);
        await expectRevoked(s, T0 + 1);
        expect(await revoke(s, T0 + 2)).toBe(false);
        await expectRevoked(s, T0 + 2);
        expect(await feed()).toEqual([sessionEvent(s, T0 + 1, "user logout"), sessionEvent(s, T0 + 2, "user logout")]);
      });

      it("is false with another subject, and the session stays live", async () => {
        const s = await opened();
        expect(await revoke(s, T0 + 1, "mallory")).toBe(false);
        await expectLive(s, T0 + 1);
        expect(await feed()).toEqual([]);
      });

      it("works without a subject (the store looks the session up)", async () => {
        const s = await opened();
        expect(await revoke(s, T0 + 1, undefined)).toBe(true);
        await expectRevoked(s, T0 + 1);
        expect(await feed()).toEqual([sessionEvent(s, T0 + 1, "user logout")]);
      });

      it("is false for an unknown or expired session, or a string that is no session id", async () => {
        const s = await opened();
        expect(await revoke(sessionAt(T0), T0 + 1)).toBe(false);
        expect(await revoke(s, T0 + IDLE)).toBe(false);
        for (const sessionId of [randomUUID(), "", `${s.id}x`]) {
          expect(await store.revokeSession({ sessionId, now: T0 + 1, retentionMs: RETENTION, reason: "r" })).toBe(false);
        }
        expect(await feed()).toEqual([]);
        await expectLive(s, T0 + 1);
      });
    });

    describe("revokeSubject", () => {
      it("revokes every live session of the subject, counts them, and appends one subject entry", async () => {
        const now = T0 + MIN;
        const alices = await openMany([T0, T0 + 1, T0 + 2]);
        const gone = sessionAt(T0 + 3);
        await open(gone);
        await store.revokeSession({ sessionId: gone.id, now: T0 + 4, retentionMs: RETENTION, reason: "x" });
        const [bobs] = await openMany([T0], "bob");
        const before = (await feed()).length;
        const q = { subject: "alice", now, retentionMs: RETENTION, reason: "logout everywhere" };
        const ended = await store.revokeSubject(q);
        expect(ended.length).toBe(3);
        for (const s of alices) await expectRevoked(s, now);
        expect(await store.listSessions("alice", now)).toEqual([]);
        await expectLive(bobs!, now);
        // Only the sessions this call ended (not the one revoked before), least recently used first.
        expect((await feed()).slice(before)).toEqual([subjectEvent(alices, now, "logout everywhere")]);
        // It returns their ids, as the entry lists them.
        expect(ended).toEqual(alices.map((s) => s.id));
      });

      it("a session opened afterwards in the same millisecond lives", async () => {
        await openMany([T0]);
        const q = { subject: "alice", now: T0 + 1, retentionMs: RETENTION, reason: "r" };
        expect((await store.revokeSubject(q)).length).toBe(1);
        const s = sessionAt(T0 + 1);
        await open(s);
        await expectLive(s, T0 + 1);
        expect(await liveIds("alice", T0 + 1)).toEqual([s.id]);
        await rotated(s, T0 + 2);
      });
    });
  });
}
