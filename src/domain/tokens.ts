/**
 * Signing and verifying Tessera's two token types. Verification accepts only compact JWS made by our own keys:
 * the key is chosen by kid from our key set (never from jku, x5u or an embedded jwk), the algorithm is pinned per
 * key, the header may carry nothing but alg, kid and typ, and each type is accepted only as itself.
 * Every rejection names a reason; nothing here throws on input.
 */
import { decodeProtectedHeader, type CryptoKey } from "jose";
import { isJwsAlgorithm, REFRESH_MAC_ALG, REFRESH_MAC_BYTES, signatureCheck, signingInput, type RefreshMac, type SignatureCheck } from "./jws.js";
import { ProbedMap } from "./kept.js";
import type { LoadedKey } from "./keys.js";
import { SEALED_CLAIM, SEALED_GRANT_MEMBER, SEALED_JWE } from "./sealed-claims.js";

export type TokenKind = "access" | "refresh";
export const TYP: Record<TokenKind, string> = { access: "at+jwt", refresh: "rt+jwt" };

export type RejectReason =
  | "expired"
  | "malformed"
  | "bad_signature"
  | "wrong_type"
  | "wrong_audience"
  | "not_yet_valid"
  | "unknown_key"
  | "wrong_issuer"
  | "key_revoked";

/** What an access token grants; a refresh token carries it so the successor access token can be made without state. */
export interface Grant {
  audience: string[];
  scopes: string[];
  claims: Record<string, unknown>;
  accessTtlMs: number;
  /**
   * The sensitive claims, sealed: a compact JWE only Tessera can open (sealed-claims.ts), never the claims in clear.
   * Absent: none. The access token carries it as its claim `sensitive_claims`, the refresh token in its grant.
   */
  sealed?: string | undefined;
}

/** Claims Tessera sets itself or that JWT/OAuth define; callers cannot set them as extra claims. */
export const RESERVED_CLAIMS = new Set([
  "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "sid", "scope", "grant", "typ", "cty", "client_id", "cnf",
  "act", "may_act", "azp", "auth_time", "acr", "amr", "nonce", "at_hash", "c_hash", "s_hash", "sub_jwk",
  SEALED_CLAIM,
]);

export interface VerifiedToken {
  kind: TokenKind;
  kid: string;
  issuer: string;
  subject: string;
  audience: string[];
  expiresAt: number;
  issuedAt: number;
  notBefore: number;
  jti: string;
  sessionId: string;
  scopes: string[];
  /** Caller-supplied claims (access tokens). */
  claims: Record<string, unknown>;
  /** An access token's sensitive claims, sealed (a compact JWE); absent when it carries none. */
  sealed?: string;
  /** The grant a refresh token carries. */
  grant?: Grant;
}

export type Verification = { ok: true; token: VerifiedToken } | { ok: false; reason: RejectReason };

export interface TokenCodecOptions {
  issuer: string;
  clockSkewMs: number;
  maxTokenLength: number;
  /**
   * How many tokens whose signature verified are remembered (by their exact string), so a token presented again
   * skips the signature check; its type, time claims and audience are still checked on every call, and revocation is
   * the store's business on every call anyway. 0 turns the cache off.
   */
  verifiedCacheSize?: number;
  /**
   * Refresh tokens made from now on are MAC'd under their key's derived secret (jws.ts refreshMac) rather than signed
   * (TESSERA_REFRESH_TOKEN_MAC). Either kind is accepted whatever this says.
   */
  refreshTokenMac?: boolean;
}

/**
 * What a verified signature vouches for: the header's typ, and the payload read into claims (everything that does not
 * depend on the clock or the audience), once per token; undefined when the typ is none of ours.
 */
interface Verified {
  typ: string;
  kid: string;
  read: ReadClaims | undefined;
}

/** A token's time window and audiences: what checkWindow checks on every call. */
type Window = Pick<VerifiedToken, "audience" | "expiresAt" | "issuedAt" | "notBefore">;

/** A payload as readClaims reads it: refused before the window checks, or the window and the outcome after them. */
type ReadClaims = { refused: RejectReason } | { window: Window; result: Verification };

export interface SignInput {
  subject: string;
  sessionId: string;
  jti: string;
  grant: Grant;
  now: number;
  expiresAt: number;
}

/** A token ready to sign (TokenCodec.prepare): the length it will have, and the signing. */
export interface PreparedToken {
  length: number;
  /** Whether `length` is exact (every key type Tessera knows); otherwise a lower bound. */
  exact: boolean;
  sign(): Promise<string>;
}

const ALLOWED_HEADER = new Set(["alg", "kid", "typ"]);
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const KID = /^[A-Za-z0-9_-]{1,128}$/;
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Each key's signature check (jws.ts), made once per key and algorithm; null where none can be made (as jose refuses). */
const checks = new WeakMap<CryptoKey, { alg: string; check: SignatureCheck | null }>();

function checkOf(key: { alg: string; publicKey: CryptoKey }): SignatureCheck | null {
  const known = checks.get(key.publicKey);
  if (known !== undefined && known.alg === key.alg) return known.check;
  let check: SignatureCheck | null;
  try {
    check = isJwsAlgorithm(key.alg) ? signatureCheck(key.alg, key.publicKey) : null;
  } catch {
    check = null;
  }
  checks.set(key.publicKey, { alg: key.alg, check });
  return check;
}

/** Where a verifier finds the key a token names: the authority's KeyRing, or a sidecar's copy of the JWKS. */
export interface VerificationKeys {
  /**
   * The key of a kid: its algorithm and public key, and (the authority's own keys only) the MAC of its refresh tokens
   * (jws.ts refreshMac).
   */
  lookup(kid: string): Promise<{ alg: string; publicKey: CryptoKey; refreshMac?: Pick<RefreshMac, "check"> } | undefined>;
  /** Whether the key was revoked (a stolen key): its tokens are refused, even those whose signature checked out. */
  isRevoked?(kid: string): boolean;
}

/** What signing needs besides: the key new tokens are signed with (the KeyRing); its public JWK sizes its signature. */
export interface SigningKeys extends VerificationKeys {
  signingKey(): Pick<LoadedKey, "kid" | "alg" | "sign" | "publicJwk" | "refreshMac">;
}

/** Verifies Tessera's tokens: what the authority and a sidecar share. */
export class TokenVerifier {
  /**
   * Bounded by opts.verifiedCacheSize, the oldest out first. Placed by the token's last 32 characters, which lie in
   * its signature (ES256 and EdDSA: 86 characters, RS256: 342, a refresh token's HS256: 43): each token presented is
   * a fresh string, which a Map would hash whole on every call (kept.ts ProbedMap).
   */
  private readonly verified: ProbedMap<Verified>;

  constructor(
    private readonly keys: VerificationKeys,
    protected readonly opts: TokenCodecOptions,
  ) {
    this.verified = new ProbedMap(opts.verifiedCacheSize ?? 0, (token) => token.slice(-32));
  }

  /** Tokens in the verified-signature cache (for tests of its bound). */
  get cachedCount(): number {
    return this.verified.size;
  }

  get issuer(): string {
    return this.opts.issuer;
  }

  /** TESSERA_MAX_TOKEN_LENGTH: the longest token verify accepts (and so the longest the authority may sign). */
  get maxTokenLength(): number {
    return this.opts.maxTokenLength;
  }

  /** Verifies signature, type, issuer, time claims and (if given) audience. Never throws on input. */
  async verify(token: string, kind: TokenKind, now: number, audience?: string): Promise<Verification> {
    if (token.length > this.opts.maxTokenLength || !COMPACT_JWS.test(token)) return reject("malformed");
    const known = this.verified.get(token) ?? (await this.verifySignature(token));
    if ("reason" in known) return reject(known.reason);
    if (this.keys.isRevoked?.(known.kid)) return reject("key_revoked");
    if (known.typ !== TYP[kind] || known.read === undefined) {
      return reject(Object.values(TYP).includes(known.typ) ? "wrong_type" : "malformed");
    }
    return checkWindow(known.read, now, this.opts.clockSkewMs, audience); // the clock and audience: on every call
  }

  /** The signature check proper; a token that passes it is remembered (bounded, oldest out first). */
  private async verifySignature(token: string): Promise<Verified | { reason: RejectReason }> {
    // Base64url's last character can carry unused bits: the same signature has several spellings. Only the
    // canonical one is accepted, so one signed token has exactly one string form.
    const signature = token.slice(token.lastIndexOf(".") + 1);
    const decoded = Buffer.from(signature, "base64url");
    if (decoded.toString("base64url") !== signature) return { reason: "malformed" };
    let header: Record<string, unknown>;
    try {
      header = decodeProtectedHeader(token) as Record<string, unknown>;
    } catch {
      return { reason: "malformed" };
    }
    if (Object.keys(header).some((k) => !ALLOWED_HEADER.has(k))) return { reason: "malformed" };
    const { kid, alg, typ } = header;
    if (typeof kid !== "string" || typeof alg !== "string" || typeof typ !== "string") return { reason: "malformed" };
    if (!KID.test(kid)) return { reason: "unknown_key" };
    const key = await this.keys.lookup(kid);
    if (!key) return { reason: "unknown_key" };
    let check: SignatureCheck | null;
    if (alg === key.alg) {
      check = checkOf(key); // what the key signs; a refresh token signed before refresh tokens were MAC'd too
    } else if (alg === REFRESH_MAC_ALG && typ === TYP.refresh) {
      // A refresh token MAC'd under its key's derived secret, which only the authority holds. A sidecar cannot check
      // it, and says so without remembering it: never an access token, and no refresh token of its to check.
      if (key.refreshMac === undefined) return { typ, kid, read: { refused: "unknown_key" } };
      check = key.refreshMac.check;
    } else {
      return { reason: "bad_signature" };
    }
    if (check === null) return { reason: "malformed" };
    const input = token.slice(0, token.length - signature.length - 1);
    if (!(await check(input, decoded))) return { reason: "bad_signature" };
    let payload: unknown;
    try {
      payload = JSON.parse(decoder.decode(Buffer.from(input.slice(input.indexOf(".") + 1), "base64url")));
    } catch {
      return { reason: "malformed" };
    }
    const kind = (Object.keys(TYP) as TokenKind[]).find((k) => TYP[k] === typ);
    const entry: Verified = { typ, kid, read: kind && this.readClaims(payload, kind, kid) };
    this.verified.set(token, entry); // with a bound of 0, kept not at all
    return entry;
  }

  /**
   * Reads and checks everything in a payload that does not depend on the clock or the audience, in the order the
   * checks have always run: what is refused before the window checks, else the window and the outcome after them.
   */
  private readClaims(payload: unknown, kind: TokenKind, kid: string): ReadClaims {
    if (!isObject(payload)) return { refused: "malformed" };
    const { iss, sub, aud, exp, iat, nbf, jti, sid } = payload;
    if (typeof iss !== "string") return { refused: "malformed" };
    if (iss !== this.opts.issuer) return { refused: "wrong_issuer" };
    const audiences = typeof aud === "string" ? [aud] : aud;
    if (
      !nonEmpty(sub) ||
      !nonEmpty(jti) ||
      !nonEmpty(sid) ||
      !isTime(exp) ||
      !isTime(iat) ||
      !isTime(nbf) ||
      !Array.isArray(audiences) ||
      !audiences.every(nonEmpty)
    ) {
      return { refused: "malformed" };
    }
    const window: Window = { audience: audiences as string[], expiresAt: exp * 1000, issuedAt: iat * 1000, notBefore: nbf * 1000 };
    // Written out member by member: a literal that spreads an object and then adds members takes V8's slow path
    // (about 1.5 µs a member added, Node 20), and a refresh token is read on every Refresh.
    const token = (scopes: string[], claims: Record<string, unknown>): VerifiedToken => ({
      kind,
      kid,
      issuer: iss,
      subject: sub,
      audience: window.audience,
      expiresAt: window.expiresAt,
      issuedAt: window.issuedAt,
      notBefore: window.notBefore,
      jti,
      sessionId: sid,
      scopes,
      claims,
    });
    if (kind === "access") {
      if (typeof payload.scope !== "string") return { window, result: reject("malformed") };
      const sealed = payload[SEALED_CLAIM];
      if (sealed !== undefined && !isSealed(sealed)) return { window, result: reject("malformed") };
      const claims: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(payload)) if (!RESERVED_CLAIMS.has(k)) setMember(claims, k, v);
      const access = token(splitScopes(payload.scope), claims);
      if (sealed !== undefined) access.sealed = sealed;
      return { window, result: { ok: true, token: frozen(access) } };
    }
    const grant = payload.grant;
    if (
      !isObject(grant) ||
      !Array.isArray(grant.aud) ||
      !grant.aud.every(nonEmpty) ||
      typeof grant.scope !== "string" ||
      !isObject(grant.ext) ||
      !Number.isInteger(grant.att) ||
      (grant.att as number) <= 0
    ) {
      return { window, result: reject("malformed") };
    }
    const enc = grant[SEALED_GRANT_MEMBER];
    if (enc !== undefined && !isSealed(enc)) return { window, result: reject("malformed") };
    const carried: Grant = {
      audience: grant.aud as string[],
      scopes: splitScopes(grant.scope),
      claims: grant.ext,
      accessTtlMs: (grant.att as number) * 1000,
    };
    if (enc !== undefined) carried.sealed = enc;
    const refresh = token(splitScopes(grant.scope), {});
    refresh.grant = carried;
    return { window, result: { ok: true, token: frozen(refresh) } };
  }
}

/** Signs and verifies: the authority's codec. */
export class TokenCodec extends TokenVerifier {
  constructor(
    private readonly signing: SigningKeys,
    opts: TokenCodecOptions,
  ) {
    super(signing, opts);
  }

  signAccess(i: SignInput): Promise<string> {
    return this.prepare("access", i).sign();
  }

  signRefresh(i: SignInput): Promise<string> {
    return this.prepare("refresh", i).sign();
  }

  /**
   * A token made ready to sign with the current signing key: its payload serialised once, and the length of the
   * token it will make known before the signature is computed. The compact JWS is the signing input, ".", and
   * base64url(signature), whose length is fixed by the key (ES256 and Ed25519: 64 bytes, 86 characters; RSA: the
   * modulus, 342 characters at 2048 bits). Exact for every key Tessera makes (test/security/issue-hardening.test.ts);
   * for a key type it does not know, a lower bound (the signature left out), and the signed token is checked again.
   */
  prepare(kind: TokenKind, i: SignInput): PreparedToken {
    const key = this.signing.signingKey();
    const payload = kind === "access" ? this.accessPayload(i) : this.refreshPayload(i);
    // A refresh token is MAC'd when so configured and its key has a refresh MAC (jws.ts refreshMac).
    const mac = kind === "refresh" && this.opts.refreshTokenMac === true ? key.refreshMac : undefined;
    const input = signingInput({ alg: mac ? REFRESH_MAC_ALG : key.alg, kid: key.kid, typ: TYP[kind] }, payload);
    const bytes = mac ? REFRESH_MAC_BYTES : signatureBytes(key.publicJwk);
    return { length: input.length + 1 + b64Length(bytes), exact: bytes > 0, sign: () => (mac ?? key).sign(input) };
  }

  private accessPayload(i: SignInput): Record<string, unknown> {
    const payload = ownMembers(i.grant.claims);
    payload.iss = this.opts.issuer;
    payload.sub = i.subject;
    payload.aud = i.grant.audience;
    payload.exp = seconds(i.expiresAt);
    payload.iat = seconds(i.now);
    payload.nbf = seconds(i.now);
    payload.jti = i.jti;
    payload.sid = i.sessionId;
    payload.scope = i.grant.scopes.join(" ");
    if (i.grant.sealed !== undefined) payload[SEALED_CLAIM] = i.grant.sealed;
    return payload;
  }

  private refreshPayload(i: SignInput): Record<string, unknown> {
    return {
      iss: this.opts.issuer,
      sub: i.subject,
      aud: this.opts.issuer,
      exp: seconds(i.expiresAt),
      iat: seconds(i.now),
      nbf: seconds(i.now),
      jti: i.jti,
      sid: i.sessionId,
      grant: this.grantMember(i.grant),
    };
  }

  /** The grant as a refresh token carries it. */
  private grantMember(grant: Grant): Record<string, unknown> {
    const out: Record<string, unknown> = {
      aud: grant.audience,
      scope: grant.scopes.join(" "),
      ext: grant.claims,
      att: Math.round(grant.accessTtlMs / 1000),
    };
    if (grant.sealed !== undefined) out[SEALED_GRANT_MEMBER] = grant.sealed;
    return out;
  }

}

/**
 * A new object with the extra claims' own members, in their order, a member named `__proto__` kept as a member (as
 * an object spread keeps it). Not a spread: spreading a decoded google.protobuf.Struct into a literal cost 8 µs a token
 * (V8's slow path), this copy 1 µs with the JSON of the payload.
 */
function ownMembers(claims: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(claims)) setMember(out, name, claims[name]);
  return out;
}

/** Sets a member of a claims object, `__proto__` as a member too (assigning it would set the object's prototype). */
function setMember(object: Record<string, unknown>, name: string, value: unknown): void {
  if (name === "__proto__") Object.defineProperty(object, name, { value, enumerable: true, writable: true, configurable: true });
  else object[name] = value;
}

/** Characters of n bytes in unpadded base64url. */
function b64Length(bytes: number): number {
  return Math.ceil((bytes * 4) / 3);
}

/**
 * Bytes of a signature by this key, from its public JWK: EC (ES256's IEEE P1363 r || s) and OKP (EdDSA) sign twice
 * the length of the coordinate `x`; RSA (RS256, PS256) the length of the modulus `n`. 0 for anything else.
 */
function signatureBytes(jwk: { kty?: string; x?: string; n?: string }): number {
  const bytes = (b64: string | undefined) => (b64 === undefined ? 0 : Math.floor((b64.length * 3) / 4));
  if (jwk.kty === "EC" || jwk.kty === "OKP") return 2 * bytes(jwk.x);
  if (jwk.kty === "RSA") return bytes(jwk.n);
  if (jwk.kty === "oct") return 32; // HS256, the one MAC algorithm
  return 0;
}

/** The checks that depend on the clock and the audience, then the outcome read from the payload. */
function checkWindow(read: ReadClaims, now: number, skew: number, audience: string | undefined): Verification {
  if ("refused" in read) return reject(read.refused);
  const w = read.window;
  if (now >= w.expiresAt + skew) return reject("expired");
  if (w.notBefore > now + skew || w.issuedAt > now + skew) return reject("not_yet_valid");
  if (audience !== undefined && audience !== "" && !w.audience.includes(audience)) return reject("wrong_audience");
  return read.result;
}

/** A verified token is read once and handed to every caller that presents it: nobody may change it. */
function frozen(token: VerifiedToken): VerifiedToken {
  Object.freeze(token.audience);
  Object.freeze(token.scopes);
  Object.freeze(token.claims);
  if (token.grant) for (const part of [token.grant, token.grant.audience, token.grant.scopes]) Object.freeze(part);
  return Object.freeze(token);
}

function reject(reason: RejectReason): Verification {
  return { ok: false, reason };
}

function seconds(ms: number): number {
  return Math.floor(ms / 1000);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A sealed-claims JWE as Tessera makes them (its shape only: only the authority can open it). */
function isSealed(v: unknown): v is string {
  return typeof v === "string" && SEALED_JWE.test(v);
}

function nonEmpty(v: unknown): v is string {
  return typeof v === "string" && v.length > 0;
}

function isTime(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function splitScopes(scope: string): string[] {
  return scope === "" ? [] : scope.split(" ");
}
