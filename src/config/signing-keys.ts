/**
 * The signing keys' configuration beyond the lifecycle's durations: the key-encryption key that seals private keys in
 * the store (TESSERA_KEY_ENCRYPTION_KEY or its _FILE, and _PREVIOUS or its _FILE while rotating it), the file of keys
 * from a secret manager (TESSERA_SIGNING_KEYS_FILE, read at start and again on SIGHUP), and the HS256 secret (or its
 * _FILE). The _FILE forms are read by their parser (variable.ts base64BytesFile). Files are read and
 * checked at start, so a bad one stops the process with a message naming the variable and the place in the file.
 * No message ever holds key material.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import type { JWK } from "jose";
import { SIGNING_ALGORITHMS, type JwsAlgorithm, type ProvidedKey, type SigningAlgorithm } from "../domain/keys.js";
import { ConfigError } from "./errors.js";
import { valueOrFile } from "./variable.js";

const FILE = "TESSERA_SIGNING_KEYS_FILE";
const KEK = "TESSERA_KEY_ENCRYPTION_KEY";
const KEK_PREVIOUS = "TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS";
const HS256_SECRET = "TESSERA_HS256_SECRET";

/** The `keys` variables as declared (config.ts VARIABLES.keys), beside the lifecycle's. */
export interface DeclaredKeyMaterial {
  encryptionKey: Buffer | undefined;
  encryptionKeyFile: Buffer | undefined;
  encryptionKeyPrevious: Buffer | undefined;
  encryptionKeyPreviousFile: Buffer | undefined;
  signingKeysFile: string | undefined;
  hs256Secret: Buffer | undefined;
  hs256SecretFile: Buffer | undefined;
}

/** What the KeyRing is given: the KEKs, the file's keys (and its path, for SIGHUP), the HS256 secret. */
export interface KeyMaterial {
  /** Seals private keys kept in the store (`current`), and opens them (`current` or `previous`). Unset: plain JWKs. */
  encryption: { current: Buffer; previous: Buffer | undefined } | undefined;
  /** TESSERA_SIGNING_KEYS_FILE, read: the keys come from it, not from the store. */
  signingKeysFile: { path: string; keys: readonly ProvidedKey[] } | undefined;
  hs256Secret: Buffer | undefined;
}

/** Reads the files and checks the variables together. */
export function loadKeyMaterial(d: DeclaredKeyMaterial, signingAlg: JwsAlgorithm): KeyMaterial {
  const current = valueOrFile(KEK, d.encryptionKey, d.encryptionKeyFile);
  const previous = valueOrFile(KEK_PREVIOUS, d.encryptionKeyPrevious, d.encryptionKeyPreviousFile);
  const hs256Secret = valueOrFile(HS256_SECRET, d.hs256Secret, d.hs256SecretFile);
  if (previous !== undefined && current === undefined) {
    throw new ConfigError(KEK_PREVIOUS, `needs ${KEK} (or ${KEK}_FILE): the previous KEK only opens keys for the current one to seal again`);
  }
  if (signingAlg === "HS256") {
    if (hs256Secret === undefined) {
      throw new ConfigError(HS256_SECRET, "must be set with TESSERA_SIGNING_ALG=HS256: base64 of at least 32 random bytes, the same on every process");
    }
    if (d.signingKeysFile !== undefined) throw new ConfigError(FILE, `holds asymmetric keys; HS256 signs with ${HS256_SECRET}: not both`);
  } else if (hs256Secret !== undefined) {
    throw new ConfigError(d.hs256Secret !== undefined ? HS256_SECRET : `${HS256_SECRET}_FILE`, "is only used with TESSERA_SIGNING_ALG=HS256");
  }
  return {
    encryption: current === undefined ? undefined : { current, previous },
    signingKeysFile: d.signingKeysFile === undefined ? undefined : { path: d.signingKeysFile, keys: readSigningKeysFile(d.signingKeysFile) },
    hs256Secret,
  };
}

/** The members of a private JWK Tessera takes from the file (others, such as x5c, are ignored). */
const JWK_MEMBERS = ["kty", "crv", "x", "y", "d", "n", "e", "p", "q", "dp", "dq", "qi"] as const;
/** The same spelling as a token's kid must have (domain/tokens.ts). */
const KID = /^[A-Za-z0-9_-]{1,128}$/;
const INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$/;
const MAX_FILE_BYTES = 1 << 20;
const ACTIVATE_AT = "tessera_activate_at";

/**
 * Reads TESSERA_SIGNING_KEYS_FILE: a JSON Web Key Set of private keys (`{"keys": [...]}`), each with `kid`, `alg` (one of
 * SIGNING_ALGORITHMS, the key fitting it: P-256, P-384, Ed25519, RSA of at least 2048 bits), its private members, and
 * optionally `tessera_activate_at` (ISO-8601 with a time zone: when it starts signing). Throws a ConfigError naming the
 * variable, the file and the key (its index and kid), never the key's members.
 */
export function readSigningKeysFile(path: string): ProvidedKey[] {
  const fail = (where: string, problem: string): never => {
    throw new ConfigError(FILE, `"${path}": ${where}${where === "" ? "" : ": "}${problem}`);
  };
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    fail("", `cannot read it (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  if (text.length > MAX_FILE_BYTES) fail("", `is over ${MAX_FILE_BYTES} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the error: it could quote a private key.
    fail("", "is not JSON");
  }
  if (!isObject(json) || !Array.isArray(json.keys)) return fail("", `must be a JSON Web Key Set: {"keys": [...]}`);
  if (json.keys.length === 0) fail("keys", "needs at least one key");
  const kids = new Set<string>();
  return json.keys.map((raw: unknown, i: number): ProvidedKey => {
    let at = `keys[${i}]`;
    if (!isObject(raw)) return fail(at, "must be a JSON object (a private JWK)");
    const { kid, alg, use } = raw;
    if (typeof kid !== "string" || !KID.test(kid)) return fail(at, "needs a kid of 1 to 128 letters, digits, '-' or '_'");
    at = `${at} (kid "${kid}")`;
    if (kids.has(kid)) fail(at, "the kid is used twice");
    kids.add(kid);
    if (alg === "HS256") fail(at, `a symmetric key is not taken from the file (HS256 signs with ${HS256_SECRET})`);
    if (typeof alg !== "string" || !(SIGNING_ALGORITHMS as readonly string[]).includes(alg)) {
      return fail(at, `needs an alg, one of ${SIGNING_ALGORITHMS.join(", ")}`);
    }
    if (use !== undefined && use !== "sig") fail(at, `"use" must be "sig"`);
    for (const member of Object.keys(raw)) if (member.startsWith("tessera_") && member !== ACTIVATE_AT) fail(at, `unknown member "${member}" (did you mean "${ACTIVATE_AT}"?)`);
    let activateAt: number | undefined;
    const instant = raw[ACTIVATE_AT];
    if (instant !== undefined) {
      activateAt = typeof instant === "string" && INSTANT.test(instant) ? Date.parse(instant) : NaN;
      if (!Number.isFinite(activateAt) || activateAt <= 0) {
        fail(at, `${ACTIVATE_AT} must be an ISO-8601 instant with a time zone (example: 2026-03-01T00:00:00Z)`);
      }
    }
    if (typeof raw.d !== "string") fail(at, `holds no private key (no "d" member): the file needs the private keys`);
    const members: Record<string, unknown> = {};
    for (const m of JWK_MEMBERS) if (raw[m] !== undefined) members[m] = raw[m];
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: members as JsonWebKeyInput["key"], format: "jwk" });
    } catch {
      return fail(at, "is not a private key Node.js can read");
    }
    const problem = misfit(key, alg as SigningAlgorithm);
    if (problem !== undefined) fail(at, problem);
    const meta = { kid, alg, use: "sig" };
    const publicJwk = { ...(createPublicKey(key).export({ format: "jwk" }) as JWK), ...meta };
    const privateJwk = { ...(key.export({ format: "jwk" }) as JWK), ...meta };
    return { kid, alg: alg as SigningAlgorithm, privateJwk, publicJwk, ...(activateAt === undefined ? {} : { activateAt }) };
  });
}

type JsonWebKeyInput = Extract<Parameters<typeof createPrivateKey>[0], { format: "jwk" }>;

/** Why the key does not fit the algorithm, or undefined if it does. */
function misfit(key: KeyObject, alg: SigningAlgorithm): string | undefined {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  switch (alg) {
    case "ES256":
    case "ES384": {
      const curve = alg === "ES256" ? "prime256v1" : "secp384r1";
      return type === "ec" && details.namedCurve === curve ? undefined : `${alg} needs an EC key on ${alg === "ES256" ? "P-256" : "P-384"}`;
    }
    case "EdDSA":
      return type === "ed25519" ? undefined : "EdDSA needs an OKP key on Ed25519";
    case "RS256":
    case "PS256":
      if (type !== "rsa") return `${alg} needs an RSA key`;
      return (details.modulusLength ?? 0) >= 2048 ? undefined : `${alg} needs an RSA key of at least 2048 bits`;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
