/**
 * A verifier (createVerifier) in front of handlers: `verifierInterceptor` for a Connect server (connect-node,
 * connect-fastify, connect-express...) and `verifierMiddleware` for Node's http server and Express-style
 * `(req, res, next)` stacks. Both read `authorization: Bearer <token>` as RFC 6750 §2.1 spells it and answer as the
 * sidecar's Envoy Check does (src/sidecar/envoy.ts), RFC 6750 §3:
 *
 * | the request                                      | Connect code      | HTTP | WWW-Authenticate                                   |
 * | ------------------------------------------------ | ----------------- | ---- | -------------------------------------------------- |
 * | no Authorization header, or another scheme       | UNAUTHENTICATED   | 401  | `Bearer` (with `realm="..."` when given)            |
 * | a malformed Bearer credential, or two of them    | UNAUTHENTICATED   | 401  | `Bearer error="invalid_token"`                     |
 * | a token that is not active                       | UNAUTHENTICATED   | 401  | `Bearer error="invalid_token"`                     |
 * | active, but without a required scope             | PERMISSION_DENIED | 403  | `Bearer error="insufficient_scope", scope="a b"`   |
 * | the verifier cannot answer (UNAVAILABLE, stale)   | UNAVAILABLE       | 503  | (none; `Retry-After: 1`)                           |
 * | active, with the scopes                          | the handler runs, with the principal attached               |
 *
 * The principal is attached where the handler finds it: `ctx.values.get(principalKey)` in a Connect handler,
 * `req.tessera` in a Node/Express handler. No answer, body or message echoes the token.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { isUnavailable, type Principal, type Verifier, type VerifyResult } from "./verifier.js";

/** Where verifierInterceptor puts the principal: `ctx.values.get(principalKey)` in a handler (undefined if skipped). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "tessera: the caller's principal" });

/** The longest Authorization header value read. */
const MAX_AUTHORIZATION_LENGTH = 16 * 1024;
/** `Bearer <b64token>` (RFC 6750 §2.1), as src/sidecar/envoy.ts reads it. */
const BEARER = /^bearer +([A-Za-z0-9\-._~+/]+=*)$/i;
const BEARER_SCHEME = /^bearer(?:[ \t]|$)/i;

type Credential = { kind: "none" } | { kind: "malformed" } | { kind: "bearer"; token: string };

/** Reads the credential from the Authorization header values (more than one is malformed). */
export function bearerToken(values: readonly string[]): Credential {
  if (values.length === 0) return { kind: "none" };
  if (values.length > 1) return { kind: "malformed" };
  const raw = values[0]!;
  if (raw.length > MAX_AUTHORIZATION_LENGTH) return { kind: "malformed" };
  const value = raw.replace(/^[ \t]+|[ \t]+$/g, "");
  const match = BEARER.exec(value);
  if (match) return { kind: "bearer", token: match[1]! };
  return BEARER_SCHEME.test(value) ? { kind: "malformed" } : { kind: "none" };
}

type Outcome =
  | { ok: true; principal: Principal }
  | { ok: false; status: 401 | 403 | 503; challenge: string | undefined; error: string; message: string };

interface GuardOptions {
  audience?: string | undefined;
  requiredScopes?: readonly string[] | undefined;
  /** `realm` of the challenges (RFC 6750 §3). */
  realm?: string | undefined;
}

async function guard(verifier: Verifier, credential: Credential, opts: GuardOptions): Promise<Outcome> {
  const realm = opts.realm === undefined ? "" : ` realm="${quoted(opts.realm)}",`;
  const invalid = (message: string): Outcome => ({
    ok: false,
    status: 401,
    challenge: `Bearer${realm} error="invalid_token"`,
    error: "invalid_token",
    message,
  });
  if (credential.kind === "none") {
    return { ok: false, status: 401, challenge: opts.realm === undefined ? "Bearer" : `Bearer realm="${quoted(opts.realm)}"`, error: "missing_token", message: "missing bearer token" };
  }
  if (credential.kind === "malformed") return invalid("malformed bearer credential");
  let r: VerifyResult;
  try {
    r = await verifier.verify(credential.token, { audience: opts.audience, requiredScopes: opts.requiredScopes });
  } catch (err) {
    if (isUnavailable(err) || (err instanceof ConnectError && err.code === Code.DeadlineExceeded)) {
      return { ok: false, status: 503, challenge: undefined, error: "temporarily_unavailable", message: "token state unavailable" };
    }
    throw err;
  }
  if (r.active) return { ok: true, principal: r.principal };
  if (r.reason === "insufficient_scope") {
    const scope = (opts.requiredScopes ?? []).join(" ");
    return {
      ok: false,
      status: 403,
      challenge: `Bearer${realm} error="insufficient_scope", scope="${quoted(scope)}"`,
      error: "insufficient_scope",
      message: `missing scope: ${r.missingScopes.join(" ")}`,
    };
  }
  return invalid(`token inactive (${r.reason})`);
}

/** A quoted-string's content: no quotes, backslashes or control characters. */
function quoted(s: string): string {
  return s.replace(/[^\x20-\x7e]|["\\]/g, "");
}

export interface InterceptorOptions extends GuardOptions {
  /** Scopes by method (overrides `requiredScopes` when it answers an array). */
  scopesFor?: ((method: DescMethod) => readonly string[] | undefined) | undefined;
  /** Methods served without a token (health, reflection): the handler runs with no principal. */
  skip?: ((method: DescMethod) => boolean) | undefined;
}

/** A Connect server interceptor: UNAUTHENTICATED, PERMISSION_DENIED or UNAVAILABLE, else the principal in ctx.values. */
export function verifierInterceptor(verifier: Verifier, opts: InterceptorOptions = {}): Interceptor {
  return (next) => async (req) => {
    if (opts.skip?.(req.method)) return next(req);
    const values = req.header.get("authorization");
    const credential = bearerToken(values === null ? [] : [values]);
    const requiredScopes = opts.scopesFor?.(req.method) ?? opts.requiredScopes;
    const outcome = await guard(verifier, credential, { ...opts, requiredScopes });
    if (!outcome.ok) {
      const code = outcome.status === 401 ? Code.Unauthenticated : outcome.status === 403 ? Code.PermissionDenied : Code.Unavailable;
      const metadata = outcome.challenge === undefined ? undefined : { "www-authenticate": outcome.challenge };
      throw new ConnectError(outcome.message, code, metadata);
    }
    req.contextValues.set(principalKey, outcome.principal);
    return next(req);
  };
}

export interface MiddlewareOptions extends GuardOptions {
  /**
   * What to do when the verifier fails otherwise than UNAVAILABLE (the sidecar or authority refusing this service's
   * own credentials, for one). Default: 500 `{"error":"server_error"}`; pass `(err, req, res, next) => next(err)` to hand
   * it to Express's error handling.
   */
  onError?: ((err: unknown, req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void) | undefined;
}

/** A request that passed: the token's principal. */
export type VerifiedRequest<R extends IncomingMessage = IncomingMessage> = R & { tessera: Principal };

/**
 * For Node's http server and Express-style stacks: `req.tessera = principal` and `next()`, else the answer in the
 * table above (JSON body `{"error": ...}`).
 */
export function verifierMiddleware(
  verifier: Verifier,
  opts: MiddlewareOptions = {},
): (req: IncomingMessage & { tessera?: Principal }, res: ServerResponse, next: (err?: unknown) => void) => void {
  return (req, res, next) => {
    const distinct = req.headersDistinct?.authorization;
    const header = distinct ?? (req.headers.authorization === undefined ? [] : [req.headers.authorization]);
    guard(verifier, bearerToken(header), opts).then(
      (outcome) => {
        if (outcome.ok) {
          req.tessera = outcome.principal;
          next();
          return;
        }
        const headers: Record<string, string> = { "content-type": "application/json", "cache-control": "no-store" };
        if (outcome.challenge !== undefined) headers["www-authenticate"] = outcome.challenge;
        if (outcome.status === 503) headers["retry-after"] = "1";
        res.writeHead(outcome.status, headers).end(JSON.stringify({ error: outcome.error }));
      },
      (err: unknown) => {
        if (opts.onError) return opts.onError(err, req, res, next);
        if (!res.headersSent) res.writeHead(500, { "content-type": "application/json", "cache-control": "no-store" });
        res.end(JSON.stringify({ error: "server_error" }));
      },
    );
  };
}
