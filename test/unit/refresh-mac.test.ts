/**
 * Refresh tokens MAC'd under a secret derived from their signing key (TESSERA_REFRESH_TOKEN_MAC, domain/jws.ts
 * refreshMac): what they look like, that every process holding the key checks them and nothing else does, that they
 * are never taken for access tokens, that signed refresh tokens (made before, or with the setting off) are still
 * accepted, and that the key's lifecycle governs them as it does the key's signatures.
 */
import { decodeJwt, decodeProtectedHeader } from "jose";
import { describe, expect, it } from "vitest";
import { KeyRing } from "../../src/domain/keys.js";
import { refreshMac, signingInput } from "../../src/domain/jws.js";
import { TokenCodec, TokenVerifier } from "../../src/domain/tokens.js";
import { MemoryStore } from "../../src/store/memory.js";
import { ISSUER, issueFor, makeAuthority, PHONE } from "../helpers/authority.js";

const OPTS = { issuer: ISSUER, clockSkewMs: 0, maxTokenLength: 8192 };

/** The token with its MAC (or signature) replaced by `signature`, or its header by `header`. */
function withHeader(token: string, header: Record<string, unknown>): string {
  const [, payload, signature] = token.split(".");
  return `${Buffer.from(JSON.stringify(header)).toString("base64url")}.${payload}.${signature}`;
}

describe("MAC'd refresh tokens", () => {
  it("are HS256 under the signing key's kid, 32-byte MAC, and refresh; the access token stays signed", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    const kid = f.keys.signingKey().kid;
    expect(decodeProtectedHeader(pair.refreshToken)).toEqual({ alg: "HS256", kid, typ: "rt+jwt" });
    expect(decodeProtectedHeader(pair.accessToken)).toEqual({ alg: "ES256", kid, typ: "at+jwt" });
    expect(Buffer.from(pair.refreshToken.split(".")[2]!, "base64url")).toHaveLength(32);
    const next = await f.authority.refresh(pair.refreshToken, PHONE);
    expect(decodeProtectedHeader(next.pair.refreshToken).alg).toBe("HS256");
    expect((await f.authority.introspect(next.pair.refreshToken, "refresh")).active).toBe(true);
    expect((await f.authority.introspect(pair.refreshToken, "refresh")).active).toBe(false); // rotated
  });

  it("are checked by every process that holds the key (one derivation), and by nothing else", async () => {
    const store = new MemoryStore();
    const a = await makeAuthority({}, { store });
    const b = await makeAuthority({}, { store, clock: a.clock });
    const { pair } = await issueFor(a);
    expect((await b.codec.verify(pair.refreshToken, "refresh", a.clock.now())).ok).toBe(true);
    const next = await b.authority.refresh(pair.refreshToken, PHONE);
    expect((await a.codec.verify(next.pair.refreshToken, "refresh", a.clock.now())).ok).toBe(true);
    // Another store, another key under the same kid: its MAC does not check.
    const other = await makeAuthority({}, { clock: a.clock });
    const kid = a.keys.signingKey().kid;
    const forged = await refreshMac(kid, other.keys.signingKey().privateKey).sign(pair.refreshToken.slice(0, pair.refreshToken.lastIndexOf(".")));
    expect(await a.codec.verify(forged, "refresh", a.clock.now())).toEqual({ ok: false, reason: "bad_signature" });
  });

  it("refuse a changed payload, a changed MAC, another kid, and any use as an access token", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    const now = f.clock.now();
    const [head, payload, mac] = pair.refreshToken.split(".") as [string, string, string];
    const claims = decodeJwt(pair.refreshToken);
    const otherPayload = Buffer.from(JSON.stringify({ ...claims, sub: "mallory" })).toString("base64url");
    expect(await f.codec.verify(`${head}.${otherPayload}.${mac}`, "refresh", now)).toEqual({ ok: false, reason: "bad_signature" });
    const bytes = Buffer.from(mac, "base64url");
    bytes[0] = bytes[0]! ^ 1;
    expect(await f.codec.verify(`${head}.${payload}.${bytes.toString("base64url")}`, "refresh", now)).toEqual({ ok: false, reason: "bad_signature" });
    // A second key: the token under its kid does not check (each key derives its own secret, bound to its kid).
    await f.keys.rotate({ immediate: true });
    const second = f.keys.signingKey().kid;
    const header = decodeProtectedHeader(pair.refreshToken);
    expect(await f.codec.verify(withHeader(pair.refreshToken, { ...header, kid: second }), "refresh", now)).toEqual({ ok: false, reason: "bad_signature" });
    // As an access token: the refresh token itself, and an access token MAC'd with the refresh secret.
    expect(await f.codec.verify(pair.refreshToken, "access", now)).toEqual({ ok: false, reason: "wrong_type" });
    const key = f.keys.signingKey();
    const accessClaims = decodeJwt(pair.accessToken);
    const macAccess = await refreshMac(key.kid, key.privateKey).sign(signingInput({ alg: "HS256", kid: key.kid, typ: "at+jwt" }, accessClaims));
    expect(await f.codec.verify(macAccess, "access", now)).toEqual({ ok: false, reason: "bad_signature" });
    expect((await f.authority.introspect(macAccess, "access")).active).toBe(false);
  });

  it("sit beside signed refresh tokens: those made with the setting off still refresh, and MAC'd ones with it off", async () => {
    const store = new MemoryStore();
    const signing = await makeAuthority({}, { store, refreshMac: false });
    const { pair } = await issueFor(signing);
    expect(decodeProtectedHeader(pair.refreshToken).alg).toBe("ES256");
    const macing = await makeAuthority({}, { store, clock: signing.clock });
    const next = await macing.authority.refresh(pair.refreshToken, PHONE);
    expect(decodeProtectedHeader(next.pair.refreshToken).alg).toBe("HS256");
    // A process with the setting off (a rollback) still accepts the MAC'd one, and signs its successor.
    const after = await signing.authority.refresh(next.pair.refreshToken, PHONE);
    expect(decodeProtectedHeader(after.pair.refreshToken).alg).toBe("ES256");
  });

  it("die with their key: a revoked key's MAC'd refresh tokens are refused", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    const kid = f.keys.signingKey().kid;
    await f.keys.rotate({ immediate: true });
    expect((await f.codec.verify(pair.refreshToken, "refresh", f.clock.now())).ok).toBe(true); // retired, still checks
    await f.keys.revoke(kid, "compromised");
    expect(await f.codec.verify(pair.refreshToken, "refresh", f.clock.now())).toEqual({ ok: false, reason: "key_revoked" });
  });

  it("cannot be checked by a verifier that has only the public keys (a sidecar): not an access token, no key for it", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    const published = { lookup: async (kid: string) => {
      const k = await f.keys.lookup(kid);
      return k && { alg: k.alg, publicKey: k.publicKey };
    } };
    const sidecar = new TokenVerifier(published, { ...OPTS, verifiedCacheSize: 100 });
    const now = f.clock.now();
    expect(await sidecar.verify(pair.refreshToken, "access", now)).toEqual({ ok: false, reason: "wrong_type" });
    expect(await sidecar.verify(pair.refreshToken, "refresh", now)).toEqual({ ok: false, reason: "unknown_key" });
    expect(sidecar.cachedCount).toBe(0); // never remembered as checked
    expect((await sidecar.verify(pair.accessToken, "access", now)).ok).toBe(true);
  });

  it("are MAC'd only for asymmetric keys: with HS256 configured, refresh tokens carry the HS256 key's own MAC", async () => {
    const store = new MemoryStore();
    const secret = Buffer.alloc(32, 9);
    const keys = new KeyRing(store, "HS256", { now: () => Date.UTC(2026, 0, 1) }, 1_000, undefined, { hmac: { secret, source: "test" } });
    await keys.init();
    expect(keys.signingKey().refreshMac).toBeUndefined();
    const codec = new TokenCodec(keys, { ...OPTS, refreshTokenMac: true });
    const now = Date.UTC(2026, 0, 1);
    const token = await codec.signRefresh({
      subject: "alice", sessionId: "s", jti: "j", now, expiresAt: now + 60_000,
      grant: { audience: ["api"], scopes: [], claims: {}, accessTtlMs: 60_000 },
    });
    expect(decodeProtectedHeader(token)).toEqual({ alg: "HS256", kid: keys.signingKey().kid, typ: "rt+jwt" });
    expect((await codec.verify(token, "refresh", now)).ok).toBe(true);
  });
});
