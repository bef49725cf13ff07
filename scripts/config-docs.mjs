// Writes docs/configuration.md from the declarations in src/config/config.ts (`npm run docs:config`);
// with --check, fails instead when docs/configuration.md is stale (`npm run check:docs`, part of `npm test`).
// Run with tsx loaded: node --import tsx scripts/config-docs.mjs [--check]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { withConfigTable } from "../src/config/docs.ts";

const file = join(process.cwd(), "docs/configuration.md");
const have = readFileSync(file, "utf8");
const want = withConfigTable(have);
if (process.argv.includes("--check")) {
  if (have !== want) {
    console.error("docs/configuration.md is stale (run `npm run docs:config` and commit)");
    process.exit(1);
  }
  console.log("docs/configuration.md is up to date");
} else if (have !== want) {
  writeFileSync(file, want);
  console.log("docs/configuration.md: configuration table written");
} else {
  console.log("docs/configuration.md is up to date");
}
