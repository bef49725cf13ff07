/**
 * Sensitive claims (IssueRequest.sensitive_claims) travel inside the tokens sealed: a compact JWE (RFC 7516) of their
 * JSON object, `alg: "dir"`, `enc: "A256GCM"`, under a 256-bit key only Tessera's processes hold (TESSERA_CLAIMS_KEY),
 * so neither the bearer nor anyone verifying with the JWKS (a sidecar included) can read them. The access token carries
 * the JWE as its claim `sensitive_claims`, the refresh token in its grant (`grant.enc`), so Refresh hands them on
 * without state; only the authority's Introspect opens them, for callers holding `introspect.sensitive`.
 *
 * The protected header is exactly {"alg":"dir","enc":"A256GCM","kid":...}: kid names the key that sealed it (an HMAC of
 * a fixed label under the key: it tells keys apart and says nothing of them), so during a rotation
 * (TESSERA_CLAIMS_KEY_PREVIOUS) a token is opened by the key that sealed it, and a successor is sealed again under the
 * current key. AES-GCM with a fresh random 96-bit IV per seal (a successor sealed by the current key carries the same
 * JWE on, unchanged: no new encryption). AES-GCM hides the content, not its length: the JSON is padded with trailing
 * spaces (still the same JSON) to a multiple of 64 bytes, so `true` and `false`, or two codes of nearly equal length,
 * make JWEs of the same length. Built on node:crypto, as signing is (jws.ts), for speed on Introspect's path;
 * jose opens what this seals and this opens what jose seals (test/unit/sealed-claims.test.ts).
 */
import { createCipheriv, createDecipheriv, createHmac, createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { TesseraError } from "./errors.js";

/** The access token's claim that holds the JWE; reserved (tokens.ts RESERVED_CLAIMS), never among `claims`. */
export const SEALED_CLAIM = "sensitive_claims";
/** The refresh token grant's member that holds the same JWE. */
export const SEALED_GRANT_MEMBER = "enc";
/** A claims key: 32 bytes (AES-256). */
export const CLAIMS_KEY_BYTES = 32;
/** A compact JWE as seal makes it: header, empty encrypted key ("dir"), a 96-bit IV, ciphertext, a 128-bit tag. */
export const SEALED_JWE = /^[A-Za-z0-9_-]+\.\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/;

export interface ClaimsKeys {
  /** Seals, and opens what it sealed. */
  current: Uint8Array;
  /** Opens only: the key before the current one, during a rotation. */
  previous?: Uint8Array | undefined;
}

interface SealingKey {
  kid: string;
  secret: KeyObject;
  /** base64url of the protected header naming this key: the first part of every JWE it seals, and their AAD. */
  header: string;
}

const KID_LABEL = "tessera sensitive claims key id";
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** The plaintext's length is rounded up to a multiple of this, with spaces. */
const PAD_BYTES = 64;

/** The kid of a claims key: 72 bits of HMAC-SHA256(key, label), 12 base64url characters. */
export function claimsKeyId(key: Uint8Array): string {
  return createHmac("sha256", key).update(KID_LABEL).digest().subarray(0, 9).toString("base64url");
}

export class ClaimsCipher {
  private readonly current: SealingKey;
  private readonly byKid = new Map<string, SealingKey>();

  constructor(keys: ClaimsKeys) {
    this.current = sealingKey(keys.current);
    this.byKid.set(this.current.kid, this.current);
    if (keys.previous !== undefined) {
      const previous = sealingKey(keys.previous);
      if (previous.kid === this.current.kid) throw new Error("the previous claims key is the current one");
      this.byKid.set(previous.kid, previous);
    }
  }

  /** The current key's kid (the one new JWEs name). */
  get kid(): string {
    return this.current.kid;
  }

  /** The claims as a compact JWE under the current key. */
  seal(claims: Record<string, unknown>): string {
    const key = this.current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key.secret, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(Buffer.from(key.header, "ascii"));
    const json = Buffer.from(JSON.stringify(claims), "utf8");
    const plaintext = Buffer.alloc(Math.ceil(json.length / PAD_BYTES) * PAD_BYTES, 0x20);
    json.copy(plaintext);
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return `${key.header}..${iv.toString("base64url")}.${ciphertext.toString("base64url")}.${cipher.getAuthTag().toString("base64url")}`;
  }

  /**
   * The claims a JWE holds. FAILED_PRECONDITION when no configured key sealed it (it names the kid, so an operator can
   * tell which key is missing); INTERNAL when it is not a JWE as seal makes them or does not decrypt (a JWE inside a
   * token Tessera signed: neither happens without a bug or a stolen signing key).
   */
  open(jwe: string): Record<string, unknown> {
    const parts = SEALED_JWE.test(jwe) ? jwe.split(".") : [];
    const [header, , iv, ciphertext, tag] = parts;
    const kid = header === undefined ? undefined : kidOf(header);
    if (header === undefined || iv === undefined || ciphertext === undefined || tag === undefined || kid === undefined) {
      throw new TesseraError("internal", "the token's sensitive claims are not sealed as Tessera seals them");
    }
    const key = this.byKid.get(kid);
    if (key === undefined) {
      throw new TesseraError(
        "failed_precondition",
        `the token's sensitive claims are sealed under claims key ${kid}, which is neither TESSERA_CLAIMS_KEY nor TESSERA_CLAIMS_KEY_PREVIOUS`,
      );
    }
    let claims: unknown;
    try {
      const decipher = createDecipheriv("aes-256-gcm", key.secret, Buffer.from(iv, "base64url"), { authTagLength: TAG_BYTES });
      decipher.setAAD(Buffer.from(header, "ascii"));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      const plaintext = Buffer.concat([decipher.update(Buffer.from(ciphertext, "base64url")), decipher.final()]);
      claims = JSON.parse(plaintext.toString("utf8"));
    } catch (err) {
      throw new TesseraError("internal", "the token's sensitive claims cannot be decrypted", { cause: err });
    }
    if (typeof claims !== "object" || claims === null || Array.isArray(claims)) {
      throw new TesseraError("internal", "the token's sensitive claims are not a JSON object");
    }
    return claims as Record<string, unknown>;
  }

  /**
   * What a successor token carries: the same JWE when the current key sealed it (no new encryption), else its claims
   * sealed again under the current key; FAILED_PRECONDITION (from open) when no configured key sealed it.
   */
  reseal(jwe: string): string {
    const header = jwe.slice(0, jwe.indexOf("."));
    if (header === this.current.header && SEALED_JWE.test(jwe)) return jwe;
    return this.seal(this.open(jwe));
  }
}

function sealingKey(raw: Uint8Array): SealingKey {
  if (raw.byteLength !== CLAIMS_KEY_BYTES) throw new Error(`a claims key is ${CLAIMS_KEY_BYTES} bytes, not ${raw.byteLength}`);
  const kid = claimsKeyId(raw);
  const header = Buffer.from(JSON.stringify({ alg: "dir", enc: "A256GCM", kid }), "utf8").toString("base64url");
  return { kid, secret: createSecretKey(Buffer.from(raw)), header };
}

/** The kid of an encoded protected header that is exactly {alg: "dir", enc: "A256GCM", kid}; undefined otherwise. */
function kidOf(encodedHeader: string): string | undefined {
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(encodedHeader, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) return undefined;
  const h = header as Record<string, unknown>;
  const names = Object.keys(h).sort().join(",");
  if (names !== "alg,enc,kid" || h.alg !== "dir" || h.enc !== "A256GCM" || typeof h.kid !== "string" || h.kid === "") return undefined;
  return h.kid;
}
