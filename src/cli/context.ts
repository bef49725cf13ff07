/**
 * What every command of the command line gets: its arguments and options, where to write, stdin (tokens may come
 * from there, out of the shell history), and the connection to Tessera (src/client, made on first use).
 */
import { readFileSync } from "node:fs";
import { createTesseraClient, type TesseraClient } from "../client/client.js";
import { parseDuration } from "../config/duration.js";
import { readAll } from "./api-key.js";

/** The process around the command line: injected, so the commands never touch `process` themselves. */
export interface Io {
  env: Record<string, string | undefined>;
  stdin: AsyncIterable<Buffer | string> & { isTTY?: boolean | undefined };
  out(text: string): void;
  err(text: string): void;
  /** Aborted on SIGINT or SIGTERM. */
  signal: AbortSignal;
}

/** A bad command line: exit 2, the message on stderr with a hint. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose help the hint points to; "" for the top level. */
    readonly command = "",
  ) {
    super(message);
  }
}

export interface OptionSpec {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
  /** How the value is written in the help: `--since WHEN`. */
  value?: string;
  doc: string;
}

export interface Command {
  /** The words that name it: "issue", "sessions list". */
  name: string;
  /** Its arguments as the help writes them: "SUBJECT", "[TOKEN|-]". */
  args: string;
  /** One line for the command list. */
  summary: string;
  /** At least and at most this many arguments. */
  arity: [number, number];
  options?: Record<string, OptionSpec>;
  /** More help, after the options. */
  more?: string;
  run(ctx: Context): Promise<number>;
}

export type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

export class Context {
  private conn: TesseraClient | undefined;

  constructor(
    readonly command: Command,
    readonly args: readonly string[],
    private readonly values: Values,
    readonly io: Io,
  ) {}

  get json(): boolean {
    return this.values.json === true;
  }

  get signal(): AbortSignal {
    return this.io.signal;
  }

  out(text: string): void {
    this.io.out(text);
  }

  str(name: string): string | undefined {
    const v = this.values[name];
    if (Array.isArray(v)) {
      if (v.length > 1) throw new UsageError(`--${name} may be given once`, this.command.name);
      return v[0] === undefined ? undefined : String(v[0]);
    }
    return typeof v === "string" ? v : undefined;
  }

  bool(name: string): boolean {
    return this.values[name] === true;
  }

  list(name: string): string[] {
    const v = this.values[name];
    return v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String);
  }

  /** A duration option (`15m`, `1h30m`, `250ms`; a bare number counts seconds), in ms; undefined when not given. */
  duration(name: string): number | undefined {
    const text = this.str(name);
    if (text === undefined) return undefined;
    const ms = durationMs(text);
    if (ms === undefined) {
      throw new UsageError(`--${name}: "${text}" is not a duration (such as 30s, 15m, 1h30m, 7d)`, this.command.name);
    }
    return ms;
  }

  /**
   * A token (or other secret) argument: the argument itself, or stdin when it is `-` or absent while stdin is not a
   * terminal (so the token stays out of the shell history). Surrounding whitespace is dropped.
   */
  async secret(arg: string | undefined, what: string): Promise<string> {
    if (arg !== undefined && arg !== "-") return arg;
    if (arg === undefined && this.io.stdin.isTTY) {
      throw new UsageError(`needs a ${what}: as an argument, or on stdin (give "-", or pipe it in)`, this.command.name);
    }
    const text = (await readAll(this.io.stdin)).trim();
    if (text === "") throw new UsageError(`no ${what} on stdin`, this.command.name);
    return text;
  }

  /** The connection to Tessera, made on first use from the global options and the environment. */
  client(): TesseraClient {
    this.conn ??= connect(this.values, this.io.env, this.command.name);
    return this.conn;
  }

  close(): void {
    this.conn?.close();
  }

  /** Whether an API key was given (by option, file or environment). */
  hasApiKey(): boolean {
    try {
      return apiKey(this.values, this.io.env, this.command.name) !== undefined;
    } catch {
      return true;
    }
  }

  /** The address calls go to, for messages. */
  get url(): string {
    return baseUrl(this.values, this.io.env);
  }
}

export const DEFAULT_URL = "http://127.0.0.1:8080";

/** `15m`, `1h30m`, `250ms` (src/config/duration.ts), or a bare number of seconds, in ms; undefined if it is neither. */
function durationMs(text: string): number | undefined {
  const ms = /^\d+$/.test(text.trim()) ? Number(text.trim()) * 1000 : parseDuration(text);
  return ms !== undefined && Number.isSafeInteger(ms) ? ms : undefined;
}

function baseUrl(values: Values, env: Record<string, string | undefined>): string {
  return (typeof values.url === "string" ? values.url : undefined) ?? nonEmpty(env.TESSERA_URL) ?? DEFAULT_URL;
}

function nonEmpty(s: string | undefined): string | undefined {
  return s === undefined || s.trim() === "" ? undefined : s.trim();
}

function readFile(path: string, option: string, command: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new UsageError(`${option}: cannot read "${path}" (${(err as NodeJS.ErrnoException).code ?? "error"})`, command);
  }
}

/**
 * The API key: --api-key-file, else --api-key, else TESSERA_API_KEY (one trailing newline of a file ignored). Never
 * printed, not even in errors.
 */
function apiKey(values: Values, env: Record<string, string | undefined>, command: string): string | undefined {
  const file = typeof values["api-key-file"] === "string" ? values["api-key-file"] : undefined;
  const flag = typeof values["api-key"] === "string" ? values["api-key"] : undefined;
  if (file !== undefined && flag !== undefined) throw new UsageError("give --api-key-file or --api-key, not both", command);
  let key: string | undefined;
  let from: string;
  if (file !== undefined) {
    key = readFile(file, "--api-key-file", command).toString("utf8").replace(/\r?\n$/, "");
    from = `--api-key-file "${file}"`;
  } else if (flag !== undefined) {
    key = flag;
    from = "--api-key";
  } else {
    key = env.TESSERA_API_KEY;
    from = "TESSERA_API_KEY";
    if (key === "") key = undefined;
  }
  if (key !== undefined && (key === "" || /\s/.test(key))) throw new UsageError(`the API key from ${from} is empty or contains whitespace`, command);
  return key;
}

function connect(values: Values, env: Record<string, string | undefined>, command: string): TesseraClient {
  const raw = baseUrl(values, env);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`"${raw}" is not a URL (such as http://127.0.0.1:8080 or https://tessera.internal:8443)`, command);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`the URL must be http:// or https://, not ${url.protocol}//`, command);
  }
  const path = (option: string, variable: string) =>
    (typeof values[option] === "string" ? (values[option] as string) : undefined) ?? nonEmpty(env[variable]);
  const caPath = path("ca", "TESSERA_CA");
  const certPath = path("cert", "TESSERA_CLIENT_CERT");
  const keyPath = path("key", "TESSERA_CLIENT_KEY");
  if ((certPath === undefined) !== (keyPath === undefined)) throw new UsageError("a client certificate needs both --cert and --key", command);
  const tlsGiven = caPath !== undefined || certPath !== undefined;
  if (tlsGiven && url.protocol !== "https:") throw new UsageError("--ca, --cert and --key need an https:// URL", command);
  const protocol = typeof values.protocol === "string" ? values.protocol : "grpc";
  if (protocol !== "grpc" && protocol !== "connect") throw new UsageError(`--protocol: "${protocol}" is neither grpc nor connect`, command);
  const timeout = typeof values.timeout === "string" ? values.timeout : undefined;
  let timeoutMs: number | undefined;
  if (timeout !== undefined) {
    timeoutMs = durationMs(timeout);
    if (timeoutMs === undefined || timeoutMs <= 0) throw new UsageError(`--timeout: "${timeout}" is not a duration above 0 (such as 5s)`, command);
  }
  const key = apiKey(values, env, command);
  return createTesseraClient({
    baseUrl: url.href,
    ...(key !== undefined ? { apiKey: key } : {}),
    ...(tlsGiven
      ? {
          tls: {
            ...(caPath !== undefined ? { ca: readFile(caPath, "--ca", command) } : {}),
            ...(certPath !== undefined ? { cert: readFile(certPath, "--cert", command) } : {}),
            ...(keyPath !== undefined ? { key: readFile(keyPath, "--key", command) } : {}),
          },
        }
      : {}),
    protocol,
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  });
}
