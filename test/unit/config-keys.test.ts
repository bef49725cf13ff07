/**
 * Configuration of the signing keys' material: the key-encryption key (a variable or a file, the previous one while
 * rotating), the keys file, the HS256 secret, the algorithms. Errors name the variable and never repeat a secret; the
 * start log hides the secrets.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { exportJWK, generateKeyPair } from "jose";
import { describe, expect, it } from "vitest";
import { ConfigError, VARIABLES, loadConfig } from "../../src/config/config.js";
import { effectiveValues } from "../../src/config/variable.js";

const dir = mkdtempSync(join(tmpdir(), "tessera-config-keys-"));
const b64 = (n: number) => randomBytes(n).toString("base64");
const KEK = b64(32);
const OLD = b64(32);

function refusal(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("accepted");
}

let files = 0;
/** A file holding `text` (default: a valid KEK). */
function kekFile(text = KEK): string {
  const path = join(dir, `key-${++files}`);
  writeFileSync(path, text);
  return path;
}

describe("the key-encryption key", () => {
  it("unset by default: private keys are stored in plain", () => {
    expect(loadConfig({}).keys).toMatchObject({ encryption: undefined, signingKeysFile: undefined, hs256Secret: undefined });
  });

  it("from TESSERA_KEY_ENCRYPTION_KEY (base64 or base64url of 32 bytes), with the previous one while rotating", () => {
    const c = loadConfig({ TESSERA_KEY_ENCRYPTION_KEY: KEK, TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS: OLD });
    expect(c.keys.encryption).toEqual({ current: Buffer.from(KEK, "base64"), previous: Buffer.from(OLD, "base64") });
    const url = Buffer.from(KEK, "base64").toString("base64url");
    expect(loadConfig({ TESSERA_KEY_ENCRYPTION_KEY: url }).keys.encryption?.current).toEqual(Buffer.from(KEK, "base64"));
  });

  it("from TESSERA_KEY_ENCRYPTION_KEY_FILE (base64 text, whitespace around it ignored)", () => {
    const path = join(dir, "kek");
    writeFileSync(path, `${KEK}\n`);
    expect(loadConfig({ TESSERA_KEY_ENCRYPTION_KEY_FILE: path }).keys.encryption).toEqual({ current: Buffer.from(KEK, "base64"), previous: undefined });
  });

  it.each([
    ["a short key", { TESSERA_KEY_ENCRYPTION_KEY: b64(16) }, "TESSERA_KEY_ENCRYPTION_KEY", /must be 32 bytes in base64, not 16/],
    ["a long key", { TESSERA_KEY_ENCRYPTION_KEY: b64(33) }, "TESSERA_KEY_ENCRYPTION_KEY", /must be 32 bytes/],
    ["not base64", { TESSERA_KEY_ENCRYPTION_KEY: "this is no key at all!" }, "TESSERA_KEY_ENCRYPTION_KEY", /is not base64/],
    ["a short previous key", { TESSERA_KEY_ENCRYPTION_KEY: KEK, TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS: b64(8) }, "TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS", /32 bytes/],
    ["a previous key alone", { TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS: OLD }, "TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS", /needs TESSERA_KEY_ENCRYPTION_KEY/],
    ["both the key and its file", { TESSERA_KEY_ENCRYPTION_KEY: KEK, TESSERA_KEY_ENCRYPTION_KEY_FILE: kekFile() }, "TESSERA_KEY_ENCRYPTION_KEY_FILE", /not both/],
    ["a missing file", { TESSERA_KEY_ENCRYPTION_KEY_FILE: join(dir, "none") }, "TESSERA_KEY_ENCRYPTION_KEY_FILE", /cannot read .* \(ENOENT\)/],
  ])("refuses %s, naming the variable, without repeating the value", (_what, env, key, message) => {
    const err = refusal(env);
    expect(err.key).toBe(key);
    expect(err.message).toMatch(message);
    for (const value of Object.values(env)) if (!value.startsWith("/")) expect(err.message).not.toContain(value);
  });

  it("takes the previous KEK and the HS256 secret from files too (TESSERA_..._FILE), one source each", () => {
    const previousFile = join(dir, "kek-previous");
    writeFileSync(previousFile, `${OLD}\n`);
    const c = loadConfig({ TESSERA_KEY_ENCRYPTION_KEY: KEK, TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS_FILE: previousFile });
    expect(c.keys.encryption).toEqual({ current: Buffer.from(KEK, "base64"), previous: Buffer.from(OLD, "base64") });
    const secret = b64(48);
    const secretFile = join(dir, "hs256");
    writeFileSync(secretFile, ` ${secret} \n`);
    const hs = loadConfig({ TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET_FILE: secretFile });
    expect(hs.keys.hs256Secret).toEqual(Buffer.from(secret, "base64"));
    const refusals: [Record<string, string>, string, RegExp][] = [
      [{ TESSERA_KEY_ENCRYPTION_KEY: KEK, TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS: OLD, TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS_FILE: previousFile }, "TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS_FILE", /not both/],
      [{ TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS_FILE: previousFile }, "TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS", /needs TESSERA_KEY_ENCRYPTION_KEY/],
      [{ TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET: secret, TESSERA_HS256_SECRET_FILE: secretFile }, "TESSERA_HS256_SECRET_FILE", /not both/],
      [{ TESSERA_HS256_SECRET_FILE: secretFile }, "TESSERA_HS256_SECRET_FILE", /is only used with TESSERA_SIGNING_ALG=HS256/],
      [{ TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET_FILE: kekFile(b64(16)) }, "TESSERA_HS256_SECRET_FILE", /is not at least 32 bytes in base64/],
    ];
    for (const [env, key, message] of refusals) {
      const err = refusal(env);
      expect(err.key, JSON.stringify(env)).toBe(key);
      expect(err.message).toMatch(message);
      expect(err.message).not.toContain(secret);
    }
  });

  it("refuses a file that holds no 32-byte key, without quoting it", () => {
    const path = join(dir, "bad-kek");
    writeFileSync(path, "not-a-key-but-a-secret-all-the-same");
    const err = refusal({ TESSERA_KEY_ENCRYPTION_KEY_FILE: path });
    expect(err.key).toBe("TESSERA_KEY_ENCRYPTION_KEY_FILE");
    expect(err.message).not.toContain("secret-all-the-same");
  });

  it("hides the keys and the HS256 secret in the start log; shows the files' paths", () => {
    const secret = b64(32);
    const shown = effectiveValues(VARIABLES, {
      TESSERA_KEY_ENCRYPTION_KEY: KEK,
      TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS: OLD,
      TESSERA_HS256_SECRET: secret,
      TESSERA_KEY_ENCRYPTION_KEY_FILE: "/run/secrets/kek",
      TESSERA_SIGNING_KEYS_FILE: "/run/secrets/jwks.json",
    });
    expect(shown).toMatchObject({
      TESSERA_KEY_ENCRYPTION_KEY: "[redacted]",
      TESSERA_KEY_ENCRYPTION_KEY_PREVIOUS: "[redacted]",
      TESSERA_HS256_SECRET: "[redacted]",
      TESSERA_KEY_ENCRYPTION_KEY_FILE: "/run/secrets/kek",
      TESSERA_SIGNING_KEYS_FILE: "/run/secrets/jwks.json",
    });
  });
});

describe("the signing algorithm and HS256", () => {
  it("takes ES256 (default), ES384, EdDSA, RS256, PS256; HS256 with a secret of at least 32 bytes", () => {
    expect(loadConfig({}).tokens.signingAlg).toBe("ES256");
    for (const alg of ["ES384", "EdDSA", "RS256", "PS256"]) expect(loadConfig({ TESSERA_SIGNING_ALG: alg }).tokens.signingAlg).toBe(alg);
    const secret = randomBytes(48);
    const c = loadConfig({ TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET: secret.toString("base64") });
    expect(c.tokens.signingAlg).toBe("HS256");
    expect(c.keys.hs256Secret).toEqual(secret);
  });

  it.each([
    ["HS256 without a secret", { TESSERA_SIGNING_ALG: "HS256" }, /must be set with TESSERA_SIGNING_ALG=HS256/],
    ["a short secret", { TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET: b64(31) }, /must be at least 32 bytes in base64, not 31/],
    ["a secret that is no base64", { TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET: "correct horse battery staple!!" }, /is not base64/],
    ["a secret without HS256", { TESSERA_HS256_SECRET: b64(32) }, /is only used with TESSERA_SIGNING_ALG=HS256/],
  ])("refuses %s, naming TESSERA_HS256_SECRET", (_what, env, message) => {
    const err = refusal(env);
    expect(err.key).toBe("TESSERA_HS256_SECRET");
    expect(err.message).toMatch(message);
    const secret = (env as Record<string, string>).TESSERA_HS256_SECRET;
    if (secret) expect(err.message).not.toContain(secret);
  });
});

describe("TESSERA_SIGNING_KEYS_FILE", () => {
  it("is read at start; a bad file stops it naming the variable; not together with HS256", async () => {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const path = join(dir, "jwks.json");
    writeFileSync(path, JSON.stringify({ keys: [{ ...(await exportJWK(privateKey)), kid: "k1", alg: "ES256" }] }));
    expect(loadConfig({ TESSERA_SIGNING_KEYS_FILE: path }).keys.signingKeysFile).toMatchObject({ path, keys: [{ kid: "k1", alg: "ES256" }] });
    expect(refusal({ TESSERA_SIGNING_KEYS_FILE: join(dir, "absent.json") }).key).toBe("TESSERA_SIGNING_KEYS_FILE");
    const both = refusal({ TESSERA_SIGNING_KEYS_FILE: path, TESSERA_SIGNING_ALG: "HS256", TESSERA_HS256_SECRET: b64(32) });
    expect(both.key).toBe("TESSERA_SIGNING_KEYS_FILE");
  });
});
