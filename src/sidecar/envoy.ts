/**
 * Envoy's external authorization API (`envoy.service.auth.v3.Authorization/Check`) on the sidecar: Envoy's ext_authz
 * HTTP filter, in gRPC service mode, asks before each request whether its bearer token is active. docs/envoy.md shows
 * the filter's configuration; proto/envoy/ declares the subset of Envoy's messages used here.
 *
 * Answers:
 *
 * | the checked request                          | status (google.rpc)  | HTTP sent downstream | WWW-Authenticate                |
 * | -------------------------------------------- | -------------------- | -------------------- | ------------------------------- |
 * | no Authorization header, or another scheme   | 16 UNAUTHENTICATED   | 401                  | `Bearer`                        |
 * | a malformed Bearer credential                | 16 UNAUTHENTICATED   | 401                  | `Bearer error="invalid_token"`  |
 * | a well-formed token that is not active       | 16 UNAUTHENTICATED   | 401                  | `Bearer error="invalid_token"`  |
 * | an active token                              | 0 OK                 | (forwarded upstream) |                                 |
 * | introspect throws Unavailable (stale feed)   | 14 UNAVAILABLE       | 503                  |                                 |
 * | anything else goes wrong                     | 13 INTERNAL          | 503                  |                                 |
 *
 * The WWW-Authenticate values follow RFC 6750 §3 and §3.1: a request without credentials, or with credentials of an
 * unsupported scheme, gets the bare challenge with no error code; a Bearer credential that does not parse (an empty
 * or repeated token, characters outside b64token, over the length bound, two Authorization headers) or that is not an
 * active token gets `error="invalid_token"` ("expired, revoked, malformed, or invalid for other reasons"). RFC 6750's
 * `invalid_request` (400) is not used, so every authentication failure is a 401 to the client. Neither the body nor
 * any status message echoes the token.
 *
 * Check never throws: whatever the CheckRequest's shape (no attributes, no headers, huge headers), it answers.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, type ServiceImpl } from "@connectrpc/connect";
import {
  HeaderValueOption_HeaderAppendAction,
  type HeaderValueOptionSchema,
  type HeaderValue,
} from "../../gen/envoy/config/core/v3/base_pb.js";
import type { AttributeContext_HttpRequest } from "../../gen/envoy/service/auth/v3/attribute_context_pb.js";
import {
  Authorization,
  CheckResponseSchema,
  type CheckRequest,
  type CheckResponse,
} from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { StatusCode } from "../../gen/envoy/type/v3/http_status_pb.js";
import { toConnectError } from "../api/errors.js";

export interface EnvoyCheckDeps {
  /**
   * The sidecar's own answer for an access token; `audience`: the route's `audience` context extension, if any (the
   * sidecar falls back to TESSERA_SIDECAR_AUDIENCE). Throws UNAVAILABLE (a ConnectError, or a domain error with that
   * code) when the sidecar cannot answer safely (its revocation feed is stale).
   */
  introspect(
    token: string,
    audience: string | undefined,
  ): Promise<{ active: true; subject: string; scopes: readonly string[]; sessionId: string } | { active: false; reason: string }>;
}

/** The headers an allowed request is forwarded with. Upstreams trust these names only behind Envoy. */
export const SUBJECT_HEADER = "x-tessera-subject";
export const SCOPES_HEADER = "x-tessera-scopes";
export const SESSION_ID_HEADER = "x-tessera-session-id";
const OUR_HEADER_PREFIX = "x-tessera-";

/** The longest Authorization header value read (in characters, or bytes for header_map's raw values). */
export const MAX_AUTHORIZATION_LENGTH = 16 * 1024;
/** The longest value (after encoding) set on a forwarded header; Envoy itself refuses values over 16 KiB. */
const MAX_FORWARDED_VALUE_LENGTH = 8 * 1024;

/**
 * `Bearer <b64token>` (RFC 6750 §2.1): the scheme case-insensitive, one or more spaces, exactly one token. The caller
 * trims the value's surrounding whitespace first. Envoy's `headers` map joins repeated headers with ",", which no
 * b64token contains, so two Authorization headers fail here too.
 */
const BEARER = /^bearer +([A-Za-z0-9\-._~+/]+=*)$/i;
/** The scheme alone, any case, with or without what follows: tells "another scheme" from "a malformed Bearer". */
const BEARER_SCHEME = /^bearer(?:[ \t]|$)/i;
/** An HTTP field name (RFC 9110 token), as a headers_to_remove entry must be. */
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9a-z]+$/;

type Credential =
  | { kind: "none" } // no Authorization header, or one of another scheme
  | { kind: "malformed"; why: string }
  | { kind: "bearer"; token: string };

export function envoyAuthorization(deps: EnvoyCheckDeps): ServiceImpl<typeof Authorization> {
  return {
    async check(req) {
      try {
        return await check(deps, req);
      } catch {
        // A bug here must not leave Envoy without an answer (it would then apply failure_mode_allow).
        return unavailable(Code.Internal, "internal error");
      }
    },
  };
}

async function check(deps: EnvoyCheckDeps, req: CheckRequest): Promise<CheckResponse> {
  const http = req.attributes?.request?.http;
  const credential = bearerCredential(http);
  if (credential.kind === "none") return unauthenticated("Bearer", "missing bearer token", "missing_token");
  if (credential.kind === "malformed") {
    return unauthenticated('Bearer error="invalid_token"', `malformed bearer credential: ${credential.why}`, "invalid_token");
  }
  let answer: Awaited<ReturnType<EnvoyCheckDeps["introspect"]>>;
  try {
    answer = await deps.introspect(credential.token, routeAudience(req));
  } catch (err) {
    if (toConnectError(err).code === Code.Unavailable) {
      return unavailable(Code.Unavailable, "token state unavailable");
    }
    return unavailable(Code.Internal, "internal error");
  }
  if (!answer.active) {
    return unauthenticated('Bearer error="invalid_token"', `token inactive (${safeReason(answer.reason)})`, "invalid_token");
  }
  return allowed(answer, http);
}

/** The route's audience (context extension `audience`), bounded like Introspect's audience field. */
function routeAudience(req: CheckRequest): string | undefined {
  const audience = req.attributes?.contextExtensions["audience"];
  return audience !== undefined && audience !== "" && audience.length <= 256 ? audience : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the credential

/**
 * The Authorization header of the checked request. Envoy sends headers either in `headers` (keys lower-cased, repeated
 * headers joined with ",") or, with the filter's `encode_raw_headers: true`, in `header_map` (one entry per header
 * line, the value in `raw_value`); `header_map` is read only when `headers` is empty. Names are matched
 * case-insensitively in both. More than one Authorization header is malformed, not "take the first".
 */
function bearerCredential(http: AttributeContext_HttpRequest | undefined): Credential {
  if (!http) return { kind: "none" };
  const values: string[] = [];
  const map = http.headers;
  const keys = Object.keys(map);
  if (keys.length > 0) {
    for (const key of keys) if (key.toLowerCase() === "authorization") values.push(map[key] ?? "");
  } else {
    for (const header of http.headerMap?.headers ?? []) {
      if (header.key.toLowerCase() === "authorization") {
        const value = rawHeaderValue(header);
        if (value === undefined) return { kind: "malformed", why: "too long" };
        values.push(value);
      }
    }
  }
  if (values.length === 0) return { kind: "none" };
  if (values.length > 1) return { kind: "malformed", why: "more than one authorization header" };
  const raw = values[0]!;
  if (raw.length > MAX_AUTHORIZATION_LENGTH) return { kind: "malformed", why: "too long" };
  const value = raw.replace(/^[ \t]+|[ \t]+$/g, "");
  const match = BEARER.exec(value);
  if (match) return { kind: "bearer", token: match[1]! };
  // RFC 6750 §3.1: credentials of another scheme get the bare challenge, like no credentials.
  return BEARER_SCHEME.test(value) ? { kind: "malformed", why: "not a single b64token" } : { kind: "none" };
}

/**
 * A header_map entry's value: `raw_value` (bytes, what Envoy sets) read as Latin-1 so that any byte outside ASCII
 * survives as a character the Bearer syntax then refuses, else `value`. Undefined when over the length bound.
 */
function rawHeaderValue(header: HeaderValue): string | undefined {
  if (header.rawValue.length > 0) {
    if (header.rawValue.length > MAX_AUTHORIZATION_LENGTH) return undefined;
    return Buffer.from(header.rawValue.buffer, header.rawValue.byteOffset, header.rawValue.byteLength).toString("latin1");
  }
  return header.value.length > MAX_AUTHORIZATION_LENGTH ? undefined : header.value;
}

/** The names of the checked request's headers (lower-cased, deduplicated), from whichever form Envoy used. */
function requestHeaderNames(http: AttributeContext_HttpRequest | undefined): Set<string> {
  const names = new Set<string>();
  if (!http) return names;
  const keys = Object.keys(http.headers);
  if (keys.length > 0) for (const key of keys) names.add(key.toLowerCase());
  else for (const header of http.headerMap?.headers ?? []) names.add(header.key.toLowerCase());
  return names;
}

// ---------------------------------------------------------------------------------------------------------------
// Answers

/**
 * Allowed: the request goes upstream with x-tessera-subject, x-tessera-scopes (space-separated) and
 * x-tessera-session-id set by the sidecar.
 *
 * Each is set with `append_action: OVERWRITE_IF_EXISTS_OR_ADD` and the deprecated `append: false` (Envoys older than
 * append_action read only `append`; for ext_authz both mean "replace"), so a value the client sent under one of these
 * names never reaches the upstream. A value that would be empty (e.g. a token with no scopes) is not set but listed in
 * `headers_to_remove`: an empty header may be dropped by Envoy instead of replacing the client's.
 *
 * Every other x-tessera-* header the client sent is also listed in `headers_to_remove`. Overwriting the three is
 * enough for what the sidecar vouches for today, but the prefix is the sidecar's namespace: an upstream (or a later
 * sidecar that adds a header) must be able to trust any x-tessera-* header it sees, so none may come from the client.
 * The names are taken from the checked request itself, so this costs nothing when there are none, and none of the
 * three names is both set and removed (Envoy's order between the two is then irrelevant).
 *
 * Values are made safe for HTTP by percent-encoding (see headerValue); one too long even so fails closed (503).
 */
function allowed(
  answer: { subject: string; scopes: readonly string[]; sessionId: string },
  http: AttributeContext_HttpRequest | undefined,
): CheckResponse {
  const forwarded: [string, string][] = [
    [SUBJECT_HEADER, headerValue(answer.subject)],
    [SCOPES_HEADER, answer.scopes.filter((s) => s !== "").map(headerValue).join(" ")],
    [SESSION_ID_HEADER, headerValue(answer.sessionId)],
  ];
  if (forwarded.some(([, value]) => value.length > MAX_FORWARDED_VALUE_LENGTH)) {
    return unavailable(Code.Internal, "token attributes too long to forward");
  }
  const ours = new Set(forwarded.map(([name]) => name));
  const headersToRemove: string[] = [];
  const headers: MessageInitShape<typeof HeaderValueOptionSchema>[] = [];
  for (const [name, value] of forwarded) {
    if (value === "") headersToRemove.push(name);
    else headers.push(setHeader(name, value, HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD));
  }
  for (const name of requestHeaderNames(http)) {
    if (name.startsWith(OUR_HEADER_PREFIX) && !ours.has(name) && FIELD_NAME.test(name)) headersToRemove.push(name);
  }
  return create(CheckResponseSchema, {
    status: { code: 0 }, // google.rpc.Code.OK
    httpResponse: { case: "okResponse", value: { headers, headersToRemove } },
  });
}

/** Denied, 401, with the given challenge; `error` is the JSON body's error code. */
function unauthenticated(challenge: string, message: string, error: "missing_token" | "invalid_token"): CheckResponse {
  return denied(Code.Unauthenticated, message, StatusCode.Unauthorized, { error }, [["www-authenticate", challenge]]);
}

/** Denied, 503: the sidecar cannot say whether the token is active (Unavailable), or something failed (Internal). */
function unavailable(code: Code.Unavailable | Code.Internal, message: string): CheckResponse {
  return denied(code, message, StatusCode.ServiceUnavailable, { error: "temporarily_unavailable" }, []);
}

function denied(
  code: Code,
  message: string,
  httpStatus: StatusCode,
  body: Record<string, string>,
  extraHeaders: [string, string][],
): CheckResponse {
  const headers = [["content-type", "application/json"] as [string, string], ...extraHeaders].map(([name, value]) =>
    setHeader(name, value, HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD),
  );
  return create(CheckResponseSchema, {
    status: { code, message },
    httpResponse: { case: "deniedResponse", value: { status: { code: httpStatus }, headers, body: JSON.stringify(body) } },
  });
}

function setHeader(
  key: string,
  value: string,
  appendAction: HeaderValueOption_HeaderAppendAction,
): MessageInitShape<typeof HeaderValueOptionSchema> {
  return { header: { key, value }, append: false, appendAction };
}

/**
 * A header value that is always 1*VCHAR (printable ASCII, no spaces): every UTF-8 byte outside 0x21–0x7E, and "%"
 * itself, is percent-encoded as %XX. Ordinary subjects and ids (letters, digits, "@", ".", "-", "_", ":", "|") pass
 * unchanged; an upstream recovers any value exactly with decodeURIComponent (which also undoes "%25"). Percent-encoding
 * is chosen over refusing such subjects because the token is valid and the upstream may need the exact value; spaces
 * are encoded too, so x-tessera-scopes stays an unambiguous space-separated list.
 */
export function headerValue(value: string): string {
  if (/^[\x21-\x24\x26-\x7e]*$/.test(value)) return value;
  let out = "";
  for (const byte of Buffer.from(value, "utf8")) {
    out += byte >= 0x21 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** The inactive reason for the status message (Envoy's logs only): a short word, never free text. */
function safeReason(reason: string): string {
  return /^[A-Za-z0-9_.-]{1,64}$/.test(reason) ? reason : "unspecified";
}
