#!/usr/bin/env node
/**
 * Prints the SHA-256 (64 hex digits) of an API key read from stdin, for the callers file
 * (`"api_keys": [{ "sha256": "..." }]`). One trailing newline is ignored, so `echo "$KEY" | ...` works.
 * Keys never go on the command line (shell history, process list).
 *
 *   printf %s "$KEY" | node scripts/hash-api-key.mjs
 *   node scripts/hash-api-key.mjs --new     # a fresh random key (stderr) and its hash (stdout)
 *
 * The same as `tessera hash-api-key`: both run src/cli/api-key, as its source in a checkout or compiled where there is
 * no source or no tsx, as in the Docker image (bin/load.mjs).
 */
import { loadTessera } from "../bin/load.mjs";

const { hashApiKeyCommand, readAll } = await loadTessera("cli/api-key");

process.exitCode = await hashApiKeyCommand(
  process.argv.slice(2),
  {
    readStdin: () => readAll(process.stdin),
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  },
  'usage: printf %s "$KEY" | node scripts/hash-api-key.mjs   |   node scripts/hash-api-key.mjs --new',
);
