#!/usr/bin/env node
/**
 * Prints the SHA-256 (64 hex digits) of an API key read from stdin, for the callers file
 * (`"api_keys": [{ "sha256": "..." }]`). One trailing newline is ignored, so `echo "$KEY" | ...` works.
 * Keys never go on the command line (shell history, process list).
 *
 *   printf %s "$KEY" | node scripts/hash-api-key.mjs
 *   node scripts/hash-api-key.mjs --new     # a fresh random key (stderr) and its hash (stdout)
 *
 * The same as `tessera hash-api-key`: both run src/cli/api-key.ts, as its source through tsx in a checkout, or
 * compiled (dist/src/cli/api-key.js) where there is no source or no tsx, as in the Docker image.
 */
import { existsSync } from "node:fs";

const source = new URL("../src/cli/api-key.ts", import.meta.url);
const compiled = new URL("../dist/src/cli/api-key.js", import.meta.url);

async function tsx() {
  try {
    return (await import("tsx/esm/api")).register;
  } catch {
    return undefined;
  }
}

const register = existsSync(source) ? await tsx() : undefined;
if (register) register();
const { hashApiKeyCommand, readAll } = await import(register ? source.href : compiled.href);

process.exitCode = await hashApiKeyCommand(
  process.argv.slice(2),
  {
    readStdin: () => readAll(process.stdin),
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  },
  'usage: printf %s "$KEY" | node scripts/hash-api-key.mjs   |   node scripts/hash-api-key.mjs --new',
);
