/**
 * API keys for the callers file: the SHA-256 (64 hex digits) the file holds, and fresh random keys. One place for the
 * logic behind `tessera hash-api-key` and `scripts/hash-api-key.mjs` (which loads this module: compiled from dist/ when
 * built, as in the Docker image, else this source through tsx). Node built-ins only, so the script stays light.
 *
 * Keys are read from stdin, never from the command line (shell history, process list).
 */
import { createHash, randomBytes } from "node:crypto";

/** The SHA-256 of a key as the callers file holds it: 64 lowercase hex digits. */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** A fresh random key: 32 random bytes, base64url (43 characters). */
export function newApiKey(): string {
  return randomBytes(32).toString("base64url");
}

/** The key in what was read from stdin: one trailing newline is ignored (`echo "$KEY" | ...`); undefined if empty or holding whitespace. */
export function keyFromInput(text: string): string | undefined {
  const key = text.replace(/\r?\n$/, "");
  return key === "" || /\s/.test(key) ? undefined : key;
}

export interface HashApiKeyIo {
  readStdin(): Promise<string>;
  out(text: string): void;
  err(text: string): void;
}

/**
 * The whole command, for both entry points: no arguments, the hash of the key on stdin (exit 1 if there is none);
 * `--new`, a fresh key on stderr and its hash on stdout; anything else, the usage line and exit 2. Returns the exit code.
 */
export async function hashApiKeyCommand(args: readonly string[], io: HashApiKeyIo, usage: string): Promise<number> {
  if (args.length === 1 && args[0] === "--new") {
    const key = newApiKey();
    io.err(`key: ${key}\n`);
    io.out(`${hashApiKey(key)}\n`);
    return 0;
  }
  if (args.length > 0) {
    io.err(`${usage}\n`);
    return 2;
  }
  const key = keyFromInput(await io.readStdin());
  if (key === undefined) {
    io.err("hash-api-key: the key on stdin is empty or contains whitespace\n");
    return 1;
  }
  io.out(`${hashApiKey(key)}\n`);
  return 0;
}

/** Everything on a stream, as UTF-8. */
export async function readAll(stream: AsyncIterable<Buffer | string>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString("utf8");
}
