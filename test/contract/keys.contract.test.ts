/**
 * The KeyStore contract (src/domain/store.ts), run against every backend: keys round-trip in the order added; addKey is
 * a compare-and-set on the newest key (exactly one of several concurrent adds wins, also into an empty store) and drops
 * the keys it is told to; revokeKey marks once, appends a "key" entry to the revocation feed every time;
 * replacePrivateKey is a compare-and-set of one key's private part that changes nothing else; a key without a private
 * part (an HS256 key, a file key's revocation record) round-trips too.
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { SealedPrivateKey } from "../../src/domain/key-encryption.js";
import type { KeyStore, RevocationFeed, StoredKey } from "../../src/domain/store.js";
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

      it("replacePrivateKey replaces one key's private part while it is the one read; order, fields and revocation mark stay", async () => {
        const [a, b, c] = await esEsEd();
        await store.addKey(a, { expectNewest: null });
        await store.addKey(b, { expectNewest: a.kid });
        await store.revokeKey({ kid: a.kid, at: T0 + 5, until: T0 + HOUR, reason: "stolen" });
        const sealed = (iv: string): SealedPrivateKey => ({ enc: "A256GCM", kek: "0123456789abcdef", iv, ct: "Y3Q", tag: "dGFn" });
        // The same JSON value with its members in another order is the value read.
        const reordered = Object.fromEntries(Object.entries(a.privateJwk!).reverse());
        expect(await store.replacePrivateKey({ kid: a.kid, from: reordered, to: sealed("aXYx") })).toBe(true);
        expect(await store.listKeys()).toEqual([{ ...a, privateJwk: sealed("aXYx"), revokedAt: T0 + 5 }, b]);
        // No longer the value read: nothing changes.
        expect(await store.replacePrivateKey({ kid: a.kid, from: a.privateJwk!, to: sealed("aXYy") })).toBe(false);
        expect(await store.replacePrivateKey({ kid: "unknown", from: a.privateJwk!, to: sealed("aXYy") })).toBe(false);
        expect((await store.listKeys())[0]!.privateJwk).toEqual(sealed("aXYx"));
        // Of several replacing the same value at once, exactly one does.
        const answers = await Promise.all(["MQ", "Mg", "Mw", "NA"].map((iv) => store.replacePrivateKey({ kid: b.kid, from: b.privateJwk!, to: sealed(iv) })));
        expect(answers.filter(Boolean)).toHaveLength(1);
        // The order is kept: the newest key is still b.
        expect((await store.addKey(c, { expectNewest: b.kid })).keys.map((k) => k.kid)).toEqual([a.kid, b.kid, c.kid]);
      });

      it("keeps a key without a private part (an HS256 key, a file key's revocation record) as it was given", async () => {
        const [a] = await esEsEd();
        const { privateJwk: _private, ...publicOnly } = a;
        const hs: StoredKey = { kid: "hs-1", alg: "HS256", createdAt: T0, activateAt: T0, publicJwk: { kty: "oct", kid: "hs-1", alg: "HS256", use: "sig" } };
        await store.addKey(publicOnly, { expectNewest: null });
        await store.addKey(hs, { expectNewest: a.kid });
        expect(await store.revokeKey({ kid: a.kid, at: T0 + 5, until: T0 + HOUR, reason: "stolen" })).toBe(true);
        expect(await store.listKeys()).toEqual([{ ...publicOnly, revokedAt: T0 + 5 }, hs]);
      });
    });
  });
}
