#!/usr/bin/env node
/**
 * The `tessera` command (package.json "bin"). In a checkout (src/ and tsx, a devDependency, are there) it runs the
 * TypeScript source, src/cli/main.ts, through tsx, so it is never an older build: `npm install` in a checkout builds
 * part of dist/ (the prepare script), which then ages as the sources change. Anywhere else (an installed package,
 * whose prepack script built dist/ and which ships no src/) it runs the compiled dist/src/cli/main.js.
 */
import { existsSync } from "node:fs";

const source = new URL("../src/cli/main.ts", import.meta.url);
const compiled = new URL("../dist/src/cli/main.js", import.meta.url);

async function tsx() {
  try {
    return (await import("tsx/esm/api")).register;
  } catch {
    return undefined;
  }
}

const register = existsSync(source) ? await tsx() : undefined;
if (register) {
  register();
  await import(source.href);
} else if (existsSync(compiled)) {
  await import(compiled.href);
} else {
  process.stderr.write("tessera: found neither dist/src/cli/main.js (run `npm run build`) nor src/cli/main.ts with tsx (run `npm install`)\n");
  process.exit(2);
}
