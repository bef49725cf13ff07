/**
 * The RevocationFeed contract (src/domain/store.ts), run against every backend: every kind of revocation a
 * SessionWriter makes is recorded in order, and the feed pages by cursor without duplicates or gaps.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { RevocationEvent, RevocationFeed, SessionStore } from "../../src/domain/store.js";
import { BACKENDS } from "./backends.js";
import { RETENTION, T0, rotation, sessionAt, sessionHelpers, storesFrom } from "./fixtures.js";

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: SessionStore & RevocationFeed;
    const stores = storesFrom(make);
    beforeEach(async () => {
      store = await stores.fresh();
    });
    const { open, openMany, rotated, feed, sessionEvent, revokeJti } = sessionHelpers(() => store);

    describe("revocation feed", () => {
      it("records every kind of revocation in order with kind, subject, target, reason and at", async () => {
        const [evictee, reused, revoked] = await openMany([T0, T0 + 1, T0 + 2], "alice", 3);
        expect(await revokeJti("jti-x", T0 + 10, "token reason")).toBe(true);
        const q = { sessionId: revoked!.id, now: T0 + 20, retentionMs: RETENTION, reason: "session reason" };
        expect(await store.revokeSession(q)).toBe(true);
        expect(await open(sessionAt(T0 + 30), 2)).toEqual([evictee!.id]);
        await rotated(reused!, T0 + 40, { graceMs: 0 });
        await store.rotateRefresh(rotation(reused!, reused!.currentJti, T0 + 50, { graceMs: 0 }));
        await store.revokeSubject({ subject: "alice", now: T0 + 60, retentionMs: RETENTION, reason: "subject reason" });
        expect(await feed()).toEqual([
          { kind: "token", subject: "alice", target: "jti-x", at: T0 + 10, reason: "token reason" },
          sessionEvent(revoked!, T0 + 20, "session reason"),
          sessionEvent(evictee!, T0 + 30),
          sessionEvent(reused!, T0 + 50),
          { kind: "subject", subject: "alice", target: "", at: T0 + 60, reason: "subject reason" },
        ]);
      });

      it("pages by cursor: in order, limit respected, nothing twice, nothing left out", async () => {
        const jtis = Array.from({ length: 7 }, (_, i) => `jti-${i}`);
        for (const [i, jti] of jtis.entries()) expect(await revokeJti(jti, T0 + i)).toBe(true);
        const all = await store.revocations(null, 100);
        expect(all.map((e) => e.target)).toEqual(jtis);
        expect(await store.revocations(null, 3)).toEqual(all.slice(0, 3));
        const pages: RevocationEvent[][] = [];
        let cursor: string | null = null;
        // Bounded, so a cursor that does not advance fails the test instead of hanging it.
        for (let i = 0; i < 5; i++) {
          const page: RevocationEvent[] = await store.revocations(cursor, 3);
          if (page.length === 0) break;
          pages.push(page);
          cursor = page[page.length - 1]!.id;
        }
        expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
        expect(pages.flat()).toEqual(all);
        expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
        expect(await store.revocations(all[4]!.id, 100)).toEqual(all.slice(5));
      });

      it("answers nothing, and throws nothing, for a cursor that is not one, a limit below 1, or a cursor past the end", async () => {
        for (const [i, jti] of ["a", "b"].entries()) expect(await revokeJti(jti, T0 + i)).toBe(true);
        const all = await store.revocations(null, 100);
        expect(all).toHaveLength(2);
        for (const cursor of ["not-a-cursor", "-1", "1.5", "9".repeat(40)]) expect([cursor, await store.revocations(cursor, 10)]).toEqual([cursor, []]);
        expect(await store.revocations(null, 0)).toEqual([]);
        expect(await store.revocations(null, -3)).toEqual([]);
        expect(await store.revocations(all[1]!.id, 10)).toEqual([]);
      });
    });
  });
}
