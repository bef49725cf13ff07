/**
 * Issue 13, point 5: sensitive claims sealed into the tokens (src/domain/sealed-claims.ts), the authority's rules for
 * them (src/domain/authority.ts), and their configuration (src/config/claims-keys.ts). End to end, over real clients:
 * test/e2e/sensitive-claims.e2e.test.ts.
 */
import { randomBytes } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CompactEncrypt, compactDecrypt, decodeJwt, decodeProtectedHeader } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { claimsKeys } from "../../src/config/claims-keys.js";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { IntrospectResponseSchema, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { ConfigError, VARIABLES, loadConfig } from "../../src/config/config.js";
import { effectiveValues } from "../../src/config/variable.js";
import { TesseraError } from "../../src/domain/errors.js";
import { randomId } from "../../src/domain/ids.js";
import { ClaimsCipher, SEALED_CLAIM, SEALED_JWE, claimsKeyId } from "../../src/domain/sealed-claims.js";
import { RESERVED_CLAIMS } from "../../src/domain/tokens.js";
import { sidecarTokenService } from "../../src/sidecar/token-service.js";
import { MemoryStore } from "../../src/store/memory.js";
import { PHONE, makeAuthority } from "../helpers/authority.js";

const newKey = () => new Uint8Array(randomBytes(32));
const K1 = newKey();
const K2 = newKey();
const SECRET = { diagnosis: "J45.909 asthma", patient_ref: "MRN-00417", allergies: ["penicillin"], risk: { level: 3 } };

function failure(fn: () => unknown): TesseraError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(TesseraError);
    return err as TesseraError;
  }
  throw new Error("expected a TesseraError");
}

async function rejection(p: Promise<unknown>): Promise<TesseraError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TesseraError);
  return err as TesseraError;
}

describe("ClaimsCipher: a compact JWE, dir + A256GCM, kid naming the key", () => {
  const cipher = new ClaimsCipher({ current: K1 });

  it("seals into a JWE that shows nothing of the claims, and opens it again", () => {
    const jwe = cipher.seal(SECRET);
    expect(jwe).toMatch(SEALED_JWE);
    expect(decodeProtectedHeader(jwe)).toEqual({ alg: "dir", enc: "A256GCM", kid: claimsKeyId(K1) });
    const visible = jwe.split(".").map((part) => Buffer.from(part, "base64url").toString("latin1")).join(" ");
    for (const text of ["J45", "asthma", "MRN", "penicillin", "diagnosis", "patient_ref"]) {
      expect(jwe).not.toContain(text);
      expect(visible).not.toContain(text);
    }
    expect(cipher.open(jwe)).toEqual(SECRET);
    expect(cipher.seal(SECRET)).not.toBe(jwe); // a fresh IV every time
  });

  it("pads before it encrypts: values of nearly the same length make JWEs of the same length", () => {
    const lengths = (claims: object[]) => new Set(claims.map((c) => cipher.seal(c as Record<string, unknown>).length));
    expect(lengths([{ hiv_positive: true }, { hiv_positive: false }, { hiv_positive: null }])).toHaveProperty("size", 1);
    expect(lengths([{ icd10: "F32.1" }, { icd10: "Z00.00" }, { icd10: "C50.911" }])).toHaveProperty("size", 1);
    const [small, large] = [cipher.seal({ a: "x" }), cipher.seal({ a: "x".repeat(100) })];
    expect(large.length).toBeGreaterThan(small.length); // the amount still shows, in steps of 64 bytes
    expect(cipher.open(small)).toEqual({ a: "x" });
  });

  it("is a standard JWE: jose opens what it seals, and it opens what jose seals", async () => {
    const jwe = cipher.seal(SECRET);
    const opened = await compactDecrypt(jwe, K1, { keyManagementAlgorithms: ["dir"], contentEncryptionAlgorithms: ["A256GCM"] });
    expect(JSON.parse(new TextDecoder().decode(opened.plaintext))).toEqual(SECRET);
    const byJose = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(SECRET)))
      .setProtectedHeader({ enc: "A256GCM", kid: claimsKeyId(K1), alg: "dir" })
      .encrypt(K1);
    expect(cipher.open(byJose)).toEqual(SECRET);
  });

  it("names keys apart, and says nothing of them", () => {
    expect(claimsKeyId(K1)).toMatch(/^[A-Za-z0-9_-]{12}$/);
    expect(claimsKeyId(K1)).toBe(claimsKeyId(new Uint8Array(K1)));
    expect(claimsKeyId(K2)).not.toBe(claimsKeyId(K1));
    expect(claimsKeyId(K1)).not.toContain(Buffer.from(K1).toString("base64url").slice(0, 6));
  });

  it("rotation: the previous key opens what it sealed; reseal keeps a current JWE as it is and seals a previous one again", () => {
    const old = cipher.seal(SECRET);
    const rotated = new ClaimsCipher({ current: K2, previous: K1 });
    expect(rotated.kid).toBe(claimsKeyId(K2));
    expect(rotated.open(old)).toEqual(SECRET);
    const resealed = rotated.reseal(old);
    expect(decodeProtectedHeader(resealed).kid).toBe(claimsKeyId(K2));
    expect(rotated.open(resealed)).toEqual(SECRET);
    expect(rotated.reseal(resealed)).toBe(resealed); // no new encryption under the current key
    expect(() => new ClaimsCipher({ current: K1, previous: new Uint8Array(K1) })).toThrow(/previous claims key is the current one/);
    expect(() => new ClaimsCipher({ current: new Uint8Array(16) })).toThrow(/32 bytes/);
  });

  it("a key it does not hold: FAILED_PRECONDITION naming the kid (open and reseal alike)", () => {
    const other = new ClaimsCipher({ current: K2 });
    const jwe = cipher.seal(SECRET);
    for (const err of [failure(() => other.open(jwe)), failure(() => other.reseal(jwe))]) {
      expect(err.code).toBe("failed_precondition");
      expect(err.message).toContain(claimsKeyId(K1));
      expect(err.message).toMatch(/TESSERA_CLAIMS_KEY_PREVIOUS/);
    }
  });

  it("anything but a JWE it sealed, intact: INTERNAL, never claims", () => {
    const jwe = cipher.seal(SECRET);
    const [h, , iv, ct, tag] = jwe.split(".");
    const flip = (s: string) => `${s[0] === "A" ? "B" : "A"}${s.slice(1)}`;
    const header = (extra: object) => Buffer.from(JSON.stringify({ alg: "dir", enc: "A256GCM", kid: claimsKeyId(K1), ...extra })).toString("base64url");
    for (const bad of [
      `${h}..${iv}.${flip(ct!)}.${tag}`, // ciphertext changed
      `${h}..${iv}.${ct}.${flip(tag!)}`, // tag changed
      `${h}..${flip(iv!)}.${ct}.${tag}`, // IV changed
      `${header({ zip: "DEF" })}..${iv}.${ct}.${tag}`, // another header (and another AAD)
      `${header({ enc: "A128GCM" })}..${iv}.${ct}.${tag}`,
      `${h}..${iv}.${ct}.${tag!.slice(0, 16)}`, // a short tag
      "not a jwe",
    ]) {
      expect(failure(() => cipher.open(bad)).code, bad).toBe("internal");
    }
  });
});

describe("the authority and sensitive claims", () => {
  const cipher = new ClaimsCipher({ current: K1 });
  const base = { subject: "pat", audience: [], scopes: ["chart"], claims: { tenant: "clinic-9" }, client: PHONE };

  it("seals them into the access token and the refresh token's grant, never in clear; the JWE claim is reserved", async () => {
    const f = await makeAuthority({}, { claims: cipher });
    const { pair } = await f.authority.issue({ ...base, sensitiveClaims: SECRET });
    const access = decodeJwt(pair.accessToken);
    const refresh = decodeJwt(pair.refreshToken) as { grant: Record<string, unknown> };
    expect(access[SEALED_CLAIM]).toMatch(SEALED_JWE);
    expect(refresh.grant.enc).toBe(access[SEALED_CLAIM]); // one JWE for the pair
    for (const token of [pair.accessToken, pair.refreshToken]) {
      const payload = Buffer.from(token.split(".")[1]!, "base64url").toString("utf8");
      for (const text of ["J45", "MRN-00417", "penicillin", "diagnosis"]) expect(payload).not.toContain(text);
    }
    expect(RESERVED_CLAIMS.has(SEALED_CLAIM)).toBe(true);
    const v = await f.codec.verify(pair.accessToken, "access", f.clock.now());
    expect(v.ok && v.token.claims).toEqual({ tenant: "clinic-9" });
    expect(await f.authority.sensitiveClaims(v.ok ? v.token : expect.fail())).toEqual(SECRET);
  });

  it("an Issue without them is as before: no JWE, nothing to open", async () => {
    const f = await makeAuthority({}, { claims: cipher });
    for (const sensitiveClaims of [undefined, {}]) {
      const { pair } = await f.authority.issue({ ...base, ...(sensitiveClaims ? { sensitiveClaims } : {}) });
      expect(decodeJwt(pair.accessToken)).not.toHaveProperty(SEALED_CLAIM);
      expect((decodeJwt(pair.refreshToken) as { grant: object }).grant).not.toHaveProperty("enc");
    }
  });

  it("without a claims key: Issue with sensitive claims is FAILED_PRECONDITION naming TESSERA_CLAIMS_KEY; without them it works", async () => {
    const f = await makeAuthority();
    const err = await rejection(f.authority.issue({ ...base, sensitiveClaims: SECRET }));
    expect(err.code).toBe("failed_precondition");
    expect(err.message).toMatch(/TESSERA_CLAIMS_KEY/);
    expect(await f.authority.listSessions("pat")).toEqual([]);
    await expect(f.authority.issue(base)).resolves.toBeDefined();
  });

  it("refuses reserved names and names of extra claims (INVALID_ARGUMENT naming sensitive_claims), before anything", async () => {
    const f = await makeAuthority({}, { claims: cipher });
    for (const [sensitiveClaims, problem] of [
      [{ sub: "x" }, /sensitive claim "sub" is reserved/],
      [{ [SEALED_CLAIM]: "x" }, /is reserved/],
      [{ tenant: "other" }, /sensitive claim "tenant" is also an extra claim/],
    ] as const) {
      const err = await rejection(f.authority.issue({ ...base, sensitiveClaims }));
      expect([err.code, err.field]).toEqual(["invalid_argument", "sensitive_claims"]);
      expect(err.message).toMatch(problem);
    }
    // Nor may an extra claim take the JWE's name.
    const err = await rejection(f.authority.issue({ ...base, claims: { [SEALED_CLAIM]: "eyJ.forged" } }));
    expect([err.code, err.field]).toEqual(["invalid_argument", "extra_claims"]);
    expect(await f.authority.listSessions("pat")).toEqual([]);
  });

  it("counts the JWE in TESSERA_MAX_TOKEN_LENGTH: exact prediction, and a too long Issue names sensitive_claims", async () => {
    const f = await makeAuthority({}, { claims: cipher });
    const grant = { audience: ["a"], scopes: ["s"], claims: { n: 1 }, accessTtlMs: 60_000, sealed: cipher.seal(SECRET) };
    const input = { subject: "pat", sessionId: `${"t".repeat(16)}${randomId()}`, jti: randomId(), grant, now: f.clock.now(), expiresAt: f.clock.now() + 86_400_000 };
    expect(f.codec.prepare("access", input).length).toBe((await f.codec.signAccess(input)).length);
    expect(f.codec.prepare("refresh", input).length).toBe((await f.codec.signRefresh(input)).length);
    // 4 KiB of sensitive claims become about 7.3 KiB of token: alone over 8192 with 2 KiB of extra claims.
    const err = await rejection(
      f.authority.issue({ ...base, claims: { blob: "x".repeat(2000) }, sensitiveClaims: { blob2: "y".repeat(4000) } }),
    );
    expect([err.code, err.field]).toEqual(["invalid_argument", "sensitive_claims"]);
    expect(err.message).toMatch(/over TESSERA_MAX_TOKEN_LENGTH \(8192\): fewer or shorter scopes, audiences, extra claims or sensitive claims$/);
  });

  it("Refresh carries them on: the same JWE under the current key, sealed again under it after a rotation", async () => {
    const store = new MemoryStore();
    const before = await makeAuthority({}, { store, claims: cipher });
    const { pair } = await before.authority.issue({ ...base, sensitiveClaims: SECRET });
    const sealed = decodeJwt(pair.accessToken)[SEALED_CLAIM] as string;
    const same = await before.authority.refresh(pair.refreshToken, PHONE);
    expect(decodeJwt(same.pair.accessToken)[SEALED_CLAIM]).toBe(sealed);

    const after = await makeAuthority({}, { store, clock: before.clock, claims: new ClaimsCipher({ current: K2, previous: K1 }) });
    await after.keys.init();
    const next = await after.authority.refresh(same.pair.refreshToken, PHONE);
    const resealed = decodeJwt(next.pair.accessToken)[SEALED_CLAIM] as string;
    expect(decodeProtectedHeader(resealed).kid).toBe(claimsKeyId(K2));
    expect((decodeJwt(next.pair.refreshToken) as { grant: { enc: string } }).grant.enc).toBe(resealed);
    expect(new ClaimsCipher({ current: K2 }).open(resealed)).toEqual(SECRET);
  });

  it("Refresh with no key that opens them: FAILED_PRECONDITION before anything rotates (the token refreshes once the key is back)", async () => {
    const store = new MemoryStore();
    const a = await makeAuthority({}, { store, claims: cipher });
    const { pair } = await a.authority.issue({ ...base, sensitiveClaims: SECRET });
    for (const claims of [undefined, new ClaimsCipher({ current: K2 })]) {
      const b = await makeAuthority({}, { store, clock: a.clock, ...(claims ? { claims } : {}) });
      const err = await rejection(b.authority.refresh(pair.refreshToken, PHONE));
      expect(err.code).toBe("failed_precondition");
      expect(err.message).toMatch(/TESSERA_CLAIMS_KEY/);
      expect(b.audited.at(-1)).toMatchObject({ type: "refresh_failed", subject: "pat", detail: { reason: "sensitive_claims_unreadable" } });
      const v = await b.authority.introspect(pair.accessToken, "access");
      if (!v.active) expect.fail("the access token stays active");
      expect((await rejection(b.authority.sensitiveClaims(v.token))).code).toBe("failed_precondition");
    }
    const next = await a.authority.refresh(pair.refreshToken, PHONE); // not rotated above: still the current one
    const v = await a.authority.introspect(next.pair.accessToken, "access");
    expect(v.active && (await a.authority.sensitiveClaims(v.token))).toEqual(SECRET);
  });

  it("a token whose JWE claim is no JWE is malformed (the verifier reads only what Tessera makes)", async () => {
    const f = await makeAuthority({}, { claims: cipher });
    const grant = { audience: ["a"], scopes: [], claims: {}, accessTtlMs: 60_000, sealed: "not-a-jwe" };
    const input = { subject: "pat", sessionId: `${"t".repeat(16)}${randomId()}`, jti: randomId(), grant, now: f.clock.now(), expiresAt: f.clock.now() + 3_600_000 };
    expect(await f.codec.verify(await f.codec.signAccess(input), "access", f.clock.now())).toEqual({ ok: false, reason: "malformed" });
    expect(await f.codec.verify(await f.codec.signRefresh(input), "refresh", f.clock.now())).toEqual({ ok: false, reason: "malformed" });
  });
});

describe("configuration: TESSERA_CLAIMS_KEY, TESSERA_CLAIMS_KEY_FILE, TESSERA_CLAIMS_KEY_PREVIOUS", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-claims-key-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const b64 = (k: Uint8Array) => Buffer.from(k).toString("base64");
  const configError = (env: Record<string, string>): ConfigError => {
    try {
      loadConfig(env);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return err as ConfigError;
    }
    throw new Error("expected a ConfigError");
  };

  it("unset: no key", () => {
    expect(loadConfig({}).claims).toEqual({ key: undefined, keyFile: undefined, previousKey: undefined });
  });

  it("reads 32 bytes of base64, standard or URL-safe, padded or not", () => {
    for (const text of [b64(K1), b64(K1).replace(/=$/, ""), Buffer.from(K1).toString("base64url")]) {
      expect(Buffer.from(loadConfig({ TESSERA_CLAIMS_KEY: text }).claims.key!)).toEqual(Buffer.from(K1));
    }
    const c = loadConfig({ TESSERA_CLAIMS_KEY: b64(K2), TESSERA_CLAIMS_KEY_PREVIOUS: b64(K1) });
    expect(Buffer.from(c.claims.previousKey!)).toEqual(Buffer.from(K1));
  });

  it.each([
    ["too short (31 bytes)", randomBytes(31).toString("base64")],
    ["too long (33 bytes)", randomBytes(33).toString("base64")],
    ["not base64", "x".repeat(42) + "!"],
    ["a passphrase", "correct horse battery staple"],
  ])("refuses a key that is %s, naming the variable and never showing the value", (_what, text) => {
    for (const name of ["TESSERA_CLAIMS_KEY", "TESSERA_CLAIMS_KEY_PREVIOUS"]) {
      const err = configError({ TESSERA_CLAIMS_KEY: b64(K1), [name]: text });
      expect(err.message).toMatch(new RegExp(`^${name}: is not 32 bytes in base64 \\(make one with: openssl rand -base64 32\\)`));
      expect(err.message).not.toContain(text);
    }
  });

  it("reads the key from TESSERA_CLAIMS_KEY_FILE (whitespace around it ignored); a missing or bad file names the variable", async () => {
    const file = join(dir, "claims.key");
    await writeFile(file, `${b64(K2)}\n`);
    expect(Buffer.from(loadConfig({ TESSERA_CLAIMS_KEY_FILE: file }).claims.keyFile!)).toEqual(Buffer.from(K2));
    expect(configError({ TESSERA_CLAIMS_KEY_FILE: join(dir, "missing") }).message).toMatch(/^TESSERA_CLAIMS_KEY_FILE: cannot read ".*missing" \(ENOENT\)$/);
    const bad = join(dir, "bad.key");
    await writeFile(bad, "hunter2\n");
    const err = configError({ TESSERA_CLAIMS_KEY_FILE: bad });
    expect(err.message).toMatch(/^TESSERA_CLAIMS_KEY_FILE: ".*bad\.key" is not 32 bytes in base64/);
    expect(err.message).not.toContain("hunter2");
  });

  it("reads the previous key from TESSERA_CLAIMS_KEY_PREVIOUS_FILE too; not with the variable", async () => {
    const file = join(dir, "claims-previous.key");
    await writeFile(file, `${b64(K1)}\n`);
    const c = loadConfig({ TESSERA_CLAIMS_KEY: b64(K2), TESSERA_CLAIMS_KEY_PREVIOUS_FILE: file });
    expect(Buffer.from(c.claims.previousKeyFile!)).toEqual(Buffer.from(K1));
    // ...and it is the previous key the cipher is given (app.ts claimsKeys).
    const given = claimsKeys(c.claims)?.previous;
    expect(given && Buffer.from(given)).toEqual(Buffer.from(K1));
    expect(configError({ TESSERA_CLAIMS_KEY: b64(K2), TESSERA_CLAIMS_KEY_PREVIOUS: b64(K1), TESSERA_CLAIMS_KEY_PREVIOUS_FILE: file }).message).toMatch(
      /^TESSERA_CLAIMS_KEY_PREVIOUS_FILE: .*not both/,
    );
    expect(configError({ TESSERA_CLAIMS_KEY: b64(K1), TESSERA_CLAIMS_KEY_PREVIOUS_FILE: file }).message).toMatch(/^TESSERA_CLAIMS_KEY_PREVIOUS: is the same key/);
  });

  it("refuses what the three cannot say together", () => {
    expect(configError({ TESSERA_CLAIMS_KEY: b64(K1), TESSERA_CLAIMS_KEY_FILE: "/dev/null" }).message).toMatch(/^TESSERA_CLAIMS_KEY_FILE: /);
    expect(configError({ TESSERA_CLAIMS_KEY_PREVIOUS: b64(K1) }).message).toBe(
      "TESSERA_CLAIMS_KEY_PREVIOUS: needs TESSERA_CLAIMS_KEY (or TESSERA_CLAIMS_KEY_FILE): the key that encrypts",
    );
    expect(configError({ TESSERA_CLAIMS_KEY: b64(K1), TESSERA_CLAIMS_KEY_PREVIOUS: Buffer.from(K1).toString("base64url") }).message).toBe(
      "TESSERA_CLAIMS_KEY_PREVIOUS: is the same key as the current one",
    );
  });

  it("the start log shows the file's path, never a key", () => {
    const shown = effectiveValues(VARIABLES, { TESSERA_CLAIMS_KEY: b64(K1), TESSERA_CLAIMS_KEY_PREVIOUS: b64(K2), TESSERA_CLAIMS_KEY_FILE: "/run/secrets/claims.key" });
    expect(shown).toMatchObject({
      TESSERA_CLAIMS_KEY: "[redacted]",
      TESSERA_CLAIMS_KEY_PREVIOUS: "[redacted]",
      TESSERA_CLAIMS_KEY_FILE: "/run/secrets/claims.key",
    });
  });
});

describe("the sidecar passes a refresh token's Introspect on to the authority", () => {
  it("and drops sensitive claims from the answer, whatever the sidecar's own credential could read", async () => {
    const upstream = createRouterTransport(({ service }) =>
      service(TokenService, {
        introspect: () => create(IntrospectResponseSchema, { active: true, subject: "pat", sensitiveClaims: { mrn: "MRN-1" } }),
      }),
    );
    const sidecar = sidecarTokenService({
      introspector: {} as never, // access tokens only: not reached here
      authority: createClient(TokenService, upstream),
      authorityUrl: "http://authority.test",
      maxTokenLength: 8192,
    });
    const client = createClient(TokenService, createRouterTransport(({ service }) => service(TokenService, sidecar)));
    const answer = await client.introspect({ token: "a.b.c", expectedType: TokenType.REFRESH });
    expect(answer.active).toBe(true);
    expect(answer.subject).toBe("pat");
    expect(answer.sensitiveClaims).toBeUndefined();
  });
});
