/**
 * The `tessera` command line: parses the arguments (node:util parseArgs), runs one command, and says how it went in
 * the exit code:
 *
 * - 0: done (Introspect: the token is active; health: SERVING);
 * - 1: refused or inactive: an inactive token, NOT_SERVING, or the server said no (PERMISSION_DENIED,
 *   UNAUTHENTICATED, INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, ...);
 * - 2: a bad command line (unknown command or option, missing argument, bad value): message and hint on stderr;
 * - 3: Tessera could not be reached or did not answer (UNAVAILABLE, connection refused, TLS failure, DEADLINE_EXCEEDED);
 * - 130: interrupted (SIGINT, SIGTERM) before the answer; `audit tail --follow` ends with 0 when interrupted.
 *
 * Global options go anywhere on the line. Nothing here touches `process`: src/cli/main.ts gives it its streams.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { packageVersion } from "../observability/startup.js";
import { AUDIT_COMMANDS } from "./audit.js";
import { Context, DEFAULT_URL, UsageError, type Command, type Io, type OptionSpec, type Values } from "./context.js";
import { wrap } from "./format.js";
import { KEY_COMMANDS } from "./keys.js";
import { MISC_COMMANDS } from "./misc.js";
import { SESSION_COMMANDS } from "./sessions.js";
import { TOKEN_COMMANDS } from "./tokens.js";

export type { Io } from "./context.js";

export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3, interrupted: 130 } as const;

export const COMMANDS: readonly Command[] = [...TOKEN_COMMANDS, ...SESSION_COMMANDS, ...KEY_COMMANDS, ...AUDIT_COMMANDS, ...MISC_COMMANDS];

const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  url: { type: "string", value: "URL", doc: `Tessera's address (default: $TESSERA_URL, else ${DEFAULT_URL})` },
  "api-key-file": { type: "string", value: "FILE", doc: "read the API key from FILE (default: $TESSERA_API_KEY)" },
  "api-key": {
    type: "string",
    value: "KEY",
    doc: "the API key itself: discouraged, it stays in the shell history and shows in the process list (use $TESSERA_API_KEY or --api-key-file)",
  },
  ca: { type: "string", value: "FILE", doc: "CA certificates (PEM) to trust for an https:// URL (default: $TESSERA_CA, else the system's)" },
  cert: { type: "string", value: "FILE", doc: "client certificate (PEM) for mutual TLS (default: $TESSERA_CLIENT_CERT)" },
  key: { type: "string", value: "FILE", doc: "its private key (PEM) (default: $TESSERA_CLIENT_KEY)" },
  protocol: { type: "string", value: "grpc|connect", doc: "the wire protocol (default: grpc)" },
  timeout: { type: "string", value: "DURATION", doc: "deadline of each call (default: 5s)" },
  json: { type: "boolean", doc: "print JSON, one document per result (the response's protobuf JSON, every field present)" },
  help: { type: "boolean", short: "h", doc: "this help" },
  version: { type: "boolean", doc: "the version" },
};

/** Runs one command line (without the `node` and script words) and returns the exit code. */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  let ctx: Context | undefined;
  try {
    const parsed = parse(argv);
    if (parsed.help) {
      io.out(parsed.command ? commandHelp(parsed.command) : parsed.group ? groupHelp(parsed.group) : mainHelp());
      return EXIT.ok;
    }
    if (parsed.version) {
      io.out(`tessera ${packageVersion()}\n`);
      return EXIT.ok;
    }
    const command = parsed.command!;
    ctx = new Context(command, parsed.args, parsed.values, io);
    return await command.run(ctx);
  } catch (err) {
    return report(err, io, ctx);
  } finally {
    ctx?.close();
  }
}

interface Parsed {
  command: Command | undefined;
  /** `tessera keys --help`: the group whose commands to list. */
  group: string | undefined;
  args: string[];
  values: Values;
  help: boolean;
  version: boolean;
}

/** Every option of every command, and the global ones: one parse, then a check that the command takes what was given. */
function allOptions(): ParseArgsConfig["options"] {
  const all: Record<string, { type: "string" | "boolean"; multiple?: boolean; short?: string }> = {};
  for (const [name, o] of [...Object.entries(GLOBAL_OPTIONS), ...COMMANDS.flatMap((c) => Object.entries(c.options ?? {}))]) {
    const prev = all[name];
    all[name] = { type: o.type, ...(o.multiple || prev?.multiple ? { multiple: true } : {}), ...(o.short ? { short: o.short } : {}) };
  }
  return all;
}

/**
 * Session ids, kids and subjects may start with "-" (base64url). parseArgs would take such a value for an option
 * (`--session -Abc...`: "ambiguous") and such an argument for short options (`sessions get -Abc...`). So before it
 * parses: a value-taking option followed by anything but a known option gets it as `--name=value`, and a word that
 * starts with one "-" but is no known short option, or with "--" but is not shaped like an option (a base64url id such
 * as the kid `--rR-Oo88...`), is an argument (kept aside under a placeholder, order unchanged); an unknown word shaped
 * like an option (`--verbose`) is still a usage error. `--` still ends the options.
 */
const OPTION_SHAPED = /^--[a-z][a-z0-9-]*(?:=|$)/;
function prepare(argv: readonly string[], options: NonNullable<ParseArgsConfig["options"]>): { args: string[]; aside: Map<string, string> } {
  const shorts = new Map(Object.entries(options).flatMap(([name, o]) => (o.short ? [[o.short, name] as const] : [])));
  const known = (a: string) =>
    a.startsWith("--") ? a === "--" || a.slice(2).split("=")[0]! in options : a.length > 1 && [...a.slice(1)].every((c) => shorts.has(c));
  const args: string[] = [];
  const aside = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      args.push(...argv.slice(i));
      break;
    }
    const name = a.startsWith("--") ? a.slice(2) : a.length === 2 && a.startsWith("-") ? shorts.get(a[1]!) : undefined;
    const next = argv[i + 1];
    if (name !== undefined && options[name]?.type === "string" && next !== undefined && next.startsWith("-") && next !== "-" && !known(next)) {
      args.push(`--${name}=${next}`);
      i++;
    } else if (a.startsWith("-") && a !== "-" && !known(a) && (!a.startsWith("--") || !OPTION_SHAPED.test(a))) {
      const placeholder = `\u0000${aside.size}`;
      aside.set(placeholder, a);
      args.push(placeholder);
    } else {
      args.push(a);
    }
  }
  return { args, aside };
}

function parse(argv: readonly string[]): Parsed {
  let result;
  const options = allOptions()!;
  const { args: prepared, aside } = prepare(argv, options);
  try {
    const config: ParseArgsConfig = { args: prepared, options, allowPositionals: true, strict: true, tokens: true };
    result = parseArgs(config);
  } catch (err) {
    const e = err as { code?: string; message: string };
    if (typeof e.code === "string" && e.code.startsWith("ERR_PARSE_ARGS")) {
      throw new UsageError(e.message.split("\n")[0]!, commandOf(argv.filter((a) => !a.startsWith("-")))?.command.name ?? "");
    }
    throw err;
  }
  const { values, tokens } = result;
  const positionals = result.positionals.map((p) => aside.get(p) ?? p);
  const help = values.help === true;
  const version = values.version === true;
  const found = commandOf(positionals);
  if (found === undefined) {
    if (help || (version && positionals.length === 0)) return { command: undefined, group: groupOf(positionals), args: [], values, help, version };
    if (positionals.length === 0) throw new UsageError("no command given");
    const group = groupOf(positionals);
    if (group !== undefined) {
      const sub = positionals[1];
      const commands = COMMANDS.filter((c) => c.name.startsWith(`${group} `)).map((c) => `"${c.name}"`).join(", ");
      throw new UsageError(`${sub === undefined ? `"${group}" needs a command` : `"${group} ${sub}" is not a command`}: ${commands}`, group);
    }
    throw new UsageError(`"${positionals[0]}" is not a command`);
  }
  const { command, args } = found;
  if (help) return { command, group: undefined, args, values, help, version: false };
  const allowed = new Set([...Object.keys(GLOBAL_OPTIONS), ...Object.keys(command.options ?? {})]);
  for (const t of tokens ?? []) {
    if (t.kind === "option" && !allowed.has(t.name)) throw new UsageError(`${t.rawName} is not an option of "tessera ${command.name}"`, command.name);
  }
  for (const [name, spec] of Object.entries(command.options ?? {})) {
    const v = values[name];
    if (!spec.multiple && Array.isArray(v) && v.length > 1) throw new UsageError(`--${name} may be given once`, command.name);
  }
  for (const [name, spec] of Object.entries(GLOBAL_OPTIONS)) {
    if (spec.type === "string" && values[name] === "") throw new UsageError(`--${name} needs a value`, command.name);
  }
  const [min, max] = command.arity;
  if (args.length < min) throw new UsageError(`needs ${command.args}`, command.name);
  if (args.length > max) throw new UsageError(`takes ${max === 0 ? "no arguments" : `at most ${command.args}`}, not "${args[max]}"`, command.name);
  return { command, group: undefined, args, values, help, version };
}

/** The command named by the first positionals (one word, or a group and a word), and the arguments after it. */
function commandOf(positionals: readonly string[]): { command: Command; args: string[] } | undefined {
  for (const words of [2, 1]) {
    const name = positionals.slice(0, words).join(" ");
    const command = COMMANDS.find((c) => c.name === name);
    if (command && positionals.length >= words) return { command, args: positionals.slice(words) };
  }
  return undefined;
}

function groupOf(positionals: readonly string[]): string | undefined {
  const first = positionals[0];
  return first !== undefined && COMMANDS.some((c) => c.name.startsWith(`${first} `)) ? first : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Help

const HELP_WIDTH = 110;

function optionLines(options: Record<string, OptionSpec>): string {
  const left = (name: string, o: OptionSpec) => `${o.short ? `-${o.short}, ` : ""}--${name}${o.value ? ` ${o.value}` : ""}`;
  const rows = Object.entries(options).map(([name, o]) => [left(name, o), o.doc] as const);
  const width = Math.max(...rows.map(([l]) => l.length));
  return rows.map(([l, doc]) => `  ${l.padEnd(width)}  ${wrap(doc, HELP_WIDTH - width - 4, width + 4)}\n`).join("");
}

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => `${c.name} ${c.args}`.trim().length));
  return (
    "tessera: call a Tessera token authority from the shell\n\n" +
    "usage: tessera COMMAND [ARGS] [OPTIONS]\n\n" +
    "commands:\n" +
    COMMANDS.map((c) => `  ${`${c.name} ${c.args}`.trim().padEnd(width)}  ${c.summary}\n`).join("") +
    "\noptions (every command):\n" +
    optionLines(GLOBAL_OPTIONS) +
    "\nexit codes: 0 ok; 1 refused (PERMISSION_DENIED, UNAUTHENTICATED, INVALID_ARGUMENT, NOT_FOUND, ...) or inactive;\n" +
    "2 bad command line; 3 unreachable (UNAVAILABLE, connection refused, DEADLINE_EXCEEDED).\n" +
    "A TOKEN argument given as \"-\" (or left out, with stdin not a terminal) is read from stdin.\n" +
    "API keys and tokens are never printed, except the tokens issue and refresh hand out.\n" +
    "\n`tessera COMMAND --help` for a command's options.\n"
  );
}

function groupHelp(group: string): string {
  const commands = COMMANDS.filter((c) => c.name.startsWith(`${group} `));
  const width = Math.max(...commands.map((c) => `${c.name} ${c.args}`.trim().length));
  return `commands:\n${commands.map((c) => `  tessera ${`${c.name} ${c.args}`.trim().padEnd(width)}  ${c.summary}\n`).join("")}`;
}

function commandHelp(c: Command): string {
  return (
    `usage: tessera ${`${c.name} ${c.args}`.trim()}${c.options ? " [OPTIONS]" : ""}\n\n${c.summary}\n` +
    (c.options ? `\noptions:\n${optionLines(c.options)}` : "") +
    (c.more ? `\n${c.more.split("\n").map((l) => wrap(l, HELP_WIDTH)).join("\n")}\n` : "") +
    "\nglobal options: --url, --api-key-file, --ca, --cert, --key, --protocol, --timeout, --json (tessera --help)\n"
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** CONNECT's Code enum name as gRPC writes it: PermissionDenied -> PERMISSION_DENIED. */
export function codeName(code: Code): string {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** Node's errors that say the server was not reached (the connection, DNS or TLS failed). */
const NETWORK = /^(ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EPIPE|ERR_HTTP2_.*|ERR_SSL_.*|ERR_TLS_.*|CERT_.*|UNABLE_TO_.*|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)$/;

function networkCause(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && NETWORK.test(code)) return code;
  }
  return undefined;
}

function report(err: unknown, io: Io, ctx: Context | undefined): number {
  if (err instanceof UsageError) {
    const where = err.command === "" ? "tessera" : `tessera ${err.command}`;
    io.err(`${where}: ${err.message}\n`);
    io.err(`hint: run "${where} --help"${err.command === "" ? "" : ', or "tessera --help" for every command'}\n`);
    return EXIT.usage;
  }
  if (io.signal.aborted) {
    io.err("tessera: interrupted\n");
    return EXIT.interrupted;
  }
  const name = ctx ? `tessera ${ctx.command.name}` : "tessera";
  const e = ConnectError.from(err);
  const cause = networkCause(err);
  if (e.code === Code.Unavailable || e.code === Code.DeadlineExceeded || cause !== undefined) {
    const what = e.code === Code.DeadlineExceeded ? "no answer in time" : "cannot reach Tessera (or Tessera cannot reach its store)";
    io.err(`${name}: ${what} at ${ctx?.url ?? "?"}: ${codeName(e.code)}: ${e.rawMessage}${cause && !e.rawMessage.includes(cause) ? ` (${cause})` : ""}\n`);
    return EXIT.unreachable;
  }
  io.err(`${name}: ${codeName(e.code)}: ${e.rawMessage}\n`);
  for (const bad of e.findDetails(BadRequestSchema)) {
    for (const v of bad.fieldViolations) {
      if (!e.rawMessage.includes(v.description)) io.err(`  ${v.field}: ${v.description}\n`);
    }
  }
  for (const retry of e.findDetails(RetryInfoSchema)) {
    if (retry.retryDelay) io.err(`  retry in ${Number(retry.retryDelay.seconds) + retry.retryDelay.nanos / 1e9}s\n`);
  }
  if (e.code === Code.Unauthenticated && ctx && !ctx.hasApiKey()) io.err("hint: no API key given: set TESSERA_API_KEY or use --api-key-file\n");
  return EXIT.refused;
}
