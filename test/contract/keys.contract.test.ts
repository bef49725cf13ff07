/**
 * The KeyStore contract (src/domain/store.ts), run against every backend: keys round-trip in the order added; addKey is
 * a compare-and-set on the newest key (exactly one of several concurrent adds wins, also into an empty store) and drops
 * the keys it is told to; revokeKey marks once, appends a "key" entry to the revocation feed every time.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { KeyStore, RevocationFeed } from "../../src/domain/store.js";
import { BACKENDS } from "./backends.js";
import { HOUR, T0, esEsEd, makeKey, storesFrom } from "./fixtures.js";

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: KeyStore & RevocationFeed;
    const stores = storesFrom(make);
    beforeEach(async () => {
      store = await stores.fresh();
    });

    describe("keys", () => {
      it("addKey returns the keys after the call; listKeys round-trips every field, in the order added", async () => {
        const [k1, k2, k3] = await esEsEd();
        k3.activateAt = T0 + HOUR;
        expect(await store.listKeys()).toEqual([]);
        expect(await store.addKey(k1, { expectNewest: null })).toEqual({ added: true, keys: [k1] });
        expect(await store.addKey(k2, { expectNewest: k1.kid })).toEqual({ added: true, keys: [k1, k2] });
        expect(await store.addKey(k3, { expectNewest: k2.kid })).toEqual({ added: true, keys: [k1, k2, k3] });
        expect(await store.listKeys()).toEqual([k1, k2, k3]);
      });

      it("adds only when the newest key is the expected one (null: an empty store), and never a kid twice", async () => {
        const [a, b, c] = await esEsEd();
        expect(await store.addKey(a, { expectNewest: "someone-else" })).toEqual({ added: false, keys: [] });
        expect((await store.addKey(a, { expectNewest: null })).added).toBe(true);
        expect(await store.addKey(b, { expectNewest: null })).toEqual({ added: false, keys: [a] });
        expect((await store.addKey(b, { expectNewest: a.kid })).added).toBe(true);
        expect(await store.addKey(c, { expectNewest: a.kid })).toEqual({ added: false, keys: [a, b] });
        expect(await store.addKey(b, { expectNewest: b.kid })).toEqual({ added: false, keys: [a, b] });
      });

      it("of concurrent adds expecting the same newest key, exactly one wins (an empty store too)", async () => {
        for (const expectNewest of [null, "first"]) {
          const fresh = await stores.fresh();
          if (expectNewest !== null) await fresh.addKey({ ...(await makeKey("ES256", T0)), kid: "first" }, { expectNewest: null });
          const racers = await Promise.all([1, 2, 3, 4].map((i) => makeKey("ES256", T0 + i)));
          const answers = await Promise.all(racers.map((k) => fresh.addKey(k, { expectNewest })));
          expect(answers.filter((a) => a.added)).toHaveLength(1);
          const keys = await fresh.listKeys();
          expect(keys).toHaveLength(expectNewest === null ? 1 : 2);
          expect(keys.at(-1)!.kid).toBe(racers[answers.findIndex((a) => a.added)]!.kid);
        }
      });

      it("drops the keys named, with their revocation marks, only when it adds", async () => {
        const [a, b, c] = await esEsEd();
        await store.addKey(a, { expectNewest: null });
        await store.addKey(b, { expectNewest: a.kid });
        expect(await store.revokeKey({ kid: a.kid, at: T0, until: T0 + HOUR, reason: "stolen" })).toBe(true);
        expect((await store.addKey(c, { expectNewest: "nobody", drop: [a.kid] })).keys.map((k) => k.kid)).toEqual([a.kid, b.kid]);
        expect(await store.addKey(c, { expectNewest: b.kid, drop: [a.kid, "unknown"] })).toEqual({ added: true, keys: [b, c] });
        // Added again later, the same kid would carry no old revocation mark.
        const again = await store.addKey(a, { expectNewest: c.kid });
        expect(again.keys.at(-1)).toEqual(a);
      });

      it("revokeKey marks a kept key once, appends a key entry to the feed every time, and ignores an unknown kid", async () => {
        const [a, b] = await esEsEd();
        await store.addKey(a, { expectNewest: null });
        await store.addKey(b, { expectNewest: a.kid });
        expect(await store.revokeKey({ kid: a.kid, at: T0 + 5, until: T0 + HOUR, reason: "stolen" })).toBe(true);
        expect(await store.revokeKey({ kid: a.kid, at: T0 + 9, until: T0 + HOUR, reason: "stolen" })).toBe(false);
        expect(await store.revokeKey({ kid: "unknown", at: T0 + 9, until: T0 + HOUR, reason: "x" })).toBe(false);
        expect(await store.listKeys()).toEqual([{ ...a, revokedAt: T0 + 5 }, b]);
        const entries = (await store.revocations(null, 10)).entries.map(({ id: _id, ...e }) => e);
        const entry = (at: number) => ({ kind: "key", subject: "", target: a.kid, sessions: [], at, until: T0 + HOUR, reason: "stolen" });
        expect(entries).toEqual([entry(T0 + 5), entry(T0 + 9)]);
      });
    });
  });
}
