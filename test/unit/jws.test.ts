/**
 * domain/jws.ts (node:crypto) against jose, both ways. Tokens it signs are what jose expects: for every signing
 * algorithm, jose's compactVerify accepts them with the public key (HS256: the secret), and returns the same header
 * and payload; another key refuses them. Its signature check accepts what jose signs and refuses what jose refuses:
 * another key, a changed header, payload or signature, a signature of another length, an ECDSA signature in DER.
 */
import { createPrivateKey, generateKeyPairSync, KeyObject, sign as nodeSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CompactSign, compactVerify, generateKeyPair, generateSecret, importJWK, type CryptoKey } from "jose";
import { compactSigner, signatureCheck, signingInput, type JwsAlgorithm } from "../../src/domain/jws.js";
import { SIGNING_ALGORITHMS } from "../../src/domain/keys.js";

it("signs with ES256 (the default), ES384, EdDSA, RS256 and PS256", () => {
  expect([...SIGNING_ALGORITHMS].sort()).toEqual(["ES256", "ES384", "EdDSA", "PS256", "RS256"]);
});

it("HS256: an HMAC jose's compactVerify accepts with the same secret, and refuses with another", async () => {
  const secret = (await generateSecret("HS256", { extractable: true })) as CryptoKey;
  const other = (await generateSecret("HS256", { extractable: true })) as CryptoKey;
  const header = { alg: "HS256", kid: "k1", typ: "at+jwt" };
  const payload = { iss: "tessera", sub: "ünïcödé ✓", exp: 2_000_000_000 };
  const token = await compactSigner("HS256", secret)(signingInput(header, payload));
  const signature = token.slice(token.lastIndexOf(".") + 1);
  expect(Buffer.from(signature, "base64url")).toHaveLength(32);
  const verified = await compactVerify(token, secret, { algorithms: ["HS256"] });
  expect(verified.protectedHeader).toEqual(header);
  expect(JSON.parse(new TextDecoder().decode(verified.payload))).toEqual(payload);
  await expect(compactVerify(token, other, { algorithms: ["HS256"] })).rejects.toThrow(/signature verification failed/);
  // An asymmetric private key is no HMAC secret.
  const { privateKey } = await generateKeyPair("ES256", { extractable: true });
  expect(() => compactSigner("HS256", privateKey)).toThrow(/secret/);
});

describe.each(SIGNING_ALGORITHMS)("compactSigner(%s)", (alg) => {
  it("signs what jose's compactVerify accepts, with the same header and payload; another key does not verify", async () => {
    const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
    const other = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
    const header = { alg, kid: "k1", typ: "at+jwt" };
    const payload = { iss: "tessera", sub: "ünïcödé ✓", aud: ["a", "b"], exp: 2_000_000_000, scope: "read write", n: 1.5 };
    const token = await compactSigner(alg, privateKey)(signingInput(header, payload));

    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    const signature = token.slice(token.lastIndexOf(".") + 1);
    expect(Buffer.from(signature, "base64url").toString("base64url")).toBe(signature); // canonical spelling
    const verified = await compactVerify(token, publicKey, { algorithms: [alg] });
    expect(verified.protectedHeader).toEqual(header);
    expect(JSON.parse(new TextDecoder().decode(verified.payload))).toEqual(payload);
    await expect(compactVerify(token, other.publicKey, { algorithms: [alg] })).rejects.toThrow(/signature verification failed/);
  });
});

/** A compact JWS split as the check takes it: the signing input and the decoded signature. */
function parts(token: string): [string, Buffer] {
  const dot = token.lastIndexOf(".");
  return [token.slice(0, dot), Buffer.from(token.slice(dot + 1), "base64url")];
}

/** The same bytes with one bit flipped at `at` (a negative index counts from the end). */
function flipped(bytes: Buffer, at: number): Buffer {
  const copy = Buffer.from(bytes);
  const i = at < 0 ? copy.length + at : at;
  copy[i] = copy[i]! ^ 1;
  return copy;
}

describe.each([...SIGNING_ALGORITHMS, "HS256"] as JwsAlgorithm[])("signatureCheck(%s)", (alg) => {
  const keysFor = async (): Promise<{ signing: CryptoKey; checking: CryptoKey; other: CryptoKey }> => {
    if (alg === "HS256") {
      const [signing, other] = await Promise.all([generateSecret("HS256", { extractable: true }), generateSecret("HS256", { extractable: true })]);
      return { signing: signing as CryptoKey, checking: signing as CryptoKey, other: other as CryptoKey };
    }
    const [mine, theirs] = await Promise.all([
      generateKeyPair(alg, { extractable: true, modulusLength: 2048 }),
      generateKeyPair(alg, { extractable: true, modulusLength: 2048 }),
    ]);
    return { signing: mine.privateKey, checking: mine.publicKey, other: theirs.publicKey };
  };

  it("accepts what jose's CompactSign signs, and refuses another key, a changed input or a changed signature", async () => {
    const { signing, checking, other } = await keysFor();
    const header = { alg, kid: "k1", typ: "rt+jwt" };
    const payload = { iss: "tessera", sub: "ünïcödé ✓", exp: 2_000_000_000 };
    const token = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header).sign(signing);
    const [input, signature] = parts(token);
    const check = signatureCheck(alg, checking);
    expect(await check(input, signature)).toBe(true);
    expect(await signatureCheck(alg, other)(input, signature)).toBe(false);
    const [head, body] = input.split(".") as [string, string];
    const otherPayload = Buffer.from(JSON.stringify({ ...payload, sub: "mallory" })).toString("base64url");
    expect(await check(`${head}.${otherPayload}`, signature)).toBe(false);
    const otherHeader = Buffer.from(JSON.stringify({ ...header, typ: "at+jwt" })).toString("base64url");
    expect(await check(`${otherHeader}.${body}`, signature)).toBe(false);
    expect(await check(input, flipped(signature, 0))).toBe(false);
    expect(await check(input, flipped(signature, -1))).toBe(false);
    expect(await check(input, signature.subarray(0, signature.length - 1))).toBe(false);
    expect(await check(input, Buffer.concat([signature, Buffer.alloc(1)]))).toBe(false);
    expect(await check(input, Buffer.alloc(0))).toBe(false);
    // Its own signatures too (the authority checks the refresh tokens it signed).
    const own = await compactSigner(alg, signing)(signingInput(header, payload));
    expect(await check(...parts(own))).toBe(true);
  });
}, 20_000);

it("ECDSA: an ES256 signature in DER (the encoding JWS does not use) is refused, though it signs the same input", async () => {
  const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
  const input = signingInput({ alg: "ES256", kid: "k1", typ: "at+jwt" }, { sub: "alice" });
  const der = nodeSign("sha256", Buffer.from(input), { key: KeyObject.from(privateKey as Parameters<typeof KeyObject.from>[0]), dsaEncoding: "der" });
  expect(der.length).not.toBe(64);
  expect(await signatureCheck("ES256", publicKey)(input, der)).toBe(false);
  await expect(compactVerify(`${input}.${der.toString("base64url")}`, publicKey, { algorithms: ["ES256"] })).rejects.toThrow();
});

it("refuses to make a check with an RSA key under 2048 bits (as jose refuses it), or HS256 with an asymmetric key", async () => {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 1024 });
  const weak = await importJWK(createPrivateKey(privateKey.export({ format: "pem", type: "pkcs8" })).export({ format: "jwk" }), "RS256");
  expect(() => signatureCheck("RS256", weak as CryptoKey)).toThrow(/2048/);
  const { publicKey } = await generateKeyPair("ES256", { extractable: true });
  expect(() => signatureCheck("HS256", publicKey)).toThrow(/secret/);
});
