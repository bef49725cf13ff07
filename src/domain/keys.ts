/**
 * The signing key set. Keys live in the store, so every authority process on one store signs with the same key and
 * accepts the others' tokens. Keys are imported once and cached; an unknown kid triggers at most one reload per
 * `reloadIntervalMs`, so random kids cannot make us hammer the store.
 */
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from "jose";
import type { Clock } from "./clock.js";
import { compactSigner, type CompactSigner, type SigningAlgorithm } from "./jws-sign.js";
import type { KeyStore, StoredKey } from "./store.js";

export { SIGNING_ALGORITHMS, type SigningAlgorithm } from "./jws-sign.js";

export interface LoadedKey {
  kid: string;
  alg: string;
  createdAt: number;
  publicJwk: JWK;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** Signs a token with this key (made once, when the key is loaded). */
  sign: CompactSigner;
}

export class KeyRing {
  private byKid = new Map<string, LoadedKey>();
  private active: LoadedKey | undefined;
  private lastReload = 0;
  private reloading: Promise<void> | undefined;

  constructor(
    private readonly store: KeyStore,
    private readonly alg: SigningAlgorithm,
    private readonly clock: Clock,
    private readonly reloadIntervalMs = 1_000,
  ) {}

  /** Loads the key set, creating the first key if the store has none (only one process wins that race). */
  async init(): Promise<void> {
    let keys = await this.store.listKeys();
    if (!keys.some((k) => k.alg === this.alg)) keys = await this.store.addKey(await newKey(this.alg, this.clock), true);
    await this.load(keys);
  }

  /** The key new tokens are signed with: the newest key of the configured algorithm. */
  signingKey(): LoadedKey {
    if (!this.active) throw new Error("key ring not initialised");
    return this.active;
  }

  /** The key with this kid, reloading the set (rate-limited) if it is unknown. */
  async lookup(kid: string): Promise<LoadedKey | undefined> {
    const hit = this.byKid.get(kid);
    if (hit) return hit;
    const now = this.clock.now();
    if (now - this.lastReload >= this.reloadIntervalMs) {
      this.lastReload = now;
      this.reloading ??= this.store
        .listKeys()
        .then((keys) => this.load(keys))
        .finally(() => (this.reloading = undefined));
    }
    if (this.reloading) await this.reloading;
    return this.byKid.get(kid);
  }

  /**
   * Creates a new key of the configured algorithm and makes it the signing key here; other processes on the same
   * store pick it up at their next reload (`reload()`, or on first sight of its kid). Older keys stay, so the tokens
   * they signed keep verifying until they expire.
   */
  async rotate(): Promise<LoadedKey> {
    const key = await newKey(this.alg, this.clock);
    // "Newest" is decided by createdAt everywhere; never tie with the current key, even within one millisecond.
    key.createdAt = Math.max(key.createdAt, ...this.list().map((k) => k.createdAt + 1));
    await this.load(await this.store.addKey(key, false));
    return this.signingKey();
  }

  /** Re-reads the key set from the store (new keys from other processes' rotations). */
  async reload(): Promise<void> {
    await this.load(await this.store.listKeys());
  }

  /** Every key, newest first. */
  list(): LoadedKey[] {
    return [...this.byKid.values()].sort((a, b) => b.createdAt - a.createdAt);
  }

  /** Public keys, for JWKS. */
  publicKeys(): JWK[] {
    return [...this.byKid.values()].map((k) => ({ ...k.publicJwk }));
  }

  private async load(keys: StoredKey[]): Promise<void> {
    for (const k of keys) {
      if (this.byKid.has(k.kid)) continue;
      const [privateKey, publicKey] = await Promise.all([importJWK(k.privateJwk, k.alg), importJWK(k.publicJwk, k.alg)]);
      this.byKid.set(k.kid, {
        kid: k.kid,
        alg: k.alg,
        createdAt: k.createdAt,
        publicJwk: k.publicJwk,
        privateKey: privateKey as CryptoKey,
        publicKey: publicKey as CryptoKey,
        sign: compactSigner(k.alg as SigningAlgorithm, privateKey as CryptoKey),
      });
    }
    const mine = [...this.byKid.values()].filter((k) => k.alg === this.alg);
    this.active = mine.sort((a, b) => b.createdAt - a.createdAt)[0];
  }
}

/** Generates a key pair and describes it as the store keeps it; kid is the RFC 7638 thumbprint. */
export async function newKey(alg: SigningAlgorithm, clock: Clock): Promise<StoredKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const meta = { kid, alg, use: "sig" };
  return {
    kid,
    alg,
    createdAt: clock.now(),
    privateJwk: { ...(await exportJWK(privateKey)), ...meta },
    publicJwk: { ...publicJwk, ...meta },
  };
}
