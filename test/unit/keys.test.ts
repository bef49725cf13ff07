/**
 * The signing keys' lifecycle (src/domain/keys.ts) on a manual clock: next -> current -> retired -> removed, scheduled
 * rotation with exactly one rotation per period among several processes on one store, and a stolen key's revocation.
 */
import { decodeProtectedHeader } from "jose";
import { describe, expect, it } from "vitest";
import { ManualClock } from "../../src/domain/clock.js";
import { KeyRing, keyStates, type KeyPolicy } from "../../src/domain/keys.js";
import { TokenCodec } from "../../src/domain/tokens.js";
import { MemoryStore } from "../../src/store/memory.js";
import type { StoredKey } from "../../src/domain/store.js";
import { until } from "../helpers/wait.js";

const S = 1000;
const MIN = 60 * S;
const POLICY: KeyPolicy = { prepublishMs: 10 * MIN, retainMs: 60 * MIN, rotationPeriodMs: 30 * MIN, noticeMs: 15 * MIN };
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

async function ring(store = new MemoryStore(), clock = new ManualClock(T0), policy = POLICY) {
  const keys = new KeyRing(store, "ES256", clock, 1_000, policy);
  await keys.init();
  const codec = new TokenCodec(keys, { issuer: "https://t", clockSkewMs: 0, maxTokenLength: 8192, verifiedCacheSize: 100 });
  const sign = (ttlMs = 5 * MIN) =>
    codec.signAccess({
      subject: "alice",
      sessionId: "s",
      jti: `j${clock.now()}`,
      grant: { audience: ["api"], scopes: [], claims: {}, accessTtlMs: ttlMs },
      now: clock.now(),
      expiresAt: clock.now() + ttlMs,
    });
  return { store, clock, keys, codec, sign };
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid;
const states = (keys: KeyRing) => Object.fromEntries(keys.list().map((k) => [k.kid, k.state]));
const published = (keys: KeyRing) => keys.publicKeys().map((k) => k.kid);

describe("keyStates", () => {
  const k = (kid: string, activateAt: number, extra: { revokedAt?: number; alg?: string } = {}) => ({
    kid,
    alg: extra.alg ?? "ES256",
    createdAt: activateAt - 1,
    activateAt,
    ...(extra.revokedAt === undefined ? {} : { revokedAt: extra.revokedAt }),
  });

  it("the last activated unrevoked key signs; earlier ones retire when their successor starts; later ones wait", () => {
    const keys = [k("a", 0), k("b", 100), k("c", 200), k("d", 500)];
    const at = (now: number) => Object.fromEntries([...keyStates(keys, "ES256", now, 1000)].map(([kid, s]) => [kid, s.state]));
    expect(at(150)).toEqual({ a: "retired", b: "current", c: "next", d: "next" });
    expect(at(250)).toEqual({ a: "retired", b: "retired", c: "current", d: "next" });
    expect(keyStates(keys, "ES256", 250, 1000).get("a")).toEqual({ state: "retired", retiredAt: 100, removedAt: 1100 });
    expect(at(1100)).toEqual({ a: "removed", b: "retired", c: "retired", d: "current" });
  });

  it("a revoked key is revoked whatever its times, and its successor's predecessor takes over", () => {
    const keys = [k("a", 0), k("b", 100, { revokedAt: 150 })];
    expect(Object.fromEntries([...keyStates(keys, "ES256", 200, 1000)].map(([kid, s]) => [kid, s.state]))).toEqual({ a: "current", b: "revoked" });
  });

  it("signs only with a key of the configured algorithm", () => {
    const keys = [k("es", 0), k("ed", 100, { alg: "EdDSA" })];
    expect(keyStates(keys, "ES256", 200, 1000).get("es")?.state).toBe("current");
    expect(keyStates(keys, "EdDSA", 200, 1000).get("ed")?.state).toBe("current");
  });
});

describe("KeyRing lifecycle", () => {
  it("RotateKeys publishes a key that signs only after the pre-publication time; a second request returns it", async () => {
    const { keys, clock, sign } = await ring();
    const first = keys.signingKey().kid;
    const next = await keys.rotate();
    expect(next.kid).not.toBe(first);
    expect(states(keys)).toEqual({ [first]: "current", [next.kid]: "next" });
    expect(published(keys).sort()).toEqual([first, next.kid].sort());
    expect(kidOf(await sign())).toBe(first);
    expect((await keys.rotate()).kid).toBe(next.kid); // already waiting: no second key
    clock.advance(POLICY.prepublishMs - 1);
    expect(kidOf(await sign())).toBe(first);
    clock.advance(1);
    expect(kidOf(await sign())).toBe(next.kid);
    expect(states(keys)).toEqual({ [first]: "retired", [next.kid]: "current" });
  });

  it("immediate rotation signs at once", async () => {
    const { keys, sign } = await ring();
    const first = keys.signingKey().kid;
    const key = await keys.rotate({ immediate: true });
    expect(kidOf(await sign())).toBe(key.kid);
    expect(states(keys)[first]).toBe("retired");
  });

  it("a retired key verifies until retainMs after it retired, then leaves the JWKS, stops verifying, and is dropped", async () => {
    const { keys, clock, sign, store } = await ring();
    const old = await sign(60 * MIN);
    const oldKid = kidOf(old)!;
    await keys.rotate({ immediate: true });
    clock.advance(POLICY.retainMs - 1);
    expect(published(keys)).toContain(oldKid);
    expect(await keys.lookup(oldKid)).toBeDefined();
    clock.advance(1);
    expect(states(keys)[oldKid]).toBe("removed");
    expect(published(keys)).not.toContain(oldKid);
    expect(await keys.lookup(oldKid)).toBeUndefined();
    await keys.rotate({ immediate: true }); // the next rotation drops it from the store
    expect((await store.listKeys()).map((k) => k.kid)).not.toContain(oldKid);
  });

  it("rotates on schedule: a key published prepublish before the period ends, signing when it ends", async () => {
    const { keys, clock, sign } = await ring();
    const first = keys.signingKey().kid;
    clock.advance(POLICY.rotationPeriodMs - POLICY.prepublishMs - 1);
    expect(await keys.rotateIfDue()).toBeUndefined();
    clock.advance(1);
    const next = await keys.rotateIfDue();
    expect(next).toBeDefined();
    expect(await keys.rotateIfDue()).toBeUndefined(); // one waits already
    expect(kidOf(await sign())).toBe(first);
    clock.advance(POLICY.prepublishMs);
    expect(kidOf(await sign())).toBe(next!.kid);
  });

  it("of three processes on one store, exactly one rotates per period, and all sign with the new key at the switch", async () => {
    const store = new MemoryStore();
    const clock = new ManualClock(T0);
    const procs = [await ring(store, clock), await ring(store, clock), await ring(store, clock)];
    expect(new Set(procs.map((p) => p.keys.signingKey().kid)).size).toBe(1); // one key came out of three inits
    for (let period = 1; period <= 3; period++) {
      clock.advance(POLICY.rotationPeriodMs - POLICY.prepublishMs);
      const added = (await Promise.all(procs.map((p) => p.keys.rotateIfDue()))).filter((k) => k !== undefined);
      expect(added).toHaveLength(1);
      clock.advance(POLICY.prepublishMs);
      for (const p of procs) await p.keys.reload();
      expect(procs.map((p) => p.keys.signingKey().kid)).toEqual([added[0]!.kid, added[0]!.kid, added[0]!.kid]);
    }
    expect((await store.listKeys()).length).toBeLessThanOrEqual(4); // the set stays small
  });

  it("RevokeKey: out of the JWKS at once, its tokens refused even when their signature was checked before, a fresh key signs", async () => {
    const store = new MemoryStore();
    const clock = new ManualClock(T0);
    const a = await ring(store, clock);
    const b = await ring(store, clock);
    const token = await a.sign();
    const stolen = kidOf(token)!;
    expect((await a.codec.verify(token, "access", clock.now())).ok).toBe(true); // now in the verified cache
    expect((await b.codec.verify(token, "access", clock.now())).ok).toBe(true);
    const { revoked, signing } = await a.keys.revoke(stolen, "stolen");
    expect(revoked).toBe(true);
    expect(signing!.kid).not.toBe(stolen);
    // One fresh key, however the revocation's reload and the revocation itself see that none signed any more.
    expect((await store.listKeys()).map((k) => k.kid).filter((kid) => kid !== stolen)).toEqual([signing!.kid]);
    expect(await a.codec.verify(token, "access", clock.now())).toEqual({ ok: false, reason: "key_revoked" });
    expect(published(a.keys)).not.toContain(stolen);
    expect(kidOf(await a.sign())).toBe(signing!.kid);
    // Another process hears of it when it reloads (the app reloads on the feed's wake-up).
    await b.keys.reload();
    expect(await b.codec.verify(token, "access", clock.now())).toEqual({ ok: false, reason: "key_revoked" });
    expect(b.keys.signingKey().kid).toBe(signing!.kid);
    const feed = (await store.revocations(null, 10)).entries;
    expect(feed.map((e) => [e.kind, e.target, e.until])).toEqual([["key", stolen, T0 + POLICY.noticeMs]]);
    expect((await a.keys.revoke(stolen, "again")).revoked).toBe(false);
    expect((await a.keys.revoke("no-such-kid", "x")).revoked).toBe(false);
  });

  it("an older read of the key set that answers after a newer one never undoes it (a revocation mark)", async () => {
    const store = new MemoryStore();
    const clock = new ManualClock(T0);
    // The ring reads through a store whose next listKeys answers with what it held when sent, but only when let go.
    let held: { answer: Promise<StoredKey[]>; release(): void } | undefined;
    const slow = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop !== "listKeys" || held === undefined || held.answer !== undefined) return Reflect.get(target, prop, receiver);
        return async () => {
          const snapshot = structuredClone(await target.listKeys());
          let release!: () => void;
          const gate = new Promise<void>((r) => (release = r));
          held = { answer: gate.then(() => snapshot), release };
          return held.answer;
        };
      },
    });
    const a = await ring(slow, clock);
    const b = await ring(store, clock);
    const next = await b.keys.rotate(); // published, signing later: a key `a` has not loaded
    held = { answer: undefined as unknown as Promise<StoredKey[]>, release: () => {} };
    const older = a.keys.reload(); // sent now: `next` unrevoked
    await until(() => held!.answer !== undefined);
    expect((await b.keys.revoke(next.kid, "leaked")).revoked).toBe(true);
    await a.keys.reload(); // sent later, answered at once: `next` revoked
    expect(a.keys.isRevoked(next.kid)).toBe(true);
    held!.release();
    await older;
    expect(a.keys.isRevoked(next.kid)).toBe(true);
    expect(published(a.keys)).not.toContain(next.kid);
  });

  it("a revocation heard while the revoking call reloads too: one fresh key, the one the revocation answered with", async () => {
    // RevokeKey reloads the set (finding no key that signs, it makes one); the feed's wake-up reloads it in the same
    // process at about the same time. Whichever makes its key second saw the first's key loaded while it was making
    // its own: it must not add it behind (the revocation would answer with a key that signs for a moment only).
    for (let round = 0; round < 10; round++) {
      const store = new MemoryStore();
      const clock = new ManualClock(T0);
      const a = await ring(store, clock);
      const stolen = a.keys.signingKey().kid;
      const [{ signing }] = await Promise.all([a.keys.revoke(stolen, "stolen"), a.keys.reload(), a.keys.reload()]);
      const fresh = (await store.listKeys()).map((k) => k.kid).filter((kid) => kid !== stolen);
      expect(fresh, `round ${round}`).toEqual([signing!.kid]);
      expect(kidOf(await a.sign())).toBe(signing!.kid);
    }
  });
});
