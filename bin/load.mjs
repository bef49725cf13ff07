/**
 * Loads one of Tessera's modules by its path under src/ without extension (`cli/main`): in a checkout (the source and
 * tsx, a devDependency, are there) the TypeScript source through tsx, so it is never an older build (`npm install` in
 * a checkout builds part of dist/, which then ages); anywhere else (an installed package, the Docker image: no src/
 * or no tsx) the compiled dist/src/ twin. Undefined if neither is there. Used by bin/tessera.mjs and
 * scripts/hash-api-key.mjs.
 */
import { existsSync } from "node:fs";

export async function loadTessera(path) {
  const source = new URL(`../src/${path}.ts`, import.meta.url);
  const compiled = new URL(`../dist/src/${path}.js`, import.meta.url);
  const register = existsSync(source) ? await tsxRegister() : undefined;
  if (register) {
    register();
    return import(source.href);
  }
  return existsSync(compiled) ? import(compiled.href) : undefined;
}

async function tsxRegister() {
  try {
    return (await import("tsx/esm/api")).register;
  } catch {
    return undefined;
  }
}
