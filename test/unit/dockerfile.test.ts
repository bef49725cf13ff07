/**
 * What can be checked of the Dockerfile without a Docker engine: the base image is pinned (version and digest) to
 * the Node.js major the tests run on; every file the build copies from the context exists; what the runtime stage
 * runs (the server, the health check) is built from sources that exist; hash-api-key is in the image and parses.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const dockerfile = readFileSync(join(ROOT, "Dockerfile"), "utf8");
/** Instructions, with continuation lines joined and comments dropped. */
const instructions = dockerfile
  .replace(/\\\n/g, " ")
  .split("\n")
  .map((l) => l.trim())
  .filter((l) => l !== "" && !l.startsWith("#"));

describe("the Dockerfile", () => {
  it("pins its base image by version and digest, on the Node.js major the tests run on", () => {
    const arg = instructions.find((l) => l.startsWith("ARG NODE_IMAGE="));
    const m = /^ARG NODE_IMAGE=node:(\d+)\.(\d+)\.(\d+)-bookworm-slim@sha256:[0-9a-f]{64}$/.exec(arg ?? "");
    expect(m, arg).not.toBeNull();
    expect(Number(m![1])).toBe(Number(process.versions.node.split(".")[0]));
    const froms = instructions.filter((l) => l.startsWith("FROM "));
    expect(froms).toEqual(["FROM ${NODE_IMAGE} AS build", "FROM ${NODE_IMAGE} AS runtime"]);
  });

  it("copies only files that exist, and runs what the build makes of sources that exist", () => {
    const fromContext = instructions.filter((l) => l.startsWith("COPY ") && !l.includes("--from="));
    expect(fromContext.length).toBeGreaterThan(3);
    for (const line of fromContext) {
      const sources = line.split(/\s+/).slice(1, -1).filter((w) => !w.startsWith("--"));
      for (const source of sources) expect({ source, exists: existsSync(join(ROOT, source)) }).toEqual({ source, exists: true });
    }
    // dist/src/X.js is tsc's output for src/X.ts (tsconfig.build.json: rootDir ".", outDir "dist").
    const ran = [...dockerfile.matchAll(/"(dist\/src\/[\w/-]+)\.js"/g)].map((m) => m[1]!);
    expect(ran).toEqual(expect.arrayContaining(["dist/src/healthcheck", "dist/src/main"]));
    for (const out of ran) expect(existsSync(join(ROOT, `${out.replace(/^dist\//, "")}.ts`)), out).toBe(true);
    const healthcheck = instructions.find((l) => l.startsWith("HEALTHCHECK "));
    expect(healthcheck).toMatch(/CMD \["node", "dist\/src\/healthcheck\.js"\]$/);
  });

  it("carries hash-api-key, and the script parses", () => {
    expect(instructions).toContain("COPY scripts/hash-api-key.mjs ./scripts/hash-api-key.mjs");
    expect(instructions).toContain("COPY --from=build --chown=root:root /app/scripts/hash-api-key.mjs ./scripts/hash-api-key.mjs");
    execFileSync(process.execPath, ["--check", join(ROOT, "scripts/hash-api-key.mjs")]);
    const hash = execFileSync(process.execPath, [join(ROOT, "scripts/hash-api-key.mjs")], { input: "k" }).toString();
    expect(hash).toMatch(/^[0-9a-f]{64}\n$/);
  });
});
