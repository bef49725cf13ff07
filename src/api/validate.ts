/**
 * Edge validation: every request field is bounded and checked here, before the domain sees it. A violation is
 * INVALID_ARGUMENT naming the field, with a google.rpc.BadRequest detail (src/api/errors.ts). Free text may not carry
 * control characters (C0, DEL, C1), line or paragraph separators, bidirectional overrides, or lone surrogates: they
 * would end up in tokens, logs and admin screens.
 */
import { isIP } from "node:net";
import type { JsonObject } from "@bufbuild/protobuf";
import type { Duration } from "@bufbuild/protobuf/wkt";
import type { ClientInfo } from "../domain/store.js";
import { invalidArgument } from "./errors.js";

export const LIMITS = {
  subject: 256,
  audienceItems: 16,
  audience: 256,
  scopeItems: 64,
  scope: 128,
  claimsBytes: 4096,
  claimName: 64,
  /** How deep objects and lists may nest inside one claim's value. */
  claimDepth: 8,
  deviceId: 128,
  userAgent: 512,
  platform: 32,
  sessionId: 64,
  reason: 256,
} as const;

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\p{Cs}/u;
/** RFC 6749 section 3.3 scope-token. */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const SESSION_ID = /^[A-Za-z0-9_-]+$/;

export function text(field: string, value: string, max: number, opts: { required?: boolean } = {}): string {
  if (value === "") {
    if (opts.required) throw invalidArgument(field, "must not be empty");
    return value;
  }
  if (value.length > max) throw invalidArgument(field, `longer than ${max} characters`);
  if (CONTROL.test(value)) throw invalidArgument(field, "contains control characters or invalid Unicode");
  return value;
}

export function subject(field: string, value: string): string {
  return text(field, value, LIMITS.subject, { required: true });
}

export function sessionId(field: string, value: string): string {
  text(field, value, LIMITS.sessionId, { required: true });
  if (!SESSION_ID.test(value)) throw invalidArgument(field, "is not a session id");
  return value;
}

export function token(field: string, value: string, maxLength: number): string {
  if (value === "") throw invalidArgument(field, "must not be empty");
  if (value.length > maxLength) throw invalidArgument(field, `longer than ${maxLength} characters`);
  return value;
}

export function audience(field: string, values: string[]): string[] {
  if (values.length > LIMITS.audienceItems) throw invalidArgument(field, `more than ${LIMITS.audienceItems} entries`);
  values.forEach((v, i) => text(`${field}[${i}]`, v, LIMITS.audience, { required: true }));
  return [...new Set(values)];
}

export function scopes(field: string, values: string[]): string[] {
  if (values.length > LIMITS.scopeItems) throw invalidArgument(field, `more than ${LIMITS.scopeItems} entries`);
  values.forEach((v, i) => {
    text(`${field}[${i}]`, v, LIMITS.scope, { required: true });
    if (!SCOPE_TOKEN.test(v)) throw invalidArgument(`${field}[${i}]`, "is not a valid scope token (RFC 6749 3.3)");
  });
  return [...new Set(values)];
}

/**
 * `extra_claims`: at most 4096 bytes as JSON; every object key, at any depth, 1 to 64 characters of free text; every
 * string free text; every number finite (a google.protobuf.Value carries NaN and Infinity on the wire, and JSON would
 * sign them as null); objects and lists nested at most LIMITS.claimDepth deep inside a claim. A violation names its
 * path: `extra_claims.a.b[2]`, `extra_claims["https://example.com/roles"][0]` (a key's own problem: its object's path).
 */
export function claims(field: string, value: JsonObject | undefined): Record<string, unknown> {
  if (value === undefined) return {};
  if (Buffer.byteLength(JSON.stringify(value)) > LIMITS.claimsBytes) {
    throw invalidArgument(field, `larger than ${LIMITS.claimsBytes} bytes as JSON`);
  }
  for (const name of Object.keys(value)) {
    if (!claimKey(name)) {
      throw invalidArgument(field, `a claim name is empty, longer than ${LIMITS.claimName} characters or has control characters`);
    }
  }
  for (const [name, v] of Object.entries(value)) claimValue(`${field}${member(name)}`, v, 0);
  return value;
}

function claimKey(name: string): boolean {
  return name !== "" && name.length <= LIMITS.claimName && !CONTROL.test(name);
}

/** Checks one value inside extra_claims; depth counts the objects and lists around it below its claim. */
function claimValue(path: string, v: unknown, depth: number): void {
  switch (typeof v) {
    case "string":
      if (CONTROL.test(v)) throw invalidArgument(path, "contains control characters or invalid Unicode");
      return;
    case "number":
      if (!Number.isFinite(v)) throw invalidArgument(path, "must be a finite number");
      return;
    case "boolean":
      return;
    case "object":
      if (v === null) return;
      if (depth >= LIMITS.claimDepth) throw invalidArgument(path, `nests objects or lists more than ${LIMITS.claimDepth} deep`);
      if (Array.isArray(v)) {
        v.forEach((item, i) => claimValue(`${path}[${i}]`, item, depth + 1));
        return;
      }
      for (const [key, item] of Object.entries(v)) {
        if (!claimKey(key)) {
          throw invalidArgument(path, `has a key that is empty, longer than ${LIMITS.claimName} characters or has control characters`);
        }
        claimValue(`${path}${member(key)}`, item, depth + 1);
      }
      return;
    default:
      throw invalidArgument(path, "is not a JSON value");
  }
}

/** A key as a step of a field path: `.name` for an identifier, `["..."]` (JSON-quoted) for anything else. */
function member(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

export function client(field: string, value: { deviceId: string; userAgent: string; ip: string; platform: string } | undefined): ClientInfo {
  const c = value ?? { deviceId: "", userAgent: "", ip: "", platform: "" };
  const ip = text(`${field}.ip`, c.ip, 45);
  if (ip !== "" && isIP(ip) === 0) throw invalidArgument(`${field}.ip`, "is not an IPv4 or IPv6 address");
  return {
    deviceId: text(`${field}.device_id`, c.deviceId, LIMITS.deviceId),
    userAgent: text(`${field}.user_agent`, c.userAgent, LIMITS.userAgent),
    ip,
    platform: text(`${field}.platform`, c.platform, LIMITS.platform),
  };
}

/** An optional protobuf Duration as milliseconds; undefined when unset. Must be positive and whole milliseconds. */
export function ttl(field: string, value: Duration | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = Number(value.seconds);
  if (seconds < 0 || value.nanos < 0) throw invalidArgument(field, "must be positive");
  if (value.nanos > 999_999_999) throw invalidArgument(field, "is not a valid Duration (nanos above 999999999)");
  if (value.nanos % 1_000_000 !== 0) throw invalidArgument(field, "must be whole milliseconds");
  const ms = seconds * 1000 + value.nanos / 1_000_000;
  if (!Number.isSafeInteger(ms) || ms <= 0) throw invalidArgument(field, "must be positive");
  return ms;
}
