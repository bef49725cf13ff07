/**
 * One environment variable as config.ts declares it (name, default, one-line doc, parser with its bounds), the
 * parsers, and the walk that reads a tree of declarations from the environment into a tree of values of the same
 * shape. A parser sees the trimmed value (the default when the variable is unset or blank) and says what is wrong
 * with it; the walk puts the variable's name in front, so every message names the exact variable.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { formatDuration, parseDuration } from "./duration.js";
import { ConfigError } from "./errors.js";

/**
 * Reads a value, or throws Invalid saying what is wrong with it (without the variable's name). A bounded parser says
 * its bounds in `range`: the table in docs/configuration.md shows `text`, and a test reads every variable at each
 * `accepted` value and at each `refused` one.
 */
export type Parser<T> = ((raw: string) => T) & { range?: Range; show?: Show };

/** How a value is shown in the start log's effective configuration (secrets hidden). */
export type Show = (value: string) => string;

export interface Range {
  text: string;
  accepted: string[];
  refused: string[];
}

function bounded<T>(parse: (raw: string) => T, range: Range): Parser<T> {
  return Object.assign(parse, { range });
}

/** What a parser throws; the walk turns it into a ConfigError naming the variable. */
export class Invalid extends Error {}

export interface Variable<T, N extends string = string> {
  readonly name: N;
  /** As an operator would write it. Undefined: the variable may stay unset, and its value is then undefined. */
  readonly default: string | undefined;
  /** docs/configuration.md's default column, after the default itself: `0` (off). */
  readonly note: string | undefined;
  /** One line of Markdown: docs/configuration.md's meaning column. */
  readonly doc: string;
  /** The parser's bounds, if it has any. */
  readonly range: Range | undefined;
  read(raw: string | undefined): T;
  /**
   * The value as the start log shows it (the effective configuration): what is set, or the default; null when unset
   * without a default. Secrets are hidden: a password inside a URL, an API key (by its parser, or by its name).
   */
  shown(raw: string | undefined): string | null;
}

/** Declarations: a variable, or a record of them (a consumer's group, or a part of one). */
export type Declarations = Variable<unknown> | { readonly [field: string]: Declarations };

/** The values a tree of declarations reads into: the same shape, each variable replaced by its value. */
export type Values<D> = D extends Variable<infer T> ? T : { readonly [K in keyof D]: Values<D[K]> };

/** Every variable name in a tree of declarations. */
export type NameOf<D> = D extends Variable<unknown, infer N> ? N : { [K in keyof D]: NameOf<D[K]> }[keyof D];

interface Spec<T, N extends string> {
  name: N;
  parse: Parser<T>;
  doc: string;
  note?: string;
  /** How the start log shows the value; default: the parser's `show`, else hidden for a secret's name, else as is. */
  show?: Show;
}

/** Names whose values are secrets whatever their parser: never in a log line. */
const SECRET_NAME = /(?:KEY|PASSWORD|SECRET|TOKEN)$/;
export const hidden: Show = () => "[redacted]";

/** A variable with a default. */
export function variable<T, N extends `TESSERA_${string}`>(spec: Spec<T, N> & { default: string }): Variable<T, N>;
/** A variable that may stay unset (its value is then undefined). */
export function variable<T, N extends `TESSERA_${string}`>(spec: Spec<T, N>): Variable<T | undefined, N>;
export function variable<T, N extends `TESSERA_${string}`>(spec: Spec<T, N> & { default?: string }): Variable<T | undefined, N> {
  const { name, parse, doc, note, default: fallback } = spec;
  if (/[|\n]/.test(doc)) throw new Error(`${name}: the doc must be one line without "|" (it is a Markdown table cell)`);
  // A secret's name wins over its parser (an API key is text; TESSERA_TLS_KEY is a path, shown: a path is no secret).
  const show = spec.show ?? parse.show ?? (SECRET_NAME.test(name) && parse !== path ? hidden : (v: string) => v);
  return {
    name,
    default: fallback,
    note,
    doc,
    range: parse.range,
    shown(raw) {
      const value = raw?.trim() || fallback;
      return value === undefined ? null : show(value);
    },
    read(raw) {
      const value = raw?.trim() || fallback;
      if (value === undefined) return undefined;
      try {
        return parse(value);
      } catch (err) {
        if (err instanceof Invalid) throw new ConfigError(name, err.message);
        throw err;
      }
    },
  };
}

/** The variables of a tree of declarations, in declaration order. */
export function variablesOf(d: Declarations): Variable<unknown>[] {
  return isVariable(d) ? [d] : Object.values(d).flatMap(variablesOf);
}

/** Reads every variable of the tree from env, in declaration order; the first bad value throws its ConfigError. */
export function readAll<D extends Declarations>(d: D, env: Record<string, string | undefined>): Values<D> {
  if (isVariable(d)) return d.read(env[d.name]) as Values<D>;
  return Object.fromEntries(Object.entries(d).map(([field, node]) => [field, readAll(node, env)])) as Values<D>;
}

function isVariable(d: Declarations): d is Variable<unknown> {
  return typeof (d as Variable<unknown>).read === "function";
}

// --- parsers -------------------------------------------------------------------------------------------------------

/** A duration (`250ms`, `15m`, `1h30m`, `7d`) of at least `min` (itself a duration), in milliseconds. */
export function duration(min: string): Parser<number> {
  const minMs = parseDuration(min)!;
  const parse = (raw: string) => {
    const ms = parseDuration(raw);
    if (ms === undefined) throw new Invalid(`"${raw}" is not a duration (examples: 15m, 7d, 1h30m, 500ms)`);
    if (ms < minMs) throw new Invalid(`must be at least ${formatDuration(minMs)}`);
    return ms;
  };
  return bounded(parse, { text: `at least \`${min}\``, accepted: [min], refused: minMs > 0 ? [`${minMs - 1}ms`] : ["-1s"] });
}

/** A duration of whole seconds, at least 1s, in milliseconds (rate-limiter-flexible's Redis backend counts seconds). */
export function seconds(): Parser<number> {
  const atLeast1s = duration("1s");
  const parse = (raw: string) => {
    const ms = atLeast1s(raw);
    if (ms % 1000 !== 0) throw new Invalid(`"${raw}" is not a whole number of seconds`);
    return ms;
  };
  return bounded(parse, { text: "whole seconds, at least `1s`", accepted: ["1s"], refused: ["999ms", "1500ms"] });
}

/** A whole number from min to max. */
export function integer(min: number, max: number): Parser<number> {
  const parse = (raw: string) => {
    const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new Invalid(`"${raw}" is not a whole number from ${min} to ${max}`);
    return n;
  };
  const text = `${min} to ${max.toLocaleString("en").replace(/,/g, " ")}`;
  return bounded(parse, { text, accepted: [String(min), String(max)], refused: [String(min - 1), String(max + 1)] });
}

/** Exactly `true` or `false`: nothing that merely looks like one (a switch that weakens security must be said). */
export const boolean: Parser<boolean> = (raw) => {
  if (raw === "true" || raw === "false") return raw === "true";
  throw new Invalid(`"${raw}" is not true or false`);
};

/** One of the given words. */
export function oneOf<const W extends string>(words: readonly W[]): Parser<W> {
  return (raw) => {
    if (!(words as readonly string[]).includes(raw)) throw new Invalid(`"${raw}" is not one of ${words.join(", ")}`);
    return raw as W;
  };
}

/** Any text (of at most maxLength characters). */
export function text(maxLength = Infinity): Parser<string> {
  return (raw) => {
    if (raw.length > maxLength) throw new Invalid(`is longer than ${maxLength} characters`);
    return raw;
  };
}

/**
 * Bytes given in base64 (or base64url), from `min` to `max` of them: a key or a secret. Its messages never repeat the
 * value, and the start log hides it (the variables that use it are named like secrets, or say `show: hidden`).
 */
export function base64Bytes(min: number, max = min): Parser<Buffer> {
  const size = min === max ? `${min} bytes` : `at least ${min} bytes`;
  const parse = (raw: string) => {
    const bytes = decodeBase64(raw);
    if (bytes === undefined) throw new Invalid(`is not base64 (${size}, such as the output of \`openssl rand -base64 ${min}\`)`);
    if (bytes.length < min || bytes.length > max) throw new Invalid(`must be ${size} in base64, not ${bytes.length} (\`openssl rand -base64 ${min}\`)`);
    return bytes;
  };
  const example = (n: number) => Buffer.alloc(n, 7).toString("base64");
  return Object.assign(bounded(parse, { text: `base64 of ${size}`, accepted: [example(min)], refused: [example(min - 1), "not base64!"] }), { show: hidden });
}

/**
 * The path of a file holding bytes in base64 (a key or a secret from a secret manager, `min` to `max` of them;
 * whitespace around it ignored), read at start. The start log shows the path; no message quotes the file.
 */
export function base64BytesFile(min: number, max = min): Parser<Buffer> {
  const size = min === max ? `${min} bytes` : `at least ${min} bytes`;
  return Object.assign(
    (raw: string) => {
      let text: string;
      try {
        text = readFileSync(raw, "utf8");
      } catch (err) {
        throw new Invalid(`cannot read "${raw}" (${(err as NodeJS.ErrnoException).code ?? "error"})`);
      }
      const bytes = decodeBase64(text);
      if (bytes === undefined || bytes.length < min || bytes.length > max) {
        throw new Invalid(`"${raw}" is not ${size} in base64 (\`openssl rand -base64 ${min}\`)`);
      }
      return bytes;
    },
    { show: (path: string) => path },
  );
}

/** The value of `name` or of `name`_FILE (each parsed already), whichever is set; both is an error naming the file's. */
export function valueOrFile<T>(name: string, value: T | undefined, file: T | undefined): T | undefined {
  if (value !== undefined && file !== undefined) throw new ConfigError(`${name}_FILE`, `set ${name} or ${name}_FILE, not both`);
  return value ?? file;
}

/** base64 or base64url (padding optional), or undefined if it is neither. */
export function decodeBase64(text: string): Buffer | undefined {
  const t = text.trim();
  if (!/^(?:[A-Za-z0-9+/]+|[A-Za-z0-9_-]+)={0,2}$/.test(t) || t.replace(/=+$/, "").length % 4 === 1) return undefined;
  return Buffer.from(t, t.includes("-") || t.includes("_") ? "base64url" : "base64");
}

/** A file's path, checked when the file is read. */
export const path: Parser<string> = (raw) => raw;

/** A comma-separated list of at least one non-empty item (`what` names the items in the error). */
export function list(what: string): Parser<string[]>;
/** ... each item parsed by `item`. */
export function list<T>(what: string, item: Parser<T>): Parser<T[]>;
export function list<T>(what: string, item?: Parser<T>): Parser<(T | string)[]> {
  return (raw) => {
    const items = raw
      .split(",")
      .map((a) => a.trim())
      .filter((a) => a !== "");
    if (items.length === 0) throw new Invalid(`needs at least one ${what}`);
    return item ? items.map((i) => item(i)) : items;
  };
}

/** A redis:// or rediss:// URL; the start log shows it without its password. */
export const redisUrl: Parser<string> = Object.assign(
  (raw: string) => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new Invalid("is not a URL (example: redis://127.0.0.1:6379/0)");
    }
    if (url.protocol !== "redis:" && url.protocol !== "rediss:") throw new Invalid("must start with redis:// or rediss://");
    return raw;
  },
  { show: withoutPassword },
);

/** A URL with its password (and, when there is no password, a lone user part, which Redis takes as one) replaced. */
export function withoutPassword(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "[redacted]"; // not a URL: nothing tells where a password would be
  }
  if (url.password !== "") url.password = "***";
  else if (url.username !== "") url.username = "***";
  return url.href;
}

export interface HostPort {
  host: string;
  port: number;
}

/** `host:port`, or `[ipv6]:port`. */
export const hostPort: Parser<HostPort> = (raw) => {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(raw);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || host === undefined || !Number.isInteger(port) || port > 65535) {
    throw new Invalid(`"${raw}" is not host:port (examples: 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080)`);
  }
  if (m[1] !== undefined && isIP(host) !== 6) throw new Invalid(`"${host}" is not an IPv6 address`);
  return { host, port };
};

/** Whether the listen address only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** At most `points` calls per fixed window of `windowMs` (whole seconds). */
export interface RateLimit {
  points: number;
  windowMs: number;
}

const windowSeconds = seconds();

/** `calls/window` (`100/1s`, `1000/1m`; the window in whole seconds), or `0`: no limit (undefined). */
export const rate: Parser<RateLimit | undefined> = (raw) => {
  if (raw === "0") return undefined;
  const m = /^(\d{1,9})\/(\S+)$/.exec(raw);
  const points = Number(m?.[1]);
  if (!m || points < 1 || parseDuration(m[2]!) === undefined) {
    throw new Invalid(`"${raw}" is not calls/window (examples: 100/1s, 1000/1m) or 0 (no limit)`);
  }
  try {
    return { points, windowMs: windowSeconds(m[2]!) };
  } catch {
    throw new Invalid("the window must be a whole number of seconds");
  }
};

// --- at start: what is set but unknown, and what is in effect -----------------------------------------------------

/** A TESSERA_* variable of the environment that the program does not read. */
export interface Unknown {
  name: string;
  /** The program's own variable closest to it by edit distance (Damerau-Levenshtein, adjacent swaps count one). */
  closest: string;
  distance: number;
  /** Set when another program reads it (the sidecar's variable given to the authority, or the other way round). */
  knownTo: string | undefined;
}

/**
 * Every TESSERA_* variable in env that `own` does not declare, in name order, each with the closest declared name;
 * `others` names the other programs' declarations, so a variable meant for one of them can be said to be so.
 */
export function unknownVariables(
  own: Declarations,
  env: Record<string, string | undefined>,
  others: Record<string, Declarations> = {},
): Unknown[] {
  const names = variablesOf(own).map((v) => v.name);
  const known = new Set(names);
  return Object.keys(env)
    .filter((name) => name.startsWith("TESSERA_") && env[name] !== undefined && !known.has(name))
    .sort()
    .map((name) => {
      let closest = names[0] ?? "";
      let distance = Infinity;
      for (const candidate of names) {
        const d = editDistance(name, candidate);
        if (d < distance) [closest, distance] = [candidate, d];
      }
      const knownTo = Object.entries(others).find(([, d]) => variablesOf(d).some((v) => v.name === name))?.[0];
      return { name, closest, distance, knownTo };
    });
}

/** Damerau-Levenshtein distance (optimal string alignment): insertions, deletions, substitutions, adjacent swaps. */
export function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array<number>(b.length + 1).fill(0).map((_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

/**
 * The effective configuration, by variable name in declaration order: the value set (trimmed) or the default, null
 * when unset without one; secrets hidden (Variable.shown). Paths are shown, never the files' contents.
 */
export function effectiveValues(d: Declarations, env: Record<string, string | undefined>): Record<string, string | null> {
  return Object.fromEntries(variablesOf(d).map((v) => [v.name, v.shown(env[v.name])]));
}
