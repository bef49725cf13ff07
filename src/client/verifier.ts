/**
 * `createVerifier`: how a resource server checks the bearer tokens it is sent, in one of three modes.
 *
 * | mode        | where the answer comes from                                         | a revocation is seen        |
 * | ----------- | ------------------------------------------------------------------- | --------------------------- |
 * | `sidecar`   | Introspect at a Tessera sidecar next to the service (loopback)      | within the sidecar's bound  |
 * | `authority` | Introspect at the authority (a network hop per token)               | at once                     |
 * | `local`     | in this process: the authority's JWKS and its revocation feed       | within `maxStalenessMs`     |
 *
 * `local` runs the sidecar's own code in-process (src/sidecar/jwks.ts, feed.ts, revocations.ts and the domain's
 * Introspector and TokenVerifier), so it answers exactly what a sidecar answers. It fails closed like the sidecar:
 * until the first JWKS and the feed's first snapshot are in, and whenever the feed has been silent longer than
 * `maxStalenessMs`, `verify` throws UNAVAILABLE for every token whose answer depends on the revocation state (one bad
 * on its face, expired or badly signed, is still answered inactive).
 *
 * `verify` never throws for a bad token: it answers `{ active: false, reason }`. It throws a ConnectError UNAVAILABLE
 * (`isUnavailable`) when it cannot answer safely, and other ConnectErrors for what a retry will not cure (the
 * sidecar or authority refusing this service's credentials, for one).
 */
import type { JsonObject } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { InactiveReason } from "../../gen/tessera/v1/token_pb.js";
import { systemClock } from "../domain/clock.js";
import { Introspector } from "../domain/introspect.js";
import { TokenVerifier as DomainTokenVerifier } from "../domain/tokens.js";
import { FeedFollower } from "../sidecar/feed.js";
import { JwksKeys } from "../sidecar/jwks.js";
import { RevocationIndex } from "../sidecar/revocations.js";
import { createTesseraClient, type TesseraClient, type TesseraClientOptions } from "./client.js";

/** Who a token speaks for, once it checked out. */
export interface Principal {
  subject: string;
  scopes: string[];
  sessionId: string;
  /** The caller-supplied extra claims of the token. */
  claims: JsonObject;
  /** ms since the epoch. */
  expiresAt: number;
  audience: string[];
  issuer: string;
  jti: string;
}

/** Why a token is not accepted: Introspect's inactive reasons in lower case, and `insufficient_scope`. */
export type InactiveReasonName =
  | "expired"
  | "revoked"
  | "malformed"
  | "bad_signature"
  | "wrong_type"
  | "wrong_audience"
  | "not_yet_valid"
  | "unknown_key"
  | "wrong_issuer"
  | "session_ended"
  | "rotated";

export type VerifyResult =
  | { active: true; principal: Principal }
  | { active: false; reason: InactiveReasonName }
  /** The token is active but lacks required scopes (a 403, not a 401). */
  | { active: false; reason: "insufficient_scope"; missingScopes: string[]; principal: Principal };

export interface VerifyOptions {
  /** The token must carry this audience (default: the verifier's `audience`, if any). */
  audience?: string | undefined;
  /** The token must carry every one of these scopes. */
  requiredScopes?: readonly string[] | undefined;
}

export interface Verifier {
  readonly mode: "sidecar" | "authority" | "local";
  verify(token: string, opts?: VerifyOptions): Promise<VerifyResult>;
  /** Resolves once the verifier can answer (local: JWKS and the feed's snapshot in); rejects after `timeoutMs`. */
  ready(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** Connection settings shared by the modes that call a server. */
type Remote = Pick<TesseraClientOptions, "apiKey" | "tls" | "protocol" | "timeoutMs" | "retry" | "interceptors"> & {
  /** Longer tokens are answered malformed without a call (default 8192, as TESSERA_MAX_TOKEN_LENGTH). */
  maxTokenLength?: number | undefined;
};

export type VerifierOptions =
  | ({ mode: "sidecar"; url: string; audience?: string | undefined } & Remote)
  | ({ mode: "authority"; url: string; audience?: string | undefined } & Remote)
  | ({
      mode: "local";
      /** The authority's base URL: its revocation feed (WatchRevocations) and its JWKS. */
      authorityUrl: string;
      /** The caller needs the permission `revocations.watch`. */
      apiKey?: string | undefined;
      tls?: TesseraClientOptions["tls"];
      /** The authority's TESSERA_ISSUER. */
      issuer: string;
      /** Leeway of exp/nbf/iat, as the authority's TESSERA_CLOCK_SKEW (default 5 s). */
      clockSkewMs?: number | undefined;
      /** Longest time without word from the feed before verify throws UNAVAILABLE (default 5 s, at least 300 ms). */
      maxStalenessMs?: number | undefined;
      /** Longest token accepted (default 8192, as TESSERA_MAX_TOKEN_LENGTH). */
      maxTokenLength?: number | undefined;
      audience?: string | undefined;
      /** Told of the feed's connection changes (for logs). */
      onEvent?: ((e: { type: string; err?: unknown }) => void) | undefined;
    });

/** Whether an error from verify means "cannot answer now" (503), rather than a refusal. */
export function isUnavailable(err: unknown): boolean {
  return err instanceof ConnectError && err.code === Code.Unavailable;
}

export function createVerifier(opts: VerifierOptions): Verifier {
  return opts.mode === "local" ? localVerifier(opts) : remoteVerifier(opts);
}

const REASONS: Partial<Record<InactiveReason, InactiveReasonName>> = {
  [InactiveReason.EXPIRED]: "expired",
  [InactiveReason.REVOKED]: "revoked",
  [InactiveReason.MALFORMED]: "malformed",
  [InactiveReason.BAD_SIGNATURE]: "bad_signature",
  [InactiveReason.WRONG_TYPE]: "wrong_type",
  [InactiveReason.WRONG_AUDIENCE]: "wrong_audience",
  [InactiveReason.NOT_YET_VALID]: "not_yet_valid",
  [InactiveReason.UNKNOWN_KEY]: "unknown_key",
  [InactiveReason.WRONG_ISSUER]: "wrong_issuer",
  [InactiveReason.SESSION_ENDED]: "session_ended",
  [InactiveReason.ROTATED]: "rotated",
};

/** A compact JWS's shape (src/domain/tokens.ts checks the same first). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

function withScopes(principal: Principal, required: readonly string[] | undefined): VerifyResult {
  const missingScopes = (required ?? []).filter((s) => !principal.scopes.includes(s));
  if (missingScopes.length > 0) return { active: false, reason: "insufficient_scope", missingScopes, principal };
  return { active: true, principal };
}

function remoteVerifier(opts: Extract<VerifierOptions, { mode: "sidecar" | "authority" }>): Verifier {
  const client: TesseraClient = createTesseraClient({
    baseUrl: opts.url,
    apiKey: opts.apiKey,
    tls: opts.tls,
    protocol: opts.protocol,
    timeoutMs: opts.timeoutMs,
    retry: opts.retry,
    interceptors: opts.interceptors,
  });
  const maxTokenLength = opts.maxTokenLength ?? 8192;
  return {
    mode: opts.mode,
    async verify(token, v = {}) {
      // What the server's edge refuses (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for a message over its size bound)
      // is answered here as the local verifier answers it: malformed, without a call.
      if (token.length > maxTokenLength || !COMPACT_JWS.test(token)) return { active: false, reason: "malformed" };
      let r;
      try {
        r = await client.tokens.introspect({ token, expectedType: TokenType.ACCESS, audience: v.audience ?? opts.audience ?? "" });
      } catch (e) {
        const err = ConnectError.from(e);
        // A token over the server's length bound, or otherwise refused at its edge, is a malformed token here.
        if (err.code === Code.InvalidArgument) return { active: false, reason: "malformed" };
        throw err;
      }
      if (!r.active) return { active: false, reason: REASONS[r.inactiveReason] ?? "malformed" };
      return withScopes(
        {
          subject: r.subject,
          scopes: r.scopes,
          sessionId: r.sessionId,
          claims: r.claims ?? {},
          expiresAt: r.expiresAt ? timestampMs(r.expiresAt) : 0,
          audience: r.audience,
          issuer: r.issuer,
          jti: r.jti,
        },
        v.requiredScopes,
      );
    },
    async ready() {},
    async close() {
      client.close();
    },
  };
}

function localVerifier(opts: Extract<VerifierOptions, { mode: "local" }>): Verifier {
  const maxStalenessMs = Math.max(300, opts.maxStalenessMs ?? 5_000);
  const clockSkewMs = opts.clockSkewMs ?? 5_000;
  const url = new URL(opts.authorityUrl);
  const tls = opts.tls && {
    ...(opts.tls.ca !== undefined ? { ca: Buffer.from(opts.tls.ca) } : {}),
    ...(opts.tls.cert !== undefined ? { cert: Buffer.from(opts.tls.cert) } : {}),
    ...(opts.tls.key !== undefined ? { key: Buffer.from(opts.tls.key) } : {}),
  };
  const client = createTesseraClient({ baseUrl: opts.authorityUrl, apiKey: opts.apiKey, tls: opts.tls });
  const index = new RevocationIndex(() => Date.now(), clockSkewMs);
  const jwks = new JwksKeys({ url, ...(tls ? { tls } : {}), onError: (err) => opts.onEvent?.({ type: "jwks_error", err }) });
  const follower = new FeedFollower({
    index,
    client: client.revocations,
    maxStalenessMs,
    onEvent: (e) => opts.onEvent?.({ type: e.type, ...("err" in e ? { err: e.err } : {}) }),
  });
  const introspector = new Introspector({
    verifier: new DomainTokenVerifier(
      { lookup: (kid) => jwks.lookup(kid), isRevoked: (kid) => index.keyRevoked(kid) },
      { issuer: opts.issuer, clockSkewMs, maxTokenLength: opts.maxTokenLength ?? 8192, verifiedCacheSize: 10_000 },
    ),
    clock: systemClock,
    state: {
      tokenState: async (q) => {
        if (!follower.fresh()) throw stale();
        return index.stateOf(q);
      },
    },
  });
  let lastJwksTry = performance.now();
  let jwksTry = jwks.refresh().catch(() => {});
  follower.start();
  let closed = false;
  return {
    mode: "local",
    async verify(token, v = {}) {
      if (closed) throw new ConnectError("verifier closed", Code.Unavailable);
      if (!jwks.loaded) {
        // The first fetch failed (the authority down at start): try again, at most once a second whoever asks.
        if (performance.now() - lastJwksTry >= 1_000) {
          lastJwksTry = performance.now();
          jwksTry = jwks.refresh().catch(() => {});
        }
        await jwksTry;
        if (!jwks.loaded) throw new ConnectError("no JWKS from the authority yet", Code.Unavailable);
      }
      let r;
      try {
        r = await introspector.introspect(token, "access", v.audience ?? opts.audience);
      } catch (e) {
        if ((e as { code?: unknown }).code === "unavailable" || isUnavailable(e)) throw stale();
        throw e;
      }
      if (!r.active) return { active: false, reason: r.reason === "key_revoked" ? "revoked" : r.reason };
      const t = r.token;
      return withScopes(
        {
          subject: t.subject,
          scopes: [...t.scopes],
          sessionId: t.sessionId,
          claims: t.claims as JsonObject,
          expiresAt: t.expiresAt,
          audience: [...t.audience],
          issuer: t.issuer,
          jti: t.jti,
        },
        v.requiredScopes,
      );
    },
    async ready(timeoutMs = 10_000) {
      const deadline = performance.now() + timeoutMs;
      while (!(jwks.loaded && follower.fresh())) {
        if (closed) throw new ConnectError("verifier closed", Code.Unavailable);
        if (performance.now() >= deadline) {
          throw new ConnectError(`not ready within ${timeoutMs}ms: ${jwks.loaded ? "no revocation feed" : "no JWKS"} from the authority`, Code.Unavailable);
        }
        if (!jwks.loaded) await jwks.refresh().catch(() => {});
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      await follower.stop();
      jwks.close();
      index.close();
      client.close();
    },
  };
}

function stale(): ConnectError {
  return new ConnectError("revocation feed stale: no word from the authority in time", Code.Unavailable);
}
