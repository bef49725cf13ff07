// Writes README.md's configuration table from the declarations in src/config/config.ts (`npm run docs:config`);
// with --check, fails instead when README.md is stale (`npm run check:docs`, part of `npm test`).
// Run with tsx loaded: node --import tsx scripts/config-docs.mjs [--check]
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { withConfigTable } from "../src/config/docs.ts";

const file = join(process.cwd(), "README.md");
const have = readFileSync(file, "utf8");
const want = withConfigTable(have);
if (process.argv.includes("--check")) {
  if (have !== want) {
    console.error("README.md's configuration table is stale (run `npm run docs:config` and commit)");
    process.exit(1);
  }
  console.log("README.md's configuration table is up to date");
} else if (have !== want) {
  writeFileSync(file, want);
  console.log("README.md: configuration table written");
} else {
  console.log("README.md's configuration table is up to date");
}
