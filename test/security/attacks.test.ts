/**
 * Tokens an attacker makes, through the API (router transport, real authority, memory store): each comes back
 * inactive, or INVALID_ARGUMENT where the request itself is malformed, and the genuine token still works afterwards.
 * Plus a property-based test: mutations of genuine tokens and random strings are never active and never crash.
 */
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import fc from "fast-check";
import { CompactSign, SignJWT, exportSPKI, generateKeyPair } from "jose";
import { pino } from "pino";
import { beforeAll, describe, expect, it } from "vitest";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { InactiveReason, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { interceptorsFor } from "../../src/api/pipeline.js";
import { routes, services } from "../../src/api/routes.js";
import { PHONE, issueFor, makeAuthority, type Fixture } from "../helpers/authority.js";

const b64 = (v: unknown) => Buffer.from(typeof v === "string" ? v : JSON.stringify(v)).toString("base64url");
const json = (part: string) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
const enc = new TextEncoder();

let f: Fixture;
let tokens: ReturnType<typeof createClient<typeof TokenService>>;
let access: string;
let refresh: string;

beforeAll(async () => {
  f = await makeAuthority();
  const transport = createRouterTransport(routes(services({ authority: f.authority, keys: f.keys, maxTokenLength: 8192 })), {
    router: { interceptors: interceptorsFor({ logger: pino({ level: "silent" }) }) },
  });
  tokens = createClient(TokenService, transport);
  const issued = await issueFor(f);
  access = issued.pair.accessToken;
  refresh = issued.pair.refreshToken;
});

/** "ACTIVE", the inactive reason's name, or the error code's name. */
async function verdict(token: string, expectedType = TokenType.ACCESS): Promise<string> {
  try {
    const r = await tokens.introspect({ token, expectedType });
    return r.active ? "ACTIVE" : InactiveReason[r.inactiveReason];
  } catch (e) {
    return `ERROR:${Code[ConnectError.from(e).code]}`;
  }
}

/** Signs header+payload with Tessera's own key: what an attacker cannot do, to probe the claim checks alone. */
async function signOwn(header: Record<string, unknown>, payload: Record<string, unknown>): Promise<string> {
  const key = f.keys.signingKey();
  return new CompactSign(enc.encode(JSON.stringify(payload)))
    .setProtectedHeader({ alg: key.alg, kid: key.kid, ...header } as never)
    .sign(key.privateKey);
}

describe("tokens an attacker makes", () => {
  it("are all refused, and the genuine tokens still work afterwards", async () => {
    const [h, p, s] = access.split(".") as [string, string, string];
    const header = json(h);
    const payload = json(p);
    const now = Math.floor(f.clock.now() / 1000);
    const pubJwk = f.keys.publicKeys()[0]!;
    const { privateKey: foreignPriv } = await generateKeyPair("ES256");
    const ourSpki = await exportSPKI(f.keys.signingKey().publicKey);
    const hmac = async (alg: string, secret: string) =>
      new SignJWT(payload).setProtectedHeader({ alg, kid: header.kid, typ: "at+jwt" }).sign(enc.encode(secret));

    const cases: Array<[string, string | Promise<string>, string, TokenType?]> = [
      // alg "none" in every spelling, with and without a signature part
      ...["none", "None", "NONE", "nOnE"].flatMap((alg): Array<[string, string, string]> => [
        [`alg ${alg}, empty signature`, `${b64({ ...header, alg })}.${p}.`, "MALFORMED"],
        [`alg ${alg}, kept signature`, `${b64({ ...header, alg })}.${p}.${s}`, "BAD_SIGNATURE"],
      ]),
      // algorithm confusion: HMAC keyed with our public key in the forms a verifier might hold it
      ["HS256 keyed with the public JWK", hmac("HS256", JSON.stringify(pubJwk)), "BAD_SIGNATURE"],
      ["HS384 keyed with the public x", hmac("HS384", String(pubJwk.x)), "BAD_SIGNATURE"],
      ["HS512 keyed with a PEM public key", hmac("HS512", ourSpki), "BAD_SIGNATURE"],
      // tampering
      ["tampered payload", `${h}.${b64({ ...payload, sub: "admin" })}.${s}`, "BAD_SIGNATURE"],
      ["tampered header", `${b64({ ...header, typ: "at+jwt", extra: 1 })}.${p}.${s}`, "MALFORMED"],
      ["stripped signature", `${h}.${p}.`, "MALFORMED"],
      ["truncated signature", `${h}.${p}.${s.slice(0, 40)}`, "BAD_SIGNATURE"],
      ["signature from a foreign key", new SignJWT(payload).setProtectedHeader(header).sign(foreignPriv), "BAD_SIGNATURE"],
      ["signature of another token", `${h}.${p}.${refresh.split(".")[2]}`, "BAD_SIGNATURE"],
      // header tricks
      ["embedded jwk", `${b64({ ...header, jwk: pubJwk })}.${p}.${s}`, "MALFORMED"],
      ["jku", `${b64({ ...header, jku: "http://127.0.0.1:1/jwks" })}.${p}.${s}`, "MALFORMED"],
      ["x5u", `${b64({ ...header, x5u: "http://127.0.0.1:1/cert" })}.${p}.${s}`, "MALFORMED"],
      ["x5c", `${b64({ ...header, x5c: ["MIIB"] })}.${p}.${s}`, "MALFORMED"],
      ["unknown kid", `${b64({ ...header, kid: "not-our-key" })}.${p}.${s}`, "UNKNOWN_KEY"],
      ["path-like kid", `${b64({ ...header, kid: "../../../dev/null" })}.${p}.${s}`, "UNKNOWN_KEY"],
      ["empty kid", `${b64({ ...header, kid: "" })}.${p}.${s}`, "UNKNOWN_KEY"],
      ["missing kid", `${b64({ alg: header.alg, typ: header.typ })}.${p}.${s}`, "MALFORMED"],
      ["unknown crit", `${b64({ ...header, crit: ["x-tessera"], "x-tessera": 1 })}.${p}.${s}`, "MALFORMED"],
      ["missing typ", signOwn({ typ: undefined }, payload), "MALFORMED"],
      ["typ JWT", signOwn({ typ: "JWT" }, payload), "MALFORMED"],
      ["typ application/at+jwt", signOwn({ typ: "application/at+jwt" }, payload), "MALFORMED"],
      // the other type
      ["refresh token as access token", refresh, "WRONG_TYPE"],
      ["access token as refresh token", access, "WRONG_TYPE", TokenType.REFRESH],
      // claims (signed with our own key, so only the claim checks can refuse them)
      ["wrong iss", signOwn({ typ: "at+jwt" }, { ...payload, iss: "https://evil.example" }), "WRONG_ISSUER"],
      ["expired", signOwn({ typ: "at+jwt" }, { ...payload, exp: now - 1 }), "EXPIRED"],
      ["not yet valid", signOwn({ typ: "at+jwt" }, { ...payload, nbf: now + 3600 }), "NOT_YET_VALID"],
      ["iat in the future", signOwn({ typ: "at+jwt" }, { ...payload, iat: now + 3600 }), "NOT_YET_VALID"],
      ["exp as a string", signOwn({ typ: "at+jwt" }, { ...payload, exp: String(now + 600) }), "MALFORMED"],
      ["exp as a float", signOwn({ typ: "at+jwt" }, { ...payload, exp: now + 600.5 }), "MALFORMED"],
      ["sub as an object", signOwn({ typ: "at+jwt" }, { ...payload, sub: { id: 1 } }), "MALFORMED"],
      ["aud as a number", signOwn({ typ: "at+jwt" }, { ...payload, aud: 7 }), "MALFORMED"],
      ["jti missing", signOwn({ typ: "at+jwt" }, { ...payload, jti: undefined }), "MALFORMED"],
      ["payload an array", signOwn({ typ: "at+jwt" }, [1, 2] as never), "MALFORMED"],
      ["unknown session", signOwn({ typ: "at+jwt" }, { ...payload, sid: "no-such-session-00000" }), "SESSION_ENDED"],
      // encodings and shapes
      ["JWE compact (five parts)", `${b64({ alg: "dir", enc: "A128GCM" })}..${s}.${s}.${s}`, "MALFORMED"],
      ["JSON flattened serialization", JSON.stringify({ protected: h, payload: p, signature: s }), "MALFORMED"],
      ["JSON general serialization", JSON.stringify({ payload: p, signatures: [{ protected: h, signature: s }] }), "MALFORMED"],
      ["padding characters", `${h}.${p}.${s}==`, "MALFORMED"],
      ["standard base64 alphabet", `${h}.${p}.${s.replace(/-/g, "+").replace(/_/g, "/")}`, s.match(/[-_]/) ? "MALFORMED" : "ACTIVE"],
      ["non-canonical signature encoding", `${h}.${p}.${s.slice(0, -1)}${flipUnusedBits(s.at(-1)!)}`, "MALFORMED"],
      ["leading whitespace", ` ${access}`, "MALFORMED"],
      ["trailing newline", `${access}\n`, "MALFORMED"],
      ["inner newline", `${h}.\n${p}.${s}`, "MALFORMED"],
      ["non-ASCII", `${h}.${p}ü.${s}`, "MALFORMED"],
      ["zero-width space", `${h}\u200b.${p}.${s}`, "MALFORMED"],
      ["empty parts", "..", "MALFORMED"],
      ["a single dot", ".", "MALFORMED"],
      ["header not JSON", `${b64("not json")}.${p}.${s}`, "MALFORMED"],
      ["header JSON null", `${b64("null")}.${p}.${s}`, "MALFORMED"],
      ["exactly at the length limit", `${h}.${"A".repeat(8192 - h.length - s.length - 2)}.${s}`, "BAD_SIGNATURE"],
      ["over the length limit", "a".repeat(8193), "ERROR:InvalidArgument"],
      ["empty token", "", "ERROR:InvalidArgument"],
    ];
    const got: Array<[string, string]> = [];
    for (const [name, token, want, type] of cases) got.push([name, await verdict(await token, type)]);
    expect(got).toEqual(cases.map(([name, , want]) => [name, want]));

    expect(await verdict(access)).toBe("ACTIVE");
    expect(await verdict(refresh, TokenType.REFRESH)).toBe("ACTIVE");
    expect((await f.authority.refresh(refresh, PHONE)).pair.accessToken).toMatch(/^ey/);
  });
});

describe("property: nothing but a genuine token is ever active", () => {
  it("mutations of a genuine token are never active and never crash", async () => {
    const { pair } = await issueFor(f, "prop");
    const genuine = pair.accessToken;
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \u00e9";
    const mutation = fc.oneof(
      // replace one character
      fc.record({ kind: fc.constant("replace"), at: fc.nat(), ch: fc.constantFrom(...alphabet) }),
      // insert one character
      fc.record({ kind: fc.constant("insert"), at: fc.nat(), ch: fc.constantFrom(...alphabet) }),
      // delete a range
      fc.record({ kind: fc.constant("delete"), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
      // swap two segments
      fc.record({ kind: fc.constant("swap"), a: fc.nat(2), b: fc.nat(2) }),
      // flip one bit in a decoded segment and re-encode it
      fc.record({ kind: fc.constant("bitflip"), seg: fc.nat(2), at: fc.nat(), bit: fc.nat(7) }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(mutation, { minLength: 1, maxLength: 3 }), async (ms) => {
        let t = genuine;
        for (const m of ms) t = mutate(t, m as Mutation);
        if (t === genuine) return;
        const v = await verdict(t);
        expect(v).not.toBe("ACTIVE");
        expect(v.startsWith("ERROR:") ? v : "ok").not.toMatch(/Internal|Unknown/);
      }),
      { numRuns: 400, seed: 20261122 },
    );
    expect(await verdict(genuine)).toBe("ACTIVE");
  });

  it("random strings and random JSON-shaped tokens are never active and never crash", async () => {
    const segment = fc.oneof(
      fc.base64String().map((x) => x.replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_")),
      fc.jsonValue().map((v) => b64(v)),
      fc.string(),
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string(), fc.tuple(segment, segment, segment).map((xs) => xs.join("."))), async (t) => {
        const v = await verdict(t);
        expect(v).not.toBe("ACTIVE");
        expect(v).not.toMatch(/Internal|Unknown/);
      }),
      { numRuns: 400, seed: 7 },
    );
  });
});

type Mutation =
  | { kind: "replace" | "insert"; at: number; ch: string }
  | { kind: "delete"; at: number; len: number }
  | { kind: "swap"; a: number; b: number }
  | { kind: "bitflip"; seg: number; at: number; bit: number };

function mutate(t: string, m: Mutation): string {
  switch (m.kind) {
    case "replace": {
      const i = m.at % Math.max(t.length, 1);
      return t.slice(0, i) + m.ch + t.slice(i + 1);
    }
    case "insert": {
      const i = m.at % (t.length + 1);
      return t.slice(0, i) + m.ch + t.slice(i);
    }
    case "delete": {
      const i = m.at % Math.max(t.length, 1);
      return t.slice(0, i) + t.slice(i + m.len);
    }
    case "swap": {
      const parts = t.split(".");
      if (parts.length !== 3) return t;
      [parts[m.a], parts[m.b]] = [parts[m.b]!, parts[m.a]!];
      return parts.join(".");
    }
    case "bitflip": {
      const parts = t.split(".");
      if (parts.length !== 3) return t;
      const bytes = Buffer.from(parts[m.seg]!, "base64url");
      if (bytes.length === 0) return t;
      const i = m.at % bytes.length;
      bytes[i] = bytes[i]! ^ (1 << m.bit);
      parts[m.seg] = bytes.toString("base64url");
      return parts.join(".");
    }
  }
}

/** Another base64url character with the same top two bits (the ones an 86-character ES256 signature uses). */
function flipUnusedBits(ch: string): string {
  const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const i = abc.indexOf(ch);
  return abc[(i & 0b110000) | ((i + 1) & 0b001111)]!;
}
