#!/usr/bin/env node
/**
 * Prints the SHA-256 (64 hex digits) of an API key read from stdin, for the callers file
 * (`"api_keys": [{ "sha256": "..." }]`). One trailing newline is ignored, so `echo "$KEY" | ...` works.
 * Keys never go on the command line (shell history, process list).
 *
 *   printf %s "$KEY" | node scripts/hash-api-key.mjs
 *   node scripts/hash-api-key.mjs --new     # a fresh random key (stderr) and its hash (stdout)
 */
import { createHash, randomBytes } from "node:crypto";

const hash = (key) => createHash("sha256").update(key, "utf8").digest("hex");

if (process.argv[2] === "--new") {
  const key = randomBytes(32).toString("base64url");
  process.stderr.write(`key: ${key}\n`);
  process.stdout.write(`${hash(key)}\n`);
} else if (process.argv.length > 2) {
  process.stderr.write("usage: printf %s \"$KEY\" | node scripts/hash-api-key.mjs   |   node scripts/hash-api-key.mjs --new\n");
  process.exit(2);
} else {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const key = Buffer.concat(chunks).toString("utf8").replace(/\r?\n$/, "");
  if (key === "" || /\s/.test(key)) {
    process.stderr.write("hash-api-key: the key on stdin is empty or contains whitespace\n");
    process.exit(1);
  }
  process.stdout.write(`${hash(key)}\n`);
}
