/**
 * The KeyStore contract (src/domain/store.ts), run against every backend: keys round-trip oldest first, and
 * onlyIfAlgAbsent lets exactly one key of an algorithm in, also under concurrency.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { KeyStore } from "../../src/domain/store.js";
import { BACKENDS } from "./backends.js";
import { T0, esEsEd, makeKey, storesFrom } from "./fixtures.js";

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: KeyStore;
    const stores = storesFrom(make);
    beforeEach(async () => {
      store = await stores.fresh();
    });

    describe("keys", () => {
      it("addKey returns the keys after the call; listKeys round-trips every field, oldest first", async () => {
        const [k1, k2, k3] = await esEsEd();
        expect(await store.listKeys()).toEqual([]);
        expect(await store.addKey(k1, false)).toEqual([k1]);
        expect(await store.addKey(k2, false)).toEqual([k1, k2]);
        expect(await store.addKey(k3, false)).toEqual([k1, k2, k3]);
        expect(await store.listKeys()).toEqual([k1, k2, k3]);
      });

      it("onlyIfAlgAbsent adds no second key of a present algorithm but adds one of another", async () => {
        const [es1, es2, ed] = await esEsEd();
        expect(await store.addKey(es1, true)).toEqual([es1]);
        expect(await store.addKey(es2, true)).toEqual([es1]);
        expect(await store.addKey(ed, true)).toEqual([es1, ed]);
        expect(await store.listKeys()).toEqual([es1, ed]);
      });

      it("concurrent addKey(onlyIfAlgAbsent) of two keys of one algorithm leaves exactly one", async () => {
        const [a, b] = await Promise.all([makeKey("ES256", T0), makeKey("ES256", T0)]);
        const answers = await Promise.all([store.addKey(a, true), store.addKey(b, true)]);
        const keys = await store.listKeys();
        expect(keys).toHaveLength(1);
        expect([a.kid, b.kid]).toContain(keys[0]!.kid);
        for (const answer of answers) expect(answer).toEqual(keys);
      });
    });
  });
}
