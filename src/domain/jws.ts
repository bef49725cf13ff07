/**
 * JWS in compact serialisation (RFC 7515) with node:crypto, from the keys jose imported: signing, and the signature
 * check of verification. jose's CompactSign and compactVerify go through WebCrypto, whose per-call overhead costs more
 * than the signature itself, and whose ECDSA check runs on the event loop. Measured with 64 ES256 signatures in flight:
 * jose 85-95 µs of CPU per token, 53-59 µs of it on the main thread; node:crypto's callback form 40-56 µs, 12-20 µs on
 * the main thread (the signing runs on libuv's thread pool, off the event loop that serves Introspect). Verifying a
 * refresh token with jose cost about 75 µs of the main thread. Issue signs two tokens, Refresh verifies one and signs
 * two more. A signature that costs about what the hop to the pool does (ES256 19 µs, EdDSA 23 µs, against ES384's
 * 540 and RSA's 230) goes to the signing thread instead, a turn's worth per message (signing-thread.ts): see
 * `asymmetric`. test/unit/jws.test.ts holds both directions to jose: what this signs, jose verifies; what jose signs,
 * this verifies, and refuses what jose refuses.
 * HS256 (an HMAC with a shared secret, only when configured so) is computed in place: it costs less than a hop.
 */
import {
  KeyObject,
  constants,
  createHmac,
  createSecretKey,
  hkdfSync,
  sign,
  timingSafeEqual,
  verify,
  type SignKeyObjectInput,
} from "node:crypto";
import type { CryptoKey } from "jose";
import { signingThread } from "./signing-thread.js";
import { kept } from "./kept.js";

/** The asymmetric algorithms Tessera signs with (RFC 7518 names): their public keys are what the JWKS publishes. */
export const SIGNING_ALGORITHMS = ["ES256", "ES384", "EdDSA", "RS256", "PS256"] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** The symmetric ones: a secret shared through configuration, never published, never stored. */
export const MAC_ALGORITHMS = ["HS256"] as const;
export type MacAlgorithm = (typeof MAC_ALGORITHMS)[number];

/** Every algorithm a token of Tessera's may be signed with. */
export type JwsAlgorithm = SigningAlgorithm | MacAlgorithm;

export function isMacAlgorithm(alg: string): alg is MacAlgorithm {
  return (MAC_ALGORITHMS as readonly string[]).includes(alg);
}

export function isJwsAlgorithm(alg: string): alg is JwsAlgorithm {
  return isMacAlgorithm(alg) || (SIGNING_ALGORITHMS as readonly string[]).includes(alg);
}

/**
 * The JWS signing input of a protected header and a payload (both JSON-serialisable): base64url(header) "."
 * base64url(payload), each the value's JSON in UTF-8. Made once per token: its length bounds the token's before
 * anything is signed (TokenCodec.prepare), and the same string is then signed.
 */
export function signingInput(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  return `${encodedHeader(JSON.stringify(header))}.${b64(JSON.stringify(payload))}`;
}

/**
 * base64url of a protected header's JSON. A process signs with a handful of headers (alg, kid, typ), so the last 64
 * are kept (oldest out first).
 */
const encodedHeader = kept(64, Infinity, (json) => b64(json));

/** Signs a signing input (signingInput) into the compact serialisation `input.signature`. */
export type CompactSigner = (input: string) => Promise<string>;

export function compactSigner(alg: JwsAlgorithm, privateKey: CryptoKey | KeyObject): CompactSigner {
  const key = keyObject(privateKey);
  if (isMacAlgorithm(alg)) {
    if (key.type !== "secret") throw new Error("HS256 needs a secret key");
    // On the signing thread too, a turn's MACs in one message: in place, an HMAC cost the event loop 5-6 µs a token
    // under one-subject Issue (CPU profile; createHmac's set-up most of it).
    const mac = signingThread.signer("sha256", key, true);
    return async (input) => `${input}.${await mac(input)}`;
  }
  // RFC 7518 section 3 (RFC 8037 for EdDSA): the algorithm's signature over the signing input.
  const { hash, options, onSigningThread } = asymmetric(alg, key);
  if (onSigningThread) {
    const signature = signingThread.signer(hash, options);
    return async (input) => `${input}.${await signature(input)}`;
  }
  return async (input) => `${input}.${(await signOnPool(hash, Buffer.from(input, "ascii"), options)).toString("base64url")}`;
}

/**
 * Checks the signature of a compact JWS: `input` is its signing input (`header.payload`, as it came), `signature` its
 * third part decoded. Resolves to whether it is this key's signature over that input, by this algorithm; never
 * rejects on input. ECDSA signatures are r || s of exactly the curve's size (RFC 7518 section 3.4), never DER.
 */
export type SignatureCheck = (input: string, signature: Buffer) => Promise<boolean>;

export function signatureCheck(alg: JwsAlgorithm, publicKey: CryptoKey | KeyObject): SignatureCheck {
  const key = keyObject(publicKey);
  const bits = key.asymmetricKeyDetails?.modulusLength;
  if (bits !== undefined && bits < 2048) throw new Error(`${alg} needs a key of 2048 bits or more`); // as jose requires
  if (isMacAlgorithm(alg)) {
    const mac = hmac(key);
    return async (input, signature) => {
      const expected = mac(input);
      return signature.length === expected.length && timingSafeEqual(signature, expected);
    };
  }
  const { hash, options, size } = asymmetric(alg, key);
  return async (input, signature) =>
    size !== null && signature.length !== size ? false : verifyOnPool(hash, Buffer.from(input, "ascii"), options, signature);
}

/**
 * RFC 7518 section 3 (and RFC 8037 for EdDSA), for signing and checking alike: each asymmetric algorithm's hash and
 * key options, and the exact size of its signature where the algorithm fixes one (ECDSA's r || s).
 * `onSigningThread`: its signature costs about what handing it to the thread pool and back does (one signature,
 * measured: ES256 19 µs, EdDSA 23 µs; ES384 540 µs, RS256 and PS256 230 µs go to the pool), so it goes to the signing
 * thread, a turn's signatures in one message (signing-thread.ts). Made in place on the event loop, ES256 had beaten the
 * pool under h2load Issue for one subject (4 435-4 700 against 3 741-3 957 calls/s); the signing thread beats that
 * (signing-thread.ts). Checks stay on the pool: an ECDSA or EdDSA check costs 46-65 µs, and a stranger chooses how many
 * a forged token costs.
 */
function asymmetric(
  alg: SigningAlgorithm,
  key: KeyObject,
): { hash: string | null; options: KeyObject | SignKeyObjectInput; size: number | null; onSigningThread: boolean } {
  switch (alg) {
    case "ES256":
      return { hash: "sha256", options: { key, dsaEncoding: "ieee-p1363" }, size: 64, onSigningThread: true };
    case "ES384":
      return { hash: "sha384", options: { key, dsaEncoding: "ieee-p1363" }, size: 96, onSigningThread: false };
    case "EdDSA":
      return { hash: null, options: key, size: null, onSigningThread: true };
    case "RS256":
      return { hash: "sha256", options: key, size: null, onSigningThread: false }; // RSASSA-PKCS1-v1_5
    case "PS256":
      return { hash: "sha256", options: { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, size: null, onSigningThread: false };
  }
}

/** HMAC-SHA256 under a secret key (HS256), computed in place. */
function hmac(key: KeyObject): (input: Buffer | string) => Buffer {
  if (key.type !== "secret") throw new Error("HS256 needs a secret key");
  return (input) => createHmac("sha256", key).update(input).digest();
}

/**
 * A refresh token's MAC: HS256 under a secret derived from a signing key's private key, so that checking a refresh
 * token (which only Tessera ever reads) costs an HMAC instead of a signature check, and signing one an HMAC instead of
 * a signature. The secret is HKDF-SHA256 (RFC 5869) of the private key's PKCS #8 encoding, salted for this one use and
 * bound to the key's kid: every process that holds the key derives the same secret, nothing else can, it is never
 * published nor stored, and it lives and dies with its key (retired, revoked, removed).
 */
export interface RefreshMac {
  sign: CompactSigner;
  check: SignatureCheck;
}

/** A MAC'd refresh token's `alg`, and the bytes of its MAC. */
export const REFRESH_MAC_ALG = "HS256";
export const REFRESH_MAC_BYTES = 32;
const REFRESH_MAC_SALT = "tessera refresh-token MAC v1";

export function refreshMac(kid: string, privateKey: CryptoKey | KeyObject): RefreshMac {
  const der = keyObject(privateKey).export({ format: "der", type: "pkcs8" });
  const secret = createSecretKey(Buffer.from(hkdfSync("sha256", der, REFRESH_MAC_SALT, `kid ${kid}`, REFRESH_MAC_BYTES)));
  return { sign: compactSigner(REFRESH_MAC_ALG, secret), check: signatureCheck(REFRESH_MAC_ALG, secret) };
}

function keyObject(key: CryptoKey | KeyObject): KeyObject {
  return key instanceof KeyObject ? key : KeyObject.from(key as Parameters<typeof KeyObject.from>[0]);
}

/** crypto.verify's callback form, on libuv's thread pool; a key or signature it cannot use is no match. */
function verifyOnPool(hash: string | null, input: Buffer, key: KeyObject | SignKeyObjectInput, signature: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      verify(hash, input, key, signature, (err, ok) => resolve(err === null && ok));
    } catch {
      resolve(false);
    }
  });
}

/** crypto.sign's callback form: the signature is computed on libuv's thread pool. */
function signOnPool(hash: string | null, input: Buffer, key: KeyObject | SignKeyObjectInput): Promise<Buffer> {
  return new Promise((resolve, reject) => sign(hash, input, key, (err, sig) => (err ? reject(err) : resolve(sig))));
}

function b64(json: string): string {
  return Buffer.from(json, "utf8").toString("base64url");
}
