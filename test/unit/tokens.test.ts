import { CompactSign, SignJWT, generateKeyPair } from "jose";
import { describe, expect, it } from "vitest";
import type { RejectReason } from "../../src/domain/tokens.js";
import { ISSUER, PHONE, issueFor, makeAuthority } from "../helpers/authority.js";

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
const parts = (t: string) => t.split(".") as [string, string, string];
const json = (part: string) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

async function fixture() {
  const f = await makeAuthority();
  const { pair } = await issueFor(f);
  const verify = (token: string, kind: "access" | "refresh" = "access") => f.codec.verify(token, kind, f.clock.now());
  const reason = async (token: string, kind: "access" | "refresh" = "access") => {
    const v = await verify(token, kind);
    return v.ok ? "ok" : v.reason;
  };
  /** Re-signs an arbitrary header+payload with Tessera's own private key (what a key-holder could make). */
  const signOwn = async (header: Record<string, unknown>, payload: Record<string, unknown>) => {
    const key = f.keys.signingKey();
    return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
      .setProtectedHeader({ alg: key.alg, kid: key.kid, ...header } as never)
      .sign(key.privateKey);
  };
  return { f, pair, verify, reason, signOwn };
}

describe("access token payload", () => {
  it("carries the extra claims as members, in order, before Tessera's claims, a claim named __proto__ included", async () => {
    const f = await makeAuthority();
    const claims = JSON.parse('{"tenant":"t1","__proto__":{"admin":true},"roles":["a","b"]}') as Record<string, unknown>;
    const { pair } = await f.authority.issue({ subject: "alice", audience: [], scopes: ["read"], claims, client: PHONE });
    const raw = Buffer.from(parts(pair.accessToken)[1], "base64url").toString("utf8");
    expect(raw.startsWith('{"tenant":"t1","__proto__":{"admin":true},"roles":["a","b"],"iss":')).toBe(true);
    const payload = json(parts(pair.accessToken)[1]) as Record<string, unknown>;
    expect(Object.keys(payload)).toEqual(["tenant", "__proto__", "roles", "iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "scope"]);
    const v = await f.codec.verify(pair.accessToken, "access", f.clock.now());
    expect(v.ok && Object.getPrototypeOf(v.token.claims)).toBe(Object.prototype);
    expect(v.ok && Object.hasOwn(v.token.claims, "__proto__")).toBe(true);
    expect(v.ok && (v.token.claims as { admin?: unknown }).admin).toBeUndefined();
  });
});

describe("token verification", () => {
  it("accepts genuine tokens as their own type only", async () => {
    const { pair, reason } = await fixture();
    expect(await reason(pair.accessToken)).toBe("ok");
    expect(await reason(pair.refreshToken, "refresh")).toBe("ok");
    expect(await reason(pair.refreshToken)).toBe("wrong_type");
    expect(await reason(pair.accessToken, "refresh")).toBe("wrong_type");
  });

  it("rejects tampering, forged signatures and structural garbage with a reason, never an exception", async () => {
    const { pair, reason } = await fixture();
    const [h, p, s] = parts(pair.accessToken);
    const payload = json(p);
    const cases: Array<[string, string, RejectReason]> = [
      ["tampered payload", `${h}.${b64({ ...payload, sub: "mallory" })}.${s}`, "bad_signature"],
      ["stripped signature", `${h}.${p}.`, "malformed"],
      ["truncated signature", `${h}.${p}.${s.slice(0, 20)}`, "bad_signature"],
      ["alg none", `${b64({ alg: "none", kid: json(h).kid, typ: "at+jwt" })}.${p}.`, "malformed"],
      ["alg None, with signature", `${b64({ alg: "None", kid: json(h).kid, typ: "at+jwt" })}.${p}.${s}`, "bad_signature"],
      ["two parts", `${h}.${p}`, "malformed"],
      ["JWE-like five parts", `${h}.${p}.${s}.${s}.${s}`, "malformed"],
      ["JSON serialization", JSON.stringify({ payload: p, signature: s, protected: h }), "malformed"],
      ["whitespace", ` ${pair.accessToken}`, "malformed"],
      ["non-ASCII", `${h}.${p}é.${s}`, "malformed"],
      ["empty", "", "malformed"],
      ["unknown kid", `${b64({ ...json(h), kid: "nope" })}.${p}.${s}`, "unknown_key"],
      ["path-like kid", `${b64({ ...json(h), kid: "../../etc/passwd" })}.${p}.${s}`, "unknown_key"],
      ["embedded jwk", `${b64({ ...json(h), jwk: { kty: "EC" } })}.${p}.${s}`, "malformed"],
      ["jku", `${b64({ ...json(h), jku: "https://evil.example/jwks" })}.${p}.${s}`, "malformed"],
      ["x5u", `${b64({ ...json(h), x5u: "https://evil.example/cert" })}.${p}.${s}`, "malformed"],
      ["crit", `${b64({ ...json(h), crit: ["exp"] })}.${p}.${s}`, "malformed"],
      ["huge", `${h}.${"A".repeat(10_000)}.${s}`, "malformed"],
    ];
    for (const [name, token, want] of cases) expect([name, await reason(token)]).toEqual([name, want]);
    expect(await reason(pair.accessToken)).toBe("ok");
  });

  it("rejects HMAC keyed with our public key (algorithm confusion)", async () => {
    const { f, pair, reason } = await fixture();
    const pub = f.keys.publicKeys()[0]!;
    const secret = new TextEncoder().encode(JSON.stringify(pub));
    const forged = await new SignJWT(json(parts(pair.accessToken)[1]))
      .setProtectedHeader({ alg: "HS256", kid: pub.kid!, typ: "at+jwt" })
      .sign(secret);
    expect(await reason(forged)).toBe("bad_signature");
  });

  it("rejects a token signed by a foreign key that claims our kid", async () => {
    const { f, pair, reason } = await fixture();
    const { privateKey } = await generateKeyPair("ES256");
    const forged = await new SignJWT(json(parts(pair.accessToken)[1]))
      .setProtectedHeader({ alg: "ES256", kid: f.keys.signingKey().kid, typ: "at+jwt" })
      .sign(privateKey);
    expect(await reason(forged)).toBe("bad_signature");
  });

  it("checks claims even when the signature is ours", async () => {
    const { f, pair, reason, signOwn } = await fixture();
    const good = json(parts(pair.accessToken)[1]);
    const now = Math.floor(f.clock.now() / 1000);
    const cases: Array<[string, Record<string, unknown>, Record<string, unknown>, RejectReason]> = [
      ["wrong issuer", {}, { iss: "https://evil" }, "wrong_issuer"],
      ["missing typ", { typ: undefined }, {}, "malformed"],
      ["foreign typ", { typ: "JWT" }, {}, "malformed"],
      ["expired", {}, { exp: now - 1 }, "expired"],
      ["nbf in future", {}, { nbf: now + 60 }, "not_yet_valid"],
      ["iat in future", {}, { iat: now + 60 }, "not_yet_valid"],
      ["exp as string", {}, { exp: String(now + 60) }, "malformed"],
      ["sub as number", {}, { sub: 42 }, "malformed"],
      ["empty sub", {}, { sub: "" }, "malformed"],
      ["missing sid", {}, { sid: undefined }, "malformed"],
      ["aud as object", {}, { aud: { a: 1 } }, "malformed"],
      ["scope as array", {}, { scope: ["read"] }, "malformed"],
    ];
    for (const [name, header, claims, want] of cases) {
      const token = await signOwn({ typ: "at+jwt", ...header }, { ...good, ...claims });
      expect([name, await reason(token)]).toEqual([name, want]);
    }
    expect(good.iss).toBe(ISSUER);
  });
});

describe("verified-signature cache", () => {
  it("a cached token still gets its type, time and audience checked on every call", async () => {
    const { f, pair, reason } = await fixture();
    expect(await reason(pair.accessToken)).toBe("ok"); // verified once: now cached
    expect(f.codec.cachedCount).toBeGreaterThan(0);
    expect(await reason(pair.accessToken, "refresh")).toBe("wrong_type");
    const v = await f.codec.verify(pair.accessToken, "access", f.clock.now(), "someone-else");
    expect(v).toEqual({ ok: false, reason: "wrong_audience" });
    f.clock.set(pair.accessExpiresAt);
    expect(await reason(pair.accessToken)).toBe("expired");
  });

  it("only tokens whose signature verified are cached, and the cache stays within its bound", async () => {
    const f = await makeAuthority({}, { verifiedCacheSize: 3 });
    const [h, p] = (await issueFor(f)).pair.accessToken.split(".");
    for (let i = 0; i < 5; i++) await f.codec.verify(`${h}.${p}.${"A".repeat(86)}`, "access", f.clock.now());
    expect(f.codec.cachedCount).toBe(0);
    const tokens = await Promise.all(Array.from({ length: 5 }, () => issueFor(f)));
    for (const t of tokens) expect((await f.codec.verify(t.pair.accessToken, "access", f.clock.now())).ok).toBe(true);
    expect(f.codec.cachedCount).toBe(3);
    // evicted or not, every one of them still verifies
    for (const t of tokens) expect((await f.codec.verify(t.pair.accessToken, "access", f.clock.now())).ok).toBe(true);
  });

  it("a token that shares a cached token's signature but not its payload is checked, and refused, on its own", async () => {
    const f = await makeAuthority({}, { verifiedCacheSize: 100 });
    const { pair } = await issueFor(f);
    const [h, p, s] = pair.accessToken.split(".");
    expect((await f.codec.verify(pair.accessToken, "access", f.clock.now())).ok).toBe(true); // cached now
    const claims = JSON.parse(Buffer.from(p!, "base64url").toString()) as Record<string, unknown>;
    const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: "mallory" })).toString("base64url")}.${s}`;
    expect(forged.slice(-32)).toBe(pair.accessToken.slice(-32)); // the cache's probe: the same place
    expect(await f.codec.verify(forged, "access", f.clock.now())).toEqual({ ok: false, reason: "bad_signature" });
    expect((await f.codec.verify(pair.accessToken, "access", f.clock.now())).ok).toBe(true);
  });
});
