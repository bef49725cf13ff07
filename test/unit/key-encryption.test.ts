/**
 * Signing keys at rest (src/domain/key-encryption.ts, KeyRing with `encryption`): private keys go to the store sealed
 * with AES-256-GCM under the KEK, bound to their kid; the KeyRing opens them when it loads them; at start it seals again
 * every key stored in plain or under the previous KEK; a key no KEK given opens stops the start, naming the variable,
 * and no new key is made in its place.
 */
import { randomBytes } from "node:crypto";
import { decodeProtectedHeader, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/domain/clock.js";
import { KeyEncryption, KeyUnreadableError, isSealed, kekId, openPrivateKey, type SealedPrivateKey } from "../../src/domain/key-encryption.js";
import { KeyRing, newKey, type KeyRingOptions } from "../../src/domain/keys.js";
import type { StoredKey } from "../../src/domain/store.js";
import { TokenCodec } from "../../src/domain/tokens.js";
import { MemoryStore } from "../../src/store/memory.js";

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const OLD = randomBytes(32);
const NEW = randomBytes(32);

async function ring(store: MemoryStore, options: KeyRingOptions = {}, clock = new ManualClock(T0)) {
  const keys = new KeyRing(store, "ES256", clock, 1_000, undefined, options);
  await keys.init();
  const codec = new TokenCodec(keys, { issuer: "https://t", clockSkewMs: 0, maxTokenLength: 8192 });
  const grant = { audience: ["api"], scopes: [], claims: {}, accessTtlMs: 60_000 };
  const sign = () => codec.signAccess({ subject: "alice", sessionId: "s", jti: "j", grant, now: clock.now(), expiresAt: clock.now() + 60_000 });
  const verifies = async (token: string) => (await codec.verify(token, "access", clock.now())).ok;
  return { keys, codec, sign, verifies, clock };
}

const sealedKeys = async (store: MemoryStore) => (await store.listKeys()).map((k) => k.privateJwk as SealedPrivateKey);

describe("KeyEncryption", () => {
  it("seals a private JWK with AES-256-GCM, a fresh 96-bit IV each time, naming its KEK; opens it back", async () => {
    const enc = new KeyEncryption(NEW);
    const key = await newKey("ES256", new ManualClock(T0));
    const jwk = key.privateJwk as JWK;
    const a = enc.seal(key.kid, jwk);
    const b = enc.seal(key.kid, jwk);
    expect(Object.keys(a).sort()).toEqual(["ct", "enc", "iv", "kek", "tag"]);
    expect(a).toMatchObject({ enc: "A256GCM", kek: kekId(NEW) });
    expect(kekId(NEW)).toMatch(/^[0-9a-f]{16}$/);
    expect(Buffer.from(a.iv, "base64url")).toHaveLength(12);
    expect(Buffer.from(a.tag, "base64url")).toHaveLength(16);
    expect(a.iv).not.toBe(b.iv);
    expect(a.ct).not.toBe(b.ct);
    expect(JSON.stringify(a)).not.toContain(jwk.d);
    expect(isSealed(a)).toBe(true);
    expect(isSealed(jwk)).toBe(false);
    expect(enc.open(key.kid, a)).toEqual(jwk);
    expect(enc.stale(a)).toBe(false);
    expect(enc.stale(jwk)).toBe(true);
    expect(new KeyEncryption(OLD).stale(a)).toBe(true);
  });

  it("does not open under another kid (the kid is authenticated data), nor when altered", async () => {
    const enc = new KeyEncryption(NEW);
    const key = await newKey("ES256", new ManualClock(T0));
    const sealed = enc.seal(key.kid, key.privateJwk as JWK);
    expect(() => enc.open("another-kid", sealed)).toThrow(KeyUnreadableError);
    const flipped = Buffer.from(sealed.ct, "base64url");
    flipped[0]! ^= 1;
    expect(() => enc.open(key.kid, { ...sealed, ct: flipped.toString("base64url") })).toThrow(/TESSERA_KEY_ENCRYPTION_KEY: .* does not open/);
  });

  it("opens with the previous KEK too; a key under neither, or a sealed key without a KEK, is an error naming the variable", async () => {
    const key = await newKey("ES256", new ManualClock(T0));
    const underOld = new KeyEncryption(OLD).seal(key.kid, key.privateJwk as JWK);
    expect(new KeyEncryption(NEW, OLD).open(key.kid, underOld)).toEqual(key.privateJwk);
    expect(() => new KeyEncryption(NEW).open(key.kid, underOld)).toThrow(
      new RegExp(`^TESSERA_KEY_ENCRYPTION_KEY: signing key ${key.kid} .* sealed under key-encryption key ${kekId(OLD)}.*TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS is unset`),
    );
    expect(() => openPrivateKey(key.kid, underOld, undefined)).toThrow(/^TESSERA_KEY_ENCRYPTION_KEY: .* TESSERA_KEY_ENCRYPTION_KEY is unset/);
    expect(openPrivateKey(key.kid, key.privateJwk!, undefined)).toEqual(key.privateJwk);
  });
});

describe("KeyRing with a key-encryption key", () => {
  it("stores every key it makes sealed (no private member in the store), signs and verifies with it", async () => {
    const store = new MemoryStore();
    const a = await ring(store, { encryption: new KeyEncryption(NEW) });
    await a.keys.rotate({ immediate: true });
    const stored = await store.listKeys();
    expect(stored).toHaveLength(2);
    for (const k of stored) {
      expect(isSealed(k.privateJwk)).toBe(true);
      expect((k.privateJwk as SealedPrivateKey).kek).toBe(kekId(NEW));
      expect(JSON.stringify(k)).not.toMatch(/"d"/);
    }
    const token = await a.sign();
    expect(await a.verifies(token)).toBe(true);
    // Another process with the same KEK opens them.
    const b = await ring(store, { encryption: new KeyEncryption(NEW) });
    expect(b.keys.signingKey().kid).toBe(decodeProtectedHeader(token).kid);
    expect(await b.verifies(token)).toBe(true);
  });

  it("at start seals the keys stored in plain (a KEK newly set), then the ones under the previous KEK (a KEK rotated)", async () => {
    const store = new MemoryStore();
    const plain = await ring(store);
    await plain.keys.rotate({ immediate: true });
    const token = await plain.sign();
    expect((await store.listKeys()).every((k) => !isSealed(k.privateJwk))).toBe(true);

    const first = await ring(store, { encryption: new KeyEncryption(OLD) });
    expect((await sealedKeys(store)).map((e) => e.kek)).toEqual([kekId(OLD), kekId(OLD)]);
    expect(await first.verifies(token)).toBe(true);

    const rotated = await ring(store, { encryption: new KeyEncryption(NEW, OLD) });
    expect((await sealedKeys(store)).map((e) => e.kek)).toEqual([kekId(NEW), kekId(NEW)]);
    expect(await rotated.verifies(token)).toBe(true);
    expect((await store.listKeys()).map((k) => k.kid)).toEqual(((await plain.keys.list()).map((k) => k.kid)).reverse());

    // PREVIOUS dropped: everything opens with the new KEK alone.
    const after = await ring(store, { encryption: new KeyEncryption(NEW) });
    expect(await after.verifies(token)).toBe(true);
    expect(after.keys.signingKey().kid).toBe(decodeProtectedHeader(token).kid);
  });

  it("refuses to start when a stored key opens with no KEK given (or there is none), naming the variable; makes no key", async () => {
    const store = new MemoryStore();
    await ring(store, { encryption: new KeyEncryption(OLD) });
    const before = await store.listKeys();
    const wrong = new KeyRing(store, "ES256", new ManualClock(T0), 1_000, undefined, { encryption: new KeyEncryption(NEW) });
    await expect(wrong.init()).rejects.toThrow(/^TESSERA_KEY_ENCRYPTION_KEY: signing key .* is not TESSERA_KEY_ENCRYPTION_KEY/);
    const none = new KeyRing(store, "ES256", new ManualClock(T0));
    await expect(none.init()).rejects.toThrow(/^TESSERA_KEY_ENCRYPTION_KEY: .* TESSERA_KEY_ENCRYPTION_KEY is unset/);
    expect(await store.listKeys()).toEqual(before);
  });

  it("a key another process sealed under a KEK this one lacks is left out at reload (the error told), the rest still taken", async () => {
    const store = new MemoryStore();
    const clock = new ManualClock(T0);
    const a = await ring(store, { encryption: new KeyEncryption(NEW) }, clock);
    const first = a.keys.signingKey().kid;
    // A misconfigured process adds a key sealed under another KEK, and revokes nothing.
    const stray: StoredKey = await newKey("ES256", clock);
    stray.privateJwk = new KeyEncryption(OLD).seal(stray.kid, stray.privateJwk as JWK);
    await store.addKey(stray, { expectNewest: first });
    await store.revokeKey({ kid: first, at: clock.now(), until: clock.now() + 1000, reason: "test" });
    await expect(a.keys.reload()).rejects.toThrow(KeyUnreadableError);
    expect(a.keys.isRevoked(first)).toBe(true); // the readable part of the set was taken
    expect(a.keys.list().map((k) => k.kid)).toEqual([first]);
  });
});
