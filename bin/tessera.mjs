#!/usr/bin/env node
/** The `tessera` command (package.json "bin"): src/cli/main, as its source in a checkout or compiled (bin/load.mjs). */
import { loadTessera } from "./load.mjs";

if ((await loadTessera("cli/main")) === undefined) {
  process.stderr.write("tessera: found neither dist/src/cli/main.js (run `npm run build`) nor src/cli/main.ts with tsx (run `npm install`)\n");
  process.exit(2);
}
