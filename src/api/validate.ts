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

export function claims(field: string, value: JsonObject | undefined): Record<string, unknown> {
  if (value === undefined) return {};
  if (Buffer.byteLength(JSON.stringify(value)) > LIMITS.claimsBytes) {
    throw invalidArgument(field, `larger than ${LIMITS.claimsBytes} bytes as JSON`);
  }
  for (const name of Object.keys(value)) {
    if (name === "" || name.length > LIMITS.claimName || CONTROL.test(name)) {
      throw invalidArgument(field, `a claim name is empty, longer than ${LIMITS.claimName} characters or has control characters`);
    }
  }
  return value;
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
