/**
 * Signs a JWS in compact serialisation (RFC 7515) with node:crypto, from the private key jose imported. jose's
 * CompactSign goes through WebCrypto, whose per-call overhead costs more than the signature itself. Measured with 64
 * ES256 signatures in flight: jose 85-95 µs of CPU per token, 53-59 µs of it on the main thread; node:crypto's
 * callback form 40-56 µs, 12-20 µs on the main thread (the signing runs on libuv's thread pool, off the event loop
 * that serves Introspect). Issue signs two tokens and Refresh two more. Verification stays with jose
 * (src/domain/tokens.ts), and test/unit/jws-sign.test.ts holds every algorithm's output to jose's compactVerify.
 * HS256 (an HMAC with a shared secret, only when configured so) is computed in place: it costs less than a hop.
 */
import { KeyObject, constants, createHmac, sign, type SignKeyObjectInput } from "node:crypto";
import type { CryptoKey } from "jose";

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

/**
 * The JWS signing input of a protected header and a payload (both JSON-serialisable): base64url(header) "."
 * base64url(payload), each the value's JSON in UTF-8. Made once per token: its length bounds the token's before
 * anything is signed (TokenCodec.prepare), and the same string is then signed.
 */
export function signingInput(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  return `${b64(JSON.stringify(header))}.${b64(JSON.stringify(payload))}`;
}

/** Signs a signing input (signingInput) into the compact serialisation `input.signature`. */
export type CompactSigner = (input: string) => Promise<string>;

export function compactSigner(alg: JwsAlgorithm, privateKey: CryptoKey): CompactSigner {
  const key = KeyObject.from(privateKey as Parameters<typeof KeyObject.from>[0]);
  const signature = signatureOf(alg, key);
  return async (input) => `${input}.${(await signature(Buffer.from(input, "ascii"))).toString("base64url")}`;
}

/** RFC 7518 section 3 (and RFC 8037 for EdDSA): the algorithm's signature over the signing input. */
function signatureOf(alg: JwsAlgorithm, key: KeyObject): (input: Buffer) => Promise<Buffer> {
  switch (alg) {
    case "ES256":
      return (input) => signOnPool("sha256", input, { key, dsaEncoding: "ieee-p1363" }); // r || s, 64 bytes
    case "ES384":
      return (input) => signOnPool("sha384", input, { key, dsaEncoding: "ieee-p1363" }); // r || s, 96 bytes
    case "EdDSA":
      return (input) => signOnPool(null, input, key);
    case "RS256":
      return (input) => signOnPool("sha256", input, key); // RSASSA-PKCS1-v1_5
    case "PS256":
      return (input) => signOnPool("sha256", input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 });
    case "HS256":
      if (key.type !== "secret") throw new Error("HS256 needs a secret key");
      return async (input) => createHmac("sha256", key).update(input).digest();
  }
}

/** crypto.sign's callback form: the signature is computed on libuv's thread pool. */
function signOnPool(hash: string | null, input: Buffer, key: KeyObject | SignKeyObjectInput): Promise<Buffer> {
  return new Promise((resolve, reject) => sign(hash, input, key, (err, sig) => (err ? reject(err) : resolve(sig))));
}

function b64(json: string): string {
  return Buffer.from(json, "utf8").toString("base64url");
}
