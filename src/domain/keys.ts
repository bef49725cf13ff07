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
 *
 * Where the keys come from, one of three:
 * - the store (the default): keys are generated here, kept in the store (their private part sealed under the
 *   key-encryption key when one is given, `encryption`), rotated by schedule or on request;
 * - a file (`provided`: TESSERA_SIGNING_KEYS_FILE, a private JWKS from a secret manager): the file's keys and their
 *   `tessera_activate_at` instants are the timeline (see `providedTimeline`); nothing is generated, rotated or stored but
 *   a revoked key's revocation mark (a record without its private part);
 * - HS256 (`hmac`: a secret shared through the configuration): one key whose record in the store (kid, alg, when it
 *   started signing: the timeline, shared by every process) holds no secret; never published.
 */
import { createHash, webcrypto } from "node:crypto";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from "jose";
import type { Clock } from "./clock.js";
import { TesseraError } from "./errors.js";
import { KeyUnreadableError, openPrivateKey, type KeyEncryption } from "./key-encryption.js";
import { compactSigner, isMacAlgorithm, refreshMac, type CompactSigner, type JwsAlgorithm, type RefreshMac, type SigningAlgorithm } from "./jws.js";
import type { KeyStore, StoredKey } from "./store.js";

export { MAC_ALGORITHMS, SIGNING_ALGORITHMS, type JwsAlgorithm, type SigningAlgorithm } from "./jws.js";

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
  /**
   * MACs and checks refresh tokens of this key (jws.ts refreshMac): every asymmetric key has one, so that its MAC'd
   * refresh tokens are accepted whether this process MACs the ones it makes (TokenCodecOptions.refreshTokenMac) or
   * not. Absent for an HS256 key (its refresh tokens are MAC'd as its access tokens are).
   */
  refreshMac?: RefreshMac;
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

/** A key of TESSERA_SIGNING_KEYS_FILE, read and checked (src/config/signing-keys.ts). */
export interface ProvidedKey {
  kid: string;
  alg: SigningAlgorithm;
  privateJwk: JWK;
  /** Derived from the private key: what the JWKS publishes. */
  publicJwk: JWK;
  /** `tessera_activate_at`: when it starts signing; undefined: before every key that has one (see providedTimeline). */
  activateAt?: number;
}

export interface KeyRingOptions {
  /** Private keys go to the store sealed under it, and are opened with it (or its previous KEK) when loaded. */
  encryption?: KeyEncryption;
  /** The keys come from a file (TESSERA_SIGNING_KEYS_FILE); `source` names it in messages. */
  provided?: { keys: readonly ProvidedKey[]; source: string };
  /** The HS256 secret (with alg HS256); `source` names it in messages. */
  hmac?: { secret: Buffer; source: string };
}

/** Without a policy (tests of other parts): switch at once, keep retired keys for a day, never rotate by schedule. */
const IMMEDIATE: KeyPolicy = { prepublishMs: 0, retainMs: 24 * 3_600_000, rotationPeriodMs: 0, noticeMs: 3_600_000 };

type Timed = Pick<StoredKey, "kid" | "createdAt" | "activateAt" | "revokedAt">;

const activation = (k: Timed) => k.activateAt ?? k.createdAt;

/**
 * Every key's state at `now`, in one timeline of activations (ties: the order the keys were added, as `keys` lists them): the
 * last activated unrevoked key of `alg` (undefined: of any algorithm) is current; an unrevoked key activated before it
 * retired when the next unrevoked key activated, and is removed `retainMs` after that; keys not yet activated are next.
 */
export function keyStates(keys: readonly (Timed & { alg: string })[], alg: string | undefined, now: number, retainMs: number): Map<string, KeyStatus> {
  const out = new Map<string, KeyStatus>();
  // The timeline: by activation; at the same instant, the key added later (later in `keys`) counts as later.
  const position = new Map(keys.map((k, i) => [k.kid, i]));
  const live = keys
    .filter((k) => k.revokedAt === undefined)
    .sort((a, b) => activation(a) - activation(b) || position.get(a.kid)! - position.get(b.kid)!);
  const started = live.filter((k) => activation(k) <= now);
  const current = [...started].reverse().find((k) => alg === undefined || k.alg === alg);
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
  /** The timeline keyStates reads: the store's keys this process can read, or the file's keys with their marks. */
  private stored: StoredKey[] = [];
  /** The store's keys as last read, every one (a rotation's compare-and-set names the newest). */
  private listed: StoredKey[] = [];
  /** The file's keys in use (file mode), imported, in the file's order. */
  private provided: { keys: Map<string, LoadedKey>; list: readonly ProvidedKey[]; loadedAt: number } | undefined;
  /** Kids a new file left out: removed at once, so their tokens are refused even where a signature was checked before. */
  private readonly withdrawn = new Set<string>();
  private readonly hmacKid: string | undefined;
  private currentMemo: { key: LoadedKey | undefined; from: number; until: number } | undefined;
  /** Reads of the key set sent to the store so far, and the one whose answer the ring holds (load). */
  private reads = 0;
  private held = 0;
  private lastReload = 0;
  private reloading: Promise<void> | undefined;

  constructor(
    private readonly store: KeyStore,
    private readonly alg: JwsAlgorithm,
    private readonly clock: Clock,
    private readonly reloadIntervalMs = 1_000,
    private readonly policy: KeyPolicy = IMMEDIATE,
    private readonly options: KeyRingOptions = {},
  ) {
    if (isMacAlgorithm(alg) !== (options.hmac !== undefined)) throw new Error("HS256 takes a secret, and only HS256 does");
    if (options.hmac && options.provided) throw new Error("an HS256 secret and a keys file exclude each other");
    this.hmacKid = options.hmac && hmacKid(options.hmac.secret);
  }

  /** Whether this ring makes keys of its own: keys in the store, not from a file or a secret. */
  get generates(): boolean {
    return this.options.provided === undefined && this.options.hmac === undefined;
  }

  /**
   * Loads the key set, creating a signing key if none can sign (of several processes starting at once, one does). With
   * a key-encryption key, first seals every stored private key that is plain or sealed under the previous KEK. A stored
   * key that cannot be opened stops the start (KeyUnreadableError, naming the variable): never a silent new key. With a
   * file, its keys must hold one that signs now.
   */
  async init(): Promise<void> {
    const { provided, hmac, encryption } = this.options;
    if (provided) return this.useProvided(provided.keys);
    await this.reload();
    if (encryption && (await this.reseal(encryption))) await this.reload();
    if (hmac && this.current() === undefined && this.listed.some((k) => k.kid === this.hmacKid && k.revokedAt !== undefined)) {
      throw new Error(`${hmac.source}: its key ${this.hmacKid} was revoked (KeyService.RevokeKey): set a new secret`);
    }
    await this.ensureSigning();
    if (this.current() === undefined && hmac) {
      // Back to a secret whose key another HS256 key followed: its record cannot start again.
      throw new Error(`${hmac.source}: its key ${this.hmacKid} was followed by another HS256 key: set a new secret`);
    }
    if (this.current() === undefined) throw new Error("no signing key could be made");
  }

  /**
   * Adds a signing key while none in the store can sign (at start, and at any reload that finds the store lost its key
   * set): of several processes at once, one adds it and the others load it.
   */
  private async ensureSigning(): Promise<void> {
    for (let attempt = 0; attempt < 5 && this.current() === undefined; attempt++) {
      // The newest key as seen when no key signed, not after the new one is made: a load meanwhile (another reload of
      // this process) may have brought a key that signs, and then this one must not be added behind it.
      const expectNewest = this.newestKid();
      const key = await this.fresh(this.clock.now());
      const read = ++this.reads;
      const { keys } = await this.store.addKey(key, { expectNewest });
      await this.load(keys, read); // added, or another process won: either way the store's set is loaded
    }
  }

  /**
   * The key new tokens are signed with now; FAILED_PRECONDITION when none can sign (a file's or a secret's key
   * revoked); UNAVAILABLE while a ring of stored keys makes a new one (reload: its store lost them).
   */
  signingKey(): LoadedKey {
    const current = this.current();
    if (current) return current;
    const { provided, hmac } = this.options;
    if (provided) throw new TesseraError("failed_precondition", `no key of ${provided.source} can sign now: put a new key in the file and send SIGHUP`);
    if (hmac) throw new TesseraError("failed_precondition", `the key of ${hmac.source} is revoked: set a new secret and restart`);
    throw new TesseraError("unavailable", "no signing key in the store (a Redis that restarted empty?): a new key is being made; retry");
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

  /**
   * Whether the key was revoked (or, with a file, taken out of it): a token it signed is not active, even one whose
   * signature was checked before.
   */
  isRevoked(kid: string): boolean {
    return this.byKid.get(kid)?.revokedAt !== undefined || this.withdrawn.has(kid);
  }

  /**
   * Adds a new key. By default it follows the lifecycle: published now, signing after `prepublishMs`; with `immediate`
   * it signs at once (verifiers that cached the JWKS meet an unknown kid and refetch). If a key is already waiting to
   * sign, that one is returned unless `immediate`. Returns the new (or waiting) key. FAILED_PRECONDITION when the keys
   * come from a file or a secret.
   */
  async rotate(opts: { immediate?: boolean } = {}): Promise<LoadedKey> {
    const { provided, hmac } = this.options;
    if (provided) {
      throw new TesseraError(
        "failed_precondition",
        `the signing keys come from ${provided.source}: Tessera does not make or rotate them; add the next key to the file (with tessera_activate_at) and send SIGHUP`,
      );
    }
    if (hmac) throw new TesseraError("failed_precondition", `the HS256 key is ${hmac.source}: rotate it by setting a new secret on every process`);
    await this.refresh();
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
   * (the store's compare-and-set on the newest key); returns the key if this call added it. Keys from a file or a
   * secret are never rotated: the call only reloads (revocation marks).
   */
  async rotateIfDue(): Promise<LoadedKey | undefined> {
    const { rotationPeriodMs, prepublishMs } = this.policy;
    if (!this.generates) {
      await this.reload();
      return undefined;
    }
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
   * hear of it through the revocation feed), and if it was signing, a fresh key signs from this instant (keys of the
   * store; with a file, the file's previous key, if it has one that started; with HS256, none: `signing` is then
   * undefined). `revoked` is false if no such key is kept.
   */
  async revoke(kid: string, reason: string): Promise<{ revoked: boolean; signing: LoadedKey | undefined }> {
    const now = this.clock.now();
    const kept = () => this.stored.some((k) => k.kid === kid) || this.listed.some((k) => k.kid === kid);
    const known = kept() || (await this.refresh(), kept());
    if (!known) return { revoked: false, signing: this.current(now) };
    const wasSigning = this.current(now)?.kid === kid;
    // A file's key has no record in the store until it is revoked: the record carries the mark (no private part).
    if (this.provided) await this.recordProvided(kid, now);
    // The feed tells sidecars, which verify access tokens only, for as long as such a token can live.
    const revoked = await this.store.revokeKey({ kid, at: now, until: now + this.policy.noticeMs, reason });
    // With no key left to sign, the reload makes a fresh one (here, or in another process that heard of it first).
    await this.refresh();
    // A fresh key, never the one that signed before it: a retired key may be as exposed as the stolen one.
    const signing = this.current();
    if (wasSigning && this.generates && (signing === undefined || signing.createdAt < now)) await this.addNewKey(now, now);
    return { revoked, signing: this.current() };
  }

  /**
   * Re-reads the key set from the store (new keys from other processes' rotations, revocations). Throws
   * KeyUnreadableError, after taking every key it could read, if a stored key opens with none of the KEKs given.
   * A ring that makes its own keys never stays without one that signs: when the store lost its key set (a Redis
   * restarted without persistence; its sessions and revocations went with it, and the tokens the lost keys signed no
   * longer verify), the reload that finds it so (the scheduled tick, a feed wake-up, an unknown kid) makes a new one.
   */
  async reload(): Promise<void> {
    const read = ++this.reads;
    const keys = await this.store.listKeys();
    if (this.provided) return this.loadProvided(this.provided, keys, read);
    await this.load(keys, read);
    if (this.generates) await this.ensureSigning();
  }

  /**
   * Takes a file's keys (at start, and again on SIGHUP): every key imported, then the set in use replaced only if one
   * of the new keys signs now; otherwise nothing changes and the error says why.
   */
  async useProvided(keys: readonly ProvidedKey[]): Promise<void> {
    const source = this.options.provided?.source;
    if (source === undefined) throw new Error("the signing keys do not come from a file");
    const loadedAt = this.clock.now();
    const imported = new Map<string, LoadedKey>();
    for (const k of keys) {
      const [privateKey, publicKey] = await Promise.all([importJWK(k.privateJwk, k.alg), importJWK(k.publicJwk, k.alg)]);
      imported.set(k.kid, {
        kid: k.kid,
        alg: k.alg,
        createdAt: k.activateAt ?? loadedAt,
        activateAt: k.activateAt ?? 0,
        revokedAt: undefined,
        publicJwk: k.publicJwk,
        privateKey: privateKey as CryptoKey,
        publicKey: publicKey as CryptoKey,
        sign: compactSigner(k.alg, privateKey as CryptoKey),
        refreshMac: refreshMac(k.kid, privateKey as CryptoKey),
      });
    }
    const read = ++this.reads;
    const listed = await this.store.listKeys();
    const candidate = { keys: imported, list: keys, loadedAt };
    const timeline = providedTimeline(candidate, listed);
    const now = this.clock.now();
    if (![...this.statesOf(timeline, now).values()].some((s) => s.state === "current")) {
      const started = timeline.filter((k) => activation(k) <= now);
      const why =
        keys.length === 0
          ? "it holds no key"
          : started.length === 0
            ? "no key in it has started (every tessera_activate_at is in the future)"
            : timeline.every((k) => k.revokedAt !== undefined)
              ? "every key in it is revoked"
              : "every key in it that has started is revoked";
      throw new Error(`${source}: no key can sign now: ${why}`);
    }
    for (const kid of this.provided?.keys.keys() ?? []) if (!imported.has(kid)) this.withdrawn.add(kid);
    for (const kid of imported.keys()) this.withdrawn.delete(kid);
    this.provided = candidate;
    this.loadProvided(candidate, listed, read, true);
  }

  /** Every kept key with its state now, newest activation first (removed keys are gone from the store soon). */
  list(): Array<LoadedKey & KeyStatus> {
    const states = this.states(this.clock.now());
    const position = new Map(this.stored.map((k, i) => [k.kid, i]));
    return [...this.byKid.values()]
      .map((k) => ({ ...k, ...states.get(k.kid)! }))
      .sort((a, b) => b.activateAt - a.activateAt || position.get(b.kid)! - position.get(a.kid)!);
  }

  /** Public keys, for JWKS: next, current and retired keys; never revoked or removed ones, never a symmetric key. */
  publicKeys(): JWK[] {
    return this.list()
      .filter((k) => k.state === "next" || k.state === "current" || k.state === "retired")
      .filter((k) => !isMacAlgorithm(k.alg) && k.publicJwk.kty !== "oct" && !("k" in k.publicJwk) && !("d" in k.publicJwk))
      .map((k) => ({ ...k.publicJwk }));
  }

  private usable(kid: string): LoadedKey | undefined {
    const k = this.byKid.get(kid);
    if (!k) return undefined;
    return this.states(this.clock.now()).get(kid)?.state === "removed" ? undefined : k;
  }

  /** The signing key at `now`; remembered until the next activation in the timeline (Issue asks twice per call). */
  private current(now = this.clock.now()): LoadedKey | undefined {
    const memo = this.currentMemo;
    if (memo && now >= memo.from && now < memo.until) return memo.key;
    let key: LoadedKey | undefined;
    for (const [kid, s] of this.states(now)) if (s.state === "current") key = this.byKid.get(kid);
    const later = this.stored.filter((k) => k.revokedAt === undefined && activation(k) > now).map(activation);
    this.currentMemo = { key, from: now, until: Math.min(...later, Infinity) };
    return key;
  }

  private states(now: number): Map<string, KeyStatus> {
    return this.statesOf(this.stored, now);
  }

  /**
   * keyStates of a timeline. Keys from a file sign whatever their algorithm (the file decides), and a file's key
   * without `tessera_activate_at` (activation 0) retires when the first dated key after it starts; with none, it
   * stays retired (published, verifying) for as long as the file holds it.
   */
  private statesOf(timeline: readonly StoredKey[], now: number): Map<string, KeyStatus> {
    if (!this.options.provided) return keyStates(timeline, this.alg, now, this.policy.retainMs);
    const states = keyStates(timeline, undefined, now, this.policy.retainMs);
    const dated = timeline.filter((k) => k.revokedAt === undefined && activation(k) > 0 && activation(k) <= now).map(activation);
    const firstDated = dated.length > 0 ? Math.min(...dated) : undefined;
    for (const [kid, s] of states) {
      if ((s.state !== "retired" && s.state !== "removed") || s.retiredAt !== 0) continue;
      if (firstDated === undefined) states.set(kid, { state: "retired" });
      else {
        const removedAt = firstDated + this.policy.retainMs;
        states.set(kid, { state: now < removedAt ? "retired" : "removed", retiredAt: firstDated, removedAt });
      }
    }
    return states;
  }

  private inState(state: KeyState, now: number): LoadedKey[] {
    const states = this.states(now);
    return [...this.byKid.values()].filter((k) => states.get(k.kid)?.state === state).sort((a, b) => a.activateAt - b.activateAt);
  }

  private newestKid(): string | null {
    return this.listed.at(-1)?.kid ?? null;
  }

  /** reload, but a key this process cannot open is only left out (reload told at start, and the periodic reload logs it). */
  private async refresh(): Promise<void> {
    try {
      await this.reload();
    } catch (err) {
      if (!(err instanceof KeyUnreadableError)) throw err;
    }
  }

  /** A new key signing from `activateAt`: a generated key pair (its private part sealed with a KEK), or the HS256 record. */
  private async fresh(activateAt: number): Promise<StoredKey> {
    const now = this.clock.now();
    if (this.hmacKid !== undefined) {
      const kid = this.hmacKid;
      return { kid, alg: "HS256", createdAt: now, activateAt, publicJwk: { kty: "oct", kid, alg: "HS256", use: "sig" } };
    }
    const key = await newKey(this.alg as SigningAlgorithm, this.clock);
    key.activateAt = activateAt;
    const { encryption } = this.options;
    return encryption ? { ...key, privateJwk: encryption.seal(key.kid, key.privateJwk as JWK) } : key;
  }

  /**
   * Seals again, under the current KEK, every stored private key that is plain or sealed under another KEK (a
   * compare-and-set per key: another process doing the same at once is not undone). True if any changed.
   */
  private async reseal(encryption: KeyEncryption): Promise<boolean> {
    let changed = false;
    for (const k of this.listed) {
      if (k.privateJwk === undefined || !encryption.stale(k.privateJwk)) continue;
      const jwk = encryption.open(k.kid, k.privateJwk);
      changed = (await this.store.replacePrivateKey({ kid: k.kid, from: k.privateJwk, to: encryption.seal(k.kid, jwk) })) || changed;
    }
    return changed;
  }

  /** Adds a key signing from `activateAt` (compare-and-set on the newest key; drops removed keys); loads the result. */
  private async addNewKey(activateAt: number, now: number): Promise<{ added: boolean; key: LoadedKey }> {
    // As ensureSigning: the newest key the caller decided on, not one a load brought while the key was being made.
    const expectNewest = this.newestKid();
    const key = await this.fresh(activateAt);
    const read = ++this.reads;
    const states = this.states(now);
    const drop = this.stored
      .filter((k) => {
        const s = states.get(k.kid)!;
        // Removed keys, and revoked ones no token could still need.
        return s.state === "removed" || (s.state === "revoked" && (k.revokedAt ?? now) + this.policy.retainMs <= now);
      })
      .map((k) => k.kid);
    const { added, keys } = await this.store.addKey(key, { expectNewest, drop });
    try {
      await this.load(keys, read);
    } catch (err) {
      if (!(err instanceof KeyUnreadableError)) throw err;
    }
    // Another process added one first: that one is ours too.
    return { added, key: this.byKid.get(added ? key.kid : this.newestKid()!)! };
  }

  /**
   * A file's key gets a record in the store (kid, alg, public key; never the private part) before its revocation mark
   * can be set there; of several processes doing it at once one adds it.
   */
  private async recordProvided(kid: string, now: number): Promise<void> {
    const key = this.provided?.keys.get(kid);
    if (!key) return;
    for (let attempt = 0; attempt < 5; attempt++) {
      const listed = await this.store.listKeys();
      if (listed.some((k) => k.kid === kid)) return;
      const record: StoredKey = { kid, alg: key.alg, createdAt: now, activateAt: now, publicJwk: key.publicJwk };
      if ((await this.store.addKey(record, { expectNewest: listed.at(-1)?.kid ?? null })).added) return;
    }
    throw new Error(`key ${kid} could not be recorded in the store`);
  }

  /**
   * File mode: the file's keys, with the revocation marks the store holds for them (`read`: as load; a new file's are
   * taken `always`).
   */
  private loadProvided(provided: NonNullable<KeyRing["provided"]>, listed: StoredKey[], read: number, always = false): void {
    if (read < this.held && !always) return;
    this.held = Math.max(this.held, read);
    const timeline = providedTimeline(provided, listed);
    const next = new Map<string, LoadedKey>();
    for (const k of timeline) next.set(k.kid, { ...provided.keys.get(k.kid)!, revokedAt: k.revokedAt });
    this.byKid = next;
    this.listed = listed;
    this.stored = timeline;
    this.currentMemo = undefined;
  }

  /**
   * Store (and HS256) mode: the store's keys, imported once each (sealed ones opened). A key that none of the KEKs
   * opens is left out of the timeline, the others taken, and then the error thrown. `read`: the number of the store
   * read that answered `keys` (this.reads when it was sent): a set read before the one the ring holds is not taken,
   * as loads overlap (importing a new key awaits) and an older set must never undo a newer one (a revocation mark).
   */
  private async load(keys: StoredKey[], read: number): Promise<void> {
    const next = new Map<string, LoadedKey>();
    const unreadable: KeyUnreadableError[] = [];
    for (const k of keys) {
      const had = this.byKid.get(k.kid);
      if (had) {
        next.set(k.kid, { ...had, revokedAt: k.revokedAt });
        continue;
      }
      try {
        const loaded = await this.loadStored(k);
        if (loaded) next.set(k.kid, loaded);
      } catch (err) {
        if (!(err instanceof KeyUnreadableError)) throw err;
        unreadable.push(err);
      }
    }
    if (read < this.held) return;
    this.held = read;
    this.byKid = next;
    this.listed = keys;
    this.stored = keys.filter((k) => !unreadable.some((e) => e.kid === k.kid));
    this.currentMemo = undefined;
    if (unreadable[0]) throw unreadable[0];
  }

  /**
   * One stored key, imported: undefined for a record that cannot sign or verify here (an HS256 record of another
   * secret, a file key's revocation record).
   */
  private async loadStored(k: StoredKey): Promise<LoadedKey | undefined> {
    const base = { kid: k.kid, alg: k.alg, createdAt: k.createdAt, activateAt: activation(k), revokedAt: k.revokedAt, publicJwk: k.publicJwk };
    if (isMacAlgorithm(k.alg)) {
      if (this.options.hmac === undefined || k.kid !== this.hmacKid) return undefined;
      const secret = await hmacKey(this.options.hmac.secret);
      return { ...base, privateKey: secret, publicKey: secret, sign: compactSigner("HS256", secret) };
    }
    if (k.privateJwk === undefined) return undefined;
    const privateJwk = openPrivateKey(k.kid, k.privateJwk, this.options.encryption);
    const [privateKey, publicKey] = await Promise.all([importJWK(privateJwk, k.alg), importJWK(k.publicJwk, k.alg)]);
    return {
      ...base,
      privateKey: privateKey as CryptoKey,
      publicKey: publicKey as CryptoKey,
      sign: compactSigner(k.alg as SigningAlgorithm, privateKey as CryptoKey),
      refreshMac: refreshMac(k.kid, privateKey as CryptoKey),
    };
  }
}

/** The file's keys as a timeline for keyStates, each with the revocation mark the store holds for its kid. */
function providedTimeline(provided: NonNullable<KeyRing["provided"]>, listed: readonly StoredKey[]): StoredKey[] {
  const marks = new Map(listed.filter((k) => k.revokedAt !== undefined).map((k) => [k.kid, k.revokedAt!]));
  return provided.list.map((k) => {
    const revokedAt = marks.get(k.kid);
    return {
      kid: k.kid,
      alg: k.alg,
      createdAt: k.activateAt ?? provided.loadedAt,
      activateAt: k.activateAt ?? 0,
      publicJwk: k.publicJwk,
      ...(revokedAt === undefined ? {} : { revokedAt }),
    };
  });
}

/**
 * The kid of an HS256 secret: the same in every process that has the secret, without giving it away (a hash of it;
 * every HS256 token already lets anyone test a guess of the secret).
 */
export function hmacKid(secret: Buffer): string {
  return `hs256-${createHash("sha256").update("tessera HS256 key id\0").update(secret).digest().subarray(0, 12).toString("base64url")}`;
}

function hmacKey(secret: Buffer): Promise<CryptoKey> {
  return webcrypto.subtle.importKey("raw", secret, { name: "HMAC", hash: "SHA-256" }, false, ["sign", "verify"]) as Promise<CryptoKey>;
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
