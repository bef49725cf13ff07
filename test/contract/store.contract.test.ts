/**
 * The contract of a whole Store (every part together, src/domain/store.ts), run against every backend: the
 * lifecycle, and that two stores do not see each other's state in any part. The parts have their own suites:
 * keys, sessions, feed and audit `.contract.test.ts`.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { Store } from "../../src/domain/store.js";
import { BACKENDS } from "./backends.js";
import { RETENTION, T0, makeKey, sessionAt, sessionHelpers, storesFrom } from "./fixtures.js";

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: Store;
    const stores = storesFrom(make);
    const freshStore = () => stores.fresh();
    beforeEach(async () => {
      store = await stores.fresh();
    });
    const { open, expectLive, revokeJti } = sessionHelpers(() => store);

    describe("lifecycle", () => {
      it("ping resolves while the store answers", async () => {
        await expect(store.ping()).resolves.toBeUndefined();
      });
    });

    describe("isolation", () => {
      it("two stores do not see each other's state", async () => {
        const other = await freshStore();
        const key = await makeKey("ES256", T0);
        const s = sessionAt(T0);
        await store.addKey(key, { expectNewest: null });
        await open(s);
        expect(await revokeJti("jti-a")).toBe(true);
        expect(await other.listKeys()).toEqual([]);
        expect(await other.getSession(s.id, T0)).toBeNull();
        expect(await other.listSessions("alice", T0)).toEqual([]);
        expect(await other.tokenState({ subject: "alice", sessionId: s.id, jti: "jti-a" })).toEqual({
          jtiRevoked: false,
          session: null,
        });
        expect((await other.revocations(null, 100)).entries).toEqual([]);
        expect((await other.revokeSubject({ subject: "alice", now: T0, retentionMs: RETENTION, reason: "r" })).length).toBe(0);
        await expectLive(s, T0);
      });
    });
  });
}
