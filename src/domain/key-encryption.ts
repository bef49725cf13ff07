/**
 * Signing keys at rest: the private part of a key kept in the store is sealed with a key-encryption key (KEK), so a
 * dump of the store, a backup or a replica holds no usable private key. AES-256-GCM (node:crypto), a random 96-bit IV
 * per seal, the kid as additional authenticated data (a sealed private key moved under another kid does not open).
 * The envelope names its KEK by the first 8 bytes of the KEK's SHA-256 (hex), so a process knows which of the KEKs
 * it holds (current, previous) opens it, and can tell at start that none does.
 *
 * Rotating the KEK: the previous one is kept for opening only; at start every key sealed under it (or stored in plain
 * before a KEK was set) is sealed again under the current one (KeyRing.init, KeyStore.replacePrivateKey).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import type { JWK } from "jose";

/** A private JWK sealed under a KEK: what the store keeps in place of the JWK. */
export interface SealedPrivateKey {
  enc: "A256GCM";
  /** Which KEK: the first 8 bytes of its SHA-256, hex. */
  kek: string;
  /** base64url: the 96-bit IV, the ciphertext of the JWK's JSON, the 128-bit tag. */
  iv: string;
  ct: string;
  tag: string;
}

/** A key's private part as the store keeps it: sealed, or (no KEK, or stored before one was set) a plain JWK. */
export type StoredPrivateKey = JWK | SealedPrivateKey;

/** The variables the KEKs come from, for the messages that tell an operator what to change. */
export const KEK_VARIABLE = "TESSERA_KEY_ENCRYPTION_KEY";
export const PREVIOUS_KEK_VARIABLE = "TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS";

/** A stored private key that none of the KEKs given can open (or a sealed one with no KEK given). */
export class KeyUnreadableError extends Error {
  override readonly name = "KeyUnreadableError";
  constructor(
    readonly kid: string,
    message: string,
  ) {
    super(message);
  }
}

export function isSealed(p: unknown): p is SealedPrivateKey {
  if (typeof p !== "object" || p === null) return false;
  const e = p as Record<string, unknown>;
  return e.enc === "A256GCM" && typeof e.kek === "string" && typeof e.iv === "string" && typeof e.ct === "string" && typeof e.tag === "string";
}

/** Names a KEK without giving anything of it away: the first 8 bytes of its SHA-256, hex. */
export function kekId(kek: Buffer): string {
  return createHash("sha256").update(kek).digest().subarray(0, 8).toString("hex");
}

export class KeyEncryption {
  /** kekId of the current KEK (seals and opens) and of the previous one (opens only). */
  readonly id: string;
  readonly previousId: string | undefined;

  constructor(
    private readonly current: Buffer,
    private readonly previous?: Buffer,
  ) {
    for (const k of [current, previous]) if (k !== undefined && k.length !== 32) throw new Error("a key-encryption key is 32 bytes");
    this.id = kekId(current);
    this.previousId = previous && kekId(previous);
  }

  /** Seals a private JWK under the current KEK, bound to its kid. */
  seal(kid: string, jwk: JWK): SealedPrivateKey {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.current, iv);
    cipher.setAAD(Buffer.from(kid, "utf8"));
    const ct = Buffer.concat([cipher.update(JSON.stringify(jwk), "utf8"), cipher.final()]);
    return { enc: "A256GCM", kek: this.id, iv: iv.toString("base64url"), ct: ct.toString("base64url"), tag: cipher.getAuthTag().toString("base64url") };
  }

  /** Whether a stored private part should be sealed again under the current KEK: plain, or sealed under another. */
  stale(stored: StoredPrivateKey): boolean {
    return !isSealed(stored) || stored.kek !== this.id;
  }

  /** Opens a sealed private key with the KEK it names (a plain one is returned as it is). */
  open(kid: string, stored: StoredPrivateKey): JWK {
    if (!isSealed(stored)) return stored;
    const kek = stored.kek === this.id ? this.current : stored.kek === this.previousId ? this.previous : undefined;
    const which = kek === this.current ? KEK_VARIABLE : PREVIOUS_KEK_VARIABLE;
    if (kek === undefined) {
      const previous = this.previousId === undefined ? `, and ${PREVIOUS_KEK_VARIABLE} is unset` : ` nor ${PREVIOUS_KEK_VARIABLE} (${this.previousId})`;
      throw new KeyUnreadableError(
        kid,
        `${KEK_VARIABLE}: signing key ${kid} in the store is sealed under key-encryption key ${stored.kek}, which is not ` +
          `${KEK_VARIABLE} (${this.id})${previous}: give the KEK it was sealed with (as ${PREVIOUS_KEK_VARIABLE} when rotating)`,
      );
    }
    try {
      const decipher = createDecipheriv("aes-256-gcm", kek, Buffer.from(stored.iv, "base64url"));
      decipher.setAAD(Buffer.from(kid, "utf8"));
      decipher.setAuthTag(Buffer.from(stored.tag, "base64url"));
      const plain = Buffer.concat([decipher.update(Buffer.from(stored.ct, "base64url")), decipher.final()]);
      return JSON.parse(plain.toString("utf8")) as JWK;
    } catch {
      throw new KeyUnreadableError(kid, `${which}: the sealed private key of signing key ${kid} does not open (altered, or moved from another kid)`);
    }
  }
}

/**
 * A stored private part as a JWK: opened with `encryption` if sealed. Without a KEK, a sealed key cannot be read: the
 * error names the variable to set.
 */
export function openPrivateKey(kid: string, stored: StoredPrivateKey, encryption: KeyEncryption | undefined): JWK {
  if (encryption) return encryption.open(kid, stored);
  if (!isSealed(stored)) return stored;
  throw new KeyUnreadableError(
    kid,
    `${KEK_VARIABLE}: signing key ${kid} in the store is sealed under key-encryption key ${stored.kek}, and ${KEK_VARIABLE} is unset`,
  );
}
