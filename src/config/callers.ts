/**
 * The callers file (TESSERA_CALLERS_FILE): who may call Tessera and which RPCs each caller may use. Read and validated
 * once, at start; every error names the exact place inside the file, e.g.
 * `TESSERA_CALLERS_FILE: callers[2].permissions[0]: "isue" is not a permission`.
 *
 * ```json
 * { "callers": [
 *   { "name": "billing", "api_keys": [{ "sha256": "<64 hex>" }], "permissions": ["introspect"] },
 *   { "name": "gateway", "mtls": { "uri": "spiffe://prod/gateway" }, "permissions": ["issue", "refresh"] },
 *   { "name": "ops", "mtls": { "cn": "ops-console" }, "permissions": ["keys.read", "keys.rotate"] },
 *   { "name": "tenant-b", "api_keys": [{ "sha256": "<64 hex>" }], "permissions": ["revoke", "sessions.read"],
 *     "subjects": ["tenant-b:*", "ops@tenant-b"] }
 * ] }
 * ```
 *
 * API keys are configured only as the SHA-256 of the key (`scripts/hash-api-key.mjs` prints it). `subjects` (optional)
 * limits the subjects a caller may act on: exact subjects, or prefixes ending in `*`; absent (or `"*"`): every subject.
 * It is compiled here, once, into a SubjectScope the API layer asks (src/api/auth.ts requireSubject).
 */
import { readFileSync } from "node:fs";
import { PERMISSIONS, type Permission } from "../domain/permissions.js";
import { ConfigError } from "./errors.js";
import { isLoopback } from "./variable.js";

const KEY = "TESSERA_CALLERS_FILE";

/**
 * A client certificate identity: the certificate's URI SAN (e.g. a SPIFFE ID) when it has one, else its subject CN.
 * A caller configured with `cn` therefore only matches certificates without a URI SAN.
 */
export interface MtlsIdentity {
  kind: "uri" | "cn";
  value: string;
}

export interface CallerSpec {
  name: string;
  permissions: readonly Permission[];
  /** SHA-256 digests (32 bytes each) of the caller's API keys. */
  apiKeySha256: readonly Buffer[];
  mtls: MtlsIdentity | undefined;
  /** The subjects the caller may act on (`subjects` in the file), compiled; undefined: every subject. */
  subjects?: SubjectScope | undefined;
}

/**
 * A caller's subjects, compiled: exact subjects in a set, prefixes (patterns ending in `*`) in a short list. Built once
 * at load; callers without `subjects` have none, so the hot path of an unscoped caller asks nothing.
 */
export interface SubjectScope {
  /** The patterns as the file gives them. */
  readonly patterns: readonly string[];
  /** Whether the caller may act on `subject`: it equals an exact pattern, or starts with a prefix pattern's prefix. */
  allows(subject: string): boolean;
}

/** Bounds of a caller's `subjects`: how many patterns, and how long each may be before its `*` (as a subject). */
export const SUBJECT_PATTERNS = { maxCount: 256, maxLength: 256 } as const;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const URI = /^[A-Za-z][A-Za-z0-9+.-]*:\S+$/;
/** What a subject may not hold (src/api/validate.ts CONTROL): control characters, separators, bidi, lone surrogates. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\p{Cs}/u;
/** The name open mode gives every call; a configured caller may not take it. */
export const ANONYMOUS = "anonymous";

/** Reads and validates the callers file at `path`. */
export function loadCallersFile(path: string): readonly CallerSpec[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(KEY, `cannot read "${path}" (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(KEY, `"${path}" is not JSON (${(err as Error).message})`);
  }
  return parseCallers(json);
}

/** Validates a parsed callers file. Throws a ConfigError naming the path of the first problem. */
export function parseCallers(json: unknown): readonly CallerSpec[] {
  const root = object(json, "(root)", ["callers"]);
  const list = root.callers;
  if (!Array.isArray(list)) fail("callers", "must be an array");
  if (list.length === 0) fail("callers", "needs at least one caller");

  const names = new Map<string, string>();
  const hashes = new Map<string, string>();
  const identities = new Map<string, string>();
  const callers = list.map((raw, i): CallerSpec => {
    const at = `callers[${i}]`;
    const c = object(raw, at, ["name", "api_keys", "mtls", "permissions", "subjects"]);

    if (typeof c.name !== "string" || !NAME.test(c.name)) {
      fail(`${at}.name`, "must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit");
    }
    if (c.name === ANONYMOUS) fail(`${at}.name`, `"${ANONYMOUS}" is reserved for open mode`);
    unique(names, c.name, `${at}.name`, `"${c.name}"`);

    const apiKeySha256: Buffer[] = [];
    if (c.api_keys !== undefined) {
      if (!Array.isArray(c.api_keys)) fail(`${at}.api_keys`, "must be an array");
      c.api_keys.forEach((k: unknown, j) => {
        const kat = `${at}.api_keys[${j}]`;
        const sha256 = object(k, kat, ["sha256"]).sha256;
        if (typeof sha256 !== "string" || !SHA256_HEX.test(sha256)) {
          fail(`${kat}.sha256`, "must be the SHA-256 of the key as 64 hex digits (see scripts/hash-api-key.mjs)");
        }
        unique(hashes, sha256.toLowerCase(), `${kat}.sha256`, "this hash");
        apiKeySha256.push(Buffer.from(sha256, "hex"));
      });
    }

    let mtls: MtlsIdentity | undefined;
    if (c.mtls !== undefined) {
      const m = object(c.mtls, `${at}.mtls`, ["uri", "cn"]);
      const given = (["uri", "cn"] as const).filter((kind) => m[kind] !== undefined);
      const kind = given[0];
      if (given.length !== 1 || kind === undefined) fail(`${at}.mtls`, `needs exactly one of "uri" or "cn"`);
      const value = m[kind];
      if (typeof value !== "string" || value.trim() !== value || value === "" || value.length > 1024) {
        fail(`${at}.mtls.${kind}`, "must be a non-empty string without surrounding spaces, at most 1024 characters");
      }
      if (kind === "uri" && !URI.test(value)) fail(`${at}.mtls.uri`, `"${value}" is not a URI (example: spiffe://prod/gateway)`);
      mtls = { kind, value };
      unique(identities, `${kind}:${value}`, `${at}.mtls.${kind}`, `"${value}"`);
    }
    if (apiKeySha256.length === 0 && mtls === undefined) fail(at, `needs an identity: "api_keys" or "mtls"`);

    if (!Array.isArray(c.permissions)) fail(`${at}.permissions`, `must be an array of permissions (${PERMISSIONS.join(", ")})`);
    const permissions = c.permissions.map((p: unknown, j): Permission => {
      if (!(PERMISSIONS as readonly unknown[]).includes(p)) {
        fail(`${at}.permissions[${j}]`, `${JSON.stringify(p)} is not a permission (one of ${PERMISSIONS.join(", ")})`);
      }
      return p as Permission;
    });
    permissions.forEach((p, j) => {
      if (permissions.indexOf(p) !== j) fail(`${at}.permissions[${j}]`, `"${p}" is listed twice`);
    });

    const subjects = c.subjects === undefined ? undefined : subjectScope(c.subjects, `${at}.subjects`);
    return Object.freeze({ name: c.name, permissions: Object.freeze(permissions), apiKeySha256, mtls, subjects });
  });
  return Object.freeze(callers);
}

/**
 * Validates and compiles a caller's `subjects` (`at` names it in errors): 1 to 256 patterns, none twice, each a
 * non-empty string without control characters, at most 256 characters (the longest subject) before an optional final
 * `*`; `*` nowhere else. A pattern ending in `*` matches every subject that starts with what precedes the `*`
 * (`tenant-b:*` matches `tenant-b:` and `tenant-b:alice`); any other matches that subject exactly (so a subject with a
 * `*` inside can only be matched by a prefix). `*` alone matches every subject: the scope is then undefined, as
 * without `subjects`.
 */
export function subjectScope(value: unknown, at: string): SubjectScope | undefined {
  const { maxCount, maxLength } = SUBJECT_PATTERNS;
  if (!Array.isArray(value)) fail(at, `must be an array of subject patterns (exact subjects, or prefixes ending in "*")`);
  if (value.length === 0) fail(at, `must list at least one pattern (leave "subjects" out for every subject)`);
  if (value.length > maxCount) fail(at, `has ${value.length} patterns, more than ${maxCount}`);
  const seen = new Map<string, string>();
  const patterns = value.map((p: unknown, j): string => {
    const pat = `${at}[${j}]`;
    if (typeof p !== "string" || p === "") fail(pat, "must be a non-empty string");
    if ((p.endsWith("*") ? p.length - 1 : p.length) > maxLength) {
      fail(pat, `is longer than ${maxLength} characters (the longest subject), not counting a final "*"`);
    }
    if (CONTROL.test(p)) fail(pat, "contains control characters or invalid Unicode");
    const star = p.indexOf("*");
    if (star !== -1 && star !== p.length - 1) {
      fail(pat, `${JSON.stringify(p)}: "*" may only end a pattern (a prefix such as "tenant-b:*"), or stand alone`);
    }
    unique(seen, p, pat, JSON.stringify(p));
    return p;
  });
  if (patterns.includes("*")) return undefined;
  const exact = new Set(patterns.filter((p) => !p.endsWith("*")));
  const prefixes = patterns.filter((p) => p.endsWith("*")).map((p) => p.slice(0, -1));
  const frozen = Object.freeze(patterns);
  const allows =
    prefixes.length === 0
      ? (subject: string) => exact.has(subject)
      : (subject: string) => exact.has(subject) || prefixes.some((prefix) => subject.startsWith(prefix));
  return Object.freeze({ patterns: frozen, allows });
}

export interface CallerAccess {
  /** Unset: open mode, every call is allowed as "anonymous". */
  callers: readonly CallerSpec[] | undefined;
  allowUnauthenticated: boolean;
}

/**
 * Who may call: the callers file, or open mode. Open mode without a callers file is allowed only on a loopback
 * address, unless TESSERA_ALLOW_UNAUTHENTICATED=true says so explicitly.
 */
export function loadAccess(opts: {
  /** TESSERA_CALLERS_FILE: the file's path, or undefined. */
  callers: string | undefined;
  /** TESSERA_ALLOW_UNAUTHENTICATED. */
  allowUnauthenticated: boolean;
  /** TESSERA_LISTEN: open mode needs a loopback address (or allowUnauthenticated). */
  listen: { host: string };
  /** Whether TESSERA_TLS_CLIENT_CA is set: mtls callers need it. */
  clientCa: boolean;
}): CallerAccess {
  const { callers: file, allowUnauthenticated } = opts;
  if (file === undefined) {
    if (!isLoopback(opts.listen.host) && !allowUnauthenticated) {
      throw new ConfigError(
        KEY,
        `is not set and TESSERA_LISTEN (${opts.listen.host}) is not a loopback address: configure callers, or set ` +
          "TESSERA_ALLOW_UNAUTHENTICATED=true to let every caller in unauthenticated",
      );
    }
    return { callers: undefined, allowUnauthenticated };
  }
  if (allowUnauthenticated) throw new ConfigError("TESSERA_ALLOW_UNAUTHENTICATED", `cannot be true when ${KEY} is set`);
  const callers = loadCallersFile(file);
  const i = callers.findIndex((c) => c.mtls !== undefined);
  if (i >= 0 && !opts.clientCa) {
    fail(`callers[${i}].mtls`, "needs TESSERA_TLS_CLIENT_CA (client certificates are only asked for with a client CA)");
  }
  return { callers, allowUnauthenticated };
}

function fail(path: string, message: string): never {
  throw new ConfigError(KEY, `${path}: ${message}`);
}

function object(value: unknown, path: string, allowed: readonly string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(path, "must be an object");
  for (const k of Object.keys(value)) {
    if (!allowed.includes(k)) fail(path === "(root)" ? k : `${path}.${k}`, `unknown property (allowed: ${allowed.join(", ")})`);
  }
  return value as Record<string, unknown>;
}

function unique(seen: Map<string, string>, value: string, path: string, what: string): void {
  const first = seen.get(value);
  if (first !== undefined) fail(path, `${what} is already used at ${first}`);
  seen.set(value, path);
}
