/**
 * The signing key set and its lifecycle. Keys live in the store, so every authority process on one store signs with the
 * same key and accepts the others' tokens. Keys are imported once and cached; an unknown kid triggers at most one
 * reload per `reloadIntervalMs`, so random kids cannot make us hammer the store.
 *
 * A key's life: *next* (published in the JWKS, not signing, for `prepublishMs`, so every verifier that caches the JWKS
 * has it before the first token it signs) -> *current* (signing) -> *retired* (a newer key signs; still published and
 * accepted until every token it signed has expired: `retainMs` after it retired) -> *removed* (dropped from the store at
 * the next rotation). A *revoked* key (a stolen key) is neither published nor accepted from the instant of its
 * revocation, in every process. The states follow from the stored instants and the clock alone (`keyStates`), so every
 * process computes the same: a switch happens at the same instant everywhere, without a message.
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from "jose";
import type { Clock } from "./clock.js";
import { compactSigner, type CompactSigner, type SigningAlgorithm } from "./jws-sign.js";
import type { KeyStore, StoredKey } from "./store.js";

export { SIGNING_ALGORITHMS, type SigningAlgorithm } from "./jws-sign.js";

export type KeyState = "next" | "current" | "retired" | "removed" | "revoked";

export interface LoadedKey {
  kid: string;
  alg: string;
  createdAt: number;
  /** When it starts (or started) signing. */
  activateAt: number;
  revokedAt: number | undefined;
  publicJwk: JWK;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** Signs a token with this key (made once, when the key is loaded). */
  sign: CompactSigner;
}

/** A key's state at an instant, and the instants that change it. */
export interface KeyStatus {
  state: KeyState;
  /** When a newer key took over (retired, removed). */
  retiredAt?: number;
  /** When it leaves the JWKS for good (retired, removed): retiredAt + retainMs. */
  removedAt?: number;
}

export interface KeyPolicy {
  /** How long a new key is published before it signs (scheduled rotations, and RotateKeys unless immediate). */
  prepublishMs: number;
  /** How long a retired key stays published and accepted: the longest life of a token it signed (plus clock skew). */
  retainMs: number;
  /** A new key every this long (0: only on request). */
  rotationPeriodMs: number;
  /** How long the revocation feed carries a key's revocation: the longest life of an access token (plus skew). */
  noticeMs: number;
}

/** Without a policy (tests of other parts): switch at once, keep retired keys for a day, never rotate by schedule. */
const IMMEDIATE: KeyPolicy = { prepublishMs: 0, retainMs: 24 * 3_600_000, rotationPeriodMs: 0, noticeMs: 3_600_000 };

type Timed = Pick<StoredKey, "kid" | "createdAt" | "activateAt" | "revokedAt">;

const activation = (k: Timed) => k.activateAt ?? k.createdAt;

/**
 * Every key's state at `now`, in one timeline of activations (ties: the order the keys were added, as `keys` lists them): the
 * last activated unrevoked key of `alg` is current; an unrevoked key activated before it retired when the next unrevoked
 * key activated, and is removed `retainMs` after that; keys not yet activated are next.
 */
export function keyStates(keys: readonly (Timed & { alg: string })[], alg: string, now: number, retainMs: number): Map<string, KeyStatus> {
  const out = new Map<string, KeyStatus>();
  // The timeline: by activation; at the same instant, the key added later (later in `keys`) counts as later.
  const position = new Map(keys.map((k, i) => [k.kid, i]));
  const live = keys
    .filter((k) => k.revokedAt === undefined)
    .sort((a, b) => activation(a) - activation(b) || position.get(a.kid)! - position.get(b.kid)!);
  const started = live.filter((k) => activation(k) <= now);
  const current = [...started].reverse().find((k) => k.alg === alg);
  for (const k of keys) if (k.revokedAt !== undefined) out.set(k.kid, { state: "revoked" });
  for (const k of live) if (activation(k) > now) out.set(k.kid, { state: "next" });
  for (const [i, k] of started.entries()) {
    if (k === current) {
      out.set(k.kid, { state: "current" });
      continue;
    }
    // Retired when the next key in the timeline started (or, past the current key, when the current one did).
    const successor = started[i + 1] ?? current;
    const retiredAt = successor ? activation(successor) : now;
    const removedAt = retiredAt + retainMs;
    out.set(k.kid, { state: now < removedAt ? "retired" : "removed", retiredAt, removedAt });
  }
  return out;
}

export class KeyRing {
  private byKid = new Map<string, LoadedKey>();
  private stored: StoredKey[] = [];
  private currentMemo: { key: LoadedKey | undefined; from: number; until: number } | undefined;
  private lastReload = 0;
  private reloading: Promise<void> | undefined;

  constructor(
    private readonly store: KeyStore,
    private readonly alg: SigningAlgorithm,
    private readonly clock: Clock,
    private readonly reloadIntervalMs = 1_000,
    private readonly policy: KeyPolicy = IMMEDIATE,
  ) {}

  /** Loads the key set, creating a signing key if none can sign (of several processes starting at once, one does). */
  async init(): Promise<void> {
    await this.reload();
    for (let attempt = 0; attempt < 5 && this.current() === undefined; attempt++) {
      const key = await newKey(this.alg, this.clock);
      const { keys } = await this.store.addKey(key, { expectNewest: this.newestKid() });
      await this.load(keys); // added, or another process won: either way the store's set is loaded
    }
    if (this.current() === undefined) throw new Error("no signing key could be made");
  }

  /** The key new tokens are signed with now. */
  signingKey(): LoadedKey {
    const current = this.current();
    if (!current) throw new Error("key ring not initialised");
    return current;
  }

  /** The key with this kid (revoked ones included: `isRevoked` tells), reloading the set (rate-limited) if unknown. */
  async lookup(kid: string): Promise<LoadedKey | undefined> {
    const hit = this.usable(kid);
    if (hit) return hit;
    const now = this.clock.now();
    if (now - this.lastReload >= this.reloadIntervalMs) {
      this.lastReload = now;
      this.reloading ??= this.reload().finally(() => (this.reloading = undefined));
    }
    if (this.reloading) await this.reloading.catch(() => {});
    return this.usable(kid);
  }

  /** Whether the key was revoked: a token it signed is not active, even one whose signature was checked before. */
  isRevoked(kid: string): boolean {
    return this.byKid.get(kid)?.revokedAt !== undefined;
  }

  /**
   * Adds a new key. By default it follows the lifecycle: published now, signing after `prepublishMs`; with `immediate`
   * it signs at once (verifiers that cached the JWKS meet an unknown kid and refetch). If a key is already waiting to
   * sign, that one is returned unless `immediate`. Returns the new (or waiting) key.
   */
  async rotate(opts: { immediate?: boolean } = {}): Promise<LoadedKey> {
    await this.reload();
    const now = this.clock.now();
    if (!opts.immediate) {
      const waiting = this.inState("next", now).at(-1);
      if (waiting) return waiting;
    }
    return (await this.addNewKey(opts.immediate ? now : now + this.policy.prepublishMs, now)).key;
  }

  /**
   * The scheduled rotation: when the current key has signed for `rotationPeriodMs` less the pre-publication time and
   * no key waits yet, publish the next one (signing when the period is over). Of several processes exactly one adds it
   * (the store's compare-and-set on the newest key); returns the key if this call added it.
   */
  async rotateIfDue(): Promise<LoadedKey | undefined> {
    const { rotationPeriodMs, prepublishMs } = this.policy;
    if (rotationPeriodMs <= 0) return undefined;
    await this.reload();
    const now = this.clock.now();
    const current = this.current(now);
    if (!current || this.inState("next", now).length > 0) return undefined;
    const switchAt = Math.max(current.activateAt + rotationPeriodMs, now + prepublishMs);
    if (now < switchAt - prepublishMs) return undefined;
    const { added, key } = await this.addNewKey(switchAt, now);
    return added ? key : undefined;
  }

  /**
   * A stolen key: revoked at once (out of the JWKS, its tokens inactive here now, in other processes as soon as they
   * hear of it through the revocation feed), and if it was signing, a fresh key signs from this instant. False if no
   * such key is kept.
   */
  async revoke(kid: string, reason: string): Promise<{ revoked: boolean; signing: LoadedKey }> {
    const now = this.clock.now();
    const known = this.stored.some((k) => k.kid === kid) || (await this.reload(), this.stored.some((k) => k.kid === kid));
    if (!known) return { revoked: false, signing: this.signingKey() };
    // The feed tells sidecars, which verify access tokens only, for as long as such a token can live.
    const revoked = await this.store.revokeKey({ kid, at: now, until: now + this.policy.noticeMs, reason });
    await this.reload();
    if (this.current(now) === undefined) await this.addNewKey(now, now);
    return { revoked, signing: this.signingKey() };
  }

  /** Re-reads the key set from the store (new keys from other processes' rotations, revocations). */
  async reload(): Promise<void> {
    await this.load(await this.store.listKeys());
  }

  /** Every kept key with its state now, newest activation first (removed keys are gone from the store soon). */
  list(): Array<LoadedKey & KeyStatus> {
    const states = keyStates(this.stored, this.alg, this.clock.now(), this.policy.retainMs);
    const position = new Map(this.stored.map((k, i) => [k.kid, i]));
    return [...this.byKid.values()]
      .map((k) => ({ ...k, ...states.get(k.kid)! }))
      .sort((a, b) => b.activateAt - a.activateAt || position.get(b.kid)! - position.get(a.kid)!);
  }

  /** Public keys, for JWKS: next, current and retired keys; never revoked or removed ones. */
  publicKeys(): JWK[] {
    return this.list()
      .filter((k) => k.state === "next" || k.state === "current" || k.state === "retired")
      .map((k) => ({ ...k.publicJwk }));
  }

  private usable(kid: string): LoadedKey | undefined {
    const k = this.byKid.get(kid);
    if (!k) return undefined;
    const state = keyStates(this.stored, this.alg, this.clock.now(), this.policy.retainMs).get(kid)?.state;
    return state === "removed" ? undefined : k;
  }

  /** The signing key at `now`; remembered until the next activation in the timeline (Issue asks twice per call). */
  private current(now = this.clock.now()): LoadedKey | undefined {
    const memo = this.currentMemo;
    if (memo && now >= memo.from && now < memo.until) return memo.key;
    let key: LoadedKey | undefined;
    for (const [kid, s] of keyStates(this.stored, this.alg, now, this.policy.retainMs)) if (s.state === "current") key = this.byKid.get(kid);
    const later = this.stored.filter((k) => k.revokedAt === undefined && activation(k) > now).map(activation);
    this.currentMemo = { key, from: now, until: Math.min(...later, Infinity) };
    return key;
  }

  private inState(state: KeyState, now: number): LoadedKey[] {
    const states = keyStates(this.stored, this.alg, now, this.policy.retainMs);
    return [...this.byKid.values()].filter((k) => states.get(k.kid)?.state === state).sort((a, b) => a.activateAt - b.activateAt);
  }

  private newestKid(): string | null {
    return this.stored.at(-1)?.kid ?? null;
  }

  /** Adds a key signing from `activateAt` (compare-and-set on the newest key; drops removed keys); loads the result. */
  private async addNewKey(activateAt: number, now: number): Promise<{ added: boolean; key: LoadedKey }> {
    const key = await newKey(this.alg, this.clock);
    key.activateAt = activateAt;
    const states = keyStates(this.stored, this.alg, now, this.policy.retainMs);
    const drop = this.stored
      .filter((k) => {
        const s = states.get(k.kid)!;
        // Removed keys, and revoked ones no token could still need.
        return s.state === "removed" || (s.state === "revoked" && (k.revokedAt ?? now) + this.policy.retainMs <= now);
      })
      .map((k) => k.kid);
    const { added, keys } = await this.store.addKey(key, { expectNewest: this.newestKid(), drop });
    await this.load(keys);
    // Another process added one first: that one is ours too.
    return { added, key: this.byKid.get(added ? key.kid : this.newestKid()!)! };
  }

  private async load(keys: StoredKey[]): Promise<void> {
    const next = new Map<string, LoadedKey>();
    for (const k of keys) {
      const had = this.byKid.get(k.kid);
      if (had) {
        next.set(k.kid, { ...had, revokedAt: k.revokedAt });
        continue;
      }
      const [privateKey, publicKey] = await Promise.all([importJWK(k.privateJwk, k.alg), importJWK(k.publicJwk, k.alg)]);
      next.set(k.kid, {
        kid: k.kid,
        alg: k.alg,
        createdAt: k.createdAt,
        activateAt: activation(k),
        revokedAt: k.revokedAt,
        publicJwk: k.publicJwk,
        privateKey: privateKey as CryptoKey,
        publicKey: publicKey as CryptoKey,
        sign: compactSigner(k.alg as SigningAlgorithm, privateKey as CryptoKey),
      });
    }
    this.byKid = next;
    this.stored = keys;
    this.currentMemo = undefined;
  }
}

/** Generates a key pair and describes it as the store keeps it; kid is the RFC 7638 thumbprint. */
export async function newKey(alg: SigningAlgorithm, clock: Clock): Promise<StoredKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const meta = { kid, alg, use: "sig" };
  const createdAt = clock.now();
  return {
    kid,
    alg,
    createdAt,
    activateAt: createdAt,
    privateJwk: { ...(await exportJWK(privateKey)), ...meta },
    publicJwk: { ...publicJwk, ...meta },
  };
}
