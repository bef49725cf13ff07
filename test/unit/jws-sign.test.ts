/**
 * Tokens signed by domain/jws-sign.ts (node:crypto) are what jose expects: for every signing algorithm, jose's
 * compactVerify accepts them with the public key (HS256: the secret), and returns the same header and payload; another
 * key refuses them.
 */
import { describe, expect, it } from "vitest";
import { compactVerify, generateKeyPair, generateSecret, type CryptoKey } from "jose";
import { compactSigner, signingInput } from "../../src/domain/jws-sign.js";
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
