/**
 * What a process says when it starts, before anything else: its version and Node's, the effective configuration
 * (every variable it reads, as set or defaulted; no secrets: API keys hidden, passwords cut out of URLs, files named by
 * their paths, never their contents), and a warning for every TESSERA_* variable it does not read, naming the closest
 * one it does (a misspelled variable is otherwise silently ignored).
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { effectiveValues, unknownVariables, type Declarations } from "../config/variable.js";
import type { Logger } from "./logger.js";

export interface StartInfo {
  /** "tessera" or "tessera sidecar": the start line's words. */
  program: string;
  /** The variables this program reads. */
  declarations: Declarations;
  /** Other programs' declarations, by name: a variable of theirs set here is still unknown here, and said so. */
  others: Record<string, Declarations>;
  env: Record<string, string | undefined>;
}

export function logStart(logger: Logger, info: StartInfo): void {
  const version = packageVersion();
  logger.info(
    { version, node: process.version, config: effectiveValues(info.declarations, info.env) },
    `${info.program} ${version} starting (Node.js ${process.version})`,
  );
  for (const u of unknownVariables(info.declarations, info.env, info.others)) {
    const fields = { variable: u.name, closest: u.closest, ...(u.knownTo === undefined ? {} : { readBy: u.knownTo }) };
    logger.warn(
      fields,
      u.knownTo === undefined
        ? `unknown variable ${u.name} (ignored): did you mean ${u.closest}?`
        : `${u.name} is a variable of ${u.knownTo}, not of ${info.program} (ignored here; closest: ${u.closest})`,
    );
  }
}

/**
 * package.json's version: the nearest package.json named "tessera" above this module (src/observability/ under tsx,
 * dist/src/observability/ once built; the image copies package.json next to dist/). "unknown" if there is none.
 */
export function packageVersion(from = dirname(fileURLToPath(import.meta.url))): string {
  for (let dir = from, up = dirname(dir); ; dir = up, up = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: unknown; version?: unknown };
      if (pkg.name === "tessera" && typeof pkg.version === "string") return pkg.version;
    } catch {
      // no package.json here (or not JSON): look further up
    }
    if (up === dir) return "unknown";
  }
}
