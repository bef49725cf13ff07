/**
 * `tessera/client` as another service gets it: `npm pack` of this repository (its `prepare` script builds the client
 * with declarations), installed into a scratch project outside the repository (`npm install <tarball>`, which also
 * installs the package's runtime dependencies from the registry or npm's cache), type-checked there against the
 * package's declarations (`exports` with a `types` condition, NodeNext resolution), and run: a script that imports
 * `tessera/client`, calls a real server started here with an API key, and prints JSON this test checks.
 *
 * Slow by nature (a tsc build and an npm install): about a minute on a busy two-core machine.
 */
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTesseraClient } from "../../src/client/index.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const KEY = `tk_${randomBytes(24).toString("base64url")}`;

let dir: string;
let server: StartedServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-pack-"));
  const callers = join(dir, "callers.json");
  const sha256 = createHash("sha256").update(KEY).digest("hex");
  await writeFile(callers, JSON.stringify({ callers: [{ name: "svc", permissions: ["issue", "introspect"], api_keys: [{ sha256 }] }] }));
  server = await startServer({ TESSERA_CALLERS_FILE: callers });
});
afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const SCRIPT = `
import { createTesseraClient, createVerifier, InactiveReason, TokenManager, verifierMiddleware, principalKey } from "tessera/client";
const client = createTesseraClient({ baseUrl: process.env.TESSERA_URL, apiKey: process.env.TESSERA_KEY });
const token = process.env.TOKEN;
const r = await client.tokens.introspect({ token });
const bad = await client.tokens.introspect({ token: "a.b.c" });
const verifier = createVerifier({ mode: "authority", url: process.env.TESSERA_URL, apiKey: process.env.TESSERA_KEY });
const v = await verifier.verify(token, { requiredScopes: ["read"] });
let unauthenticated;
try {
  await createTesseraClient({ baseUrl: process.env.TESSERA_URL, retry: { attempts: 1 } }).tokens.introspect({ token });
} catch (e) {
  unauthenticated = e.code;
}
console.log(JSON.stringify({
  active: r.active,
  subject: r.subject,
  scopes: r.scopes,
  bad: InactiveReason[bad.inactiveReason],
  verified: v.active ? v.principal.subject : v.reason,
  unauthenticated,
  exports: [typeof TokenManager, typeof verifierMiddleware, typeof principalKey],
}));
client.close();
await verifier.close();
`;

const TYPED = `
import { createTesseraClient, createVerifier, TokenManager, pairFrom, type Principal, type VerifyResult, type IntrospectResponse } from "tessera/client";
const client = createTesseraClient({ baseUrl: "http://127.0.0.1:1", apiKey: "k", timeoutMs: 1000, retry: { attempts: 2, baseMs: 10, maxMs: 100 } });
export async function check(token: string): Promise<string> {
  const r: IntrospectResponse = await client.tokens.introspect({ token });
  const v: VerifyResult = await createVerifier({ mode: "sidecar", url: "http://127.0.0.1:2" }).verify(token);
  const p: Principal | undefined = v.active ? v.principal : undefined;
  const issued = await client.tokens.issue({ subject: "s" });
  const m = new TokenManager({ client, pair: pairFrom(issued), clientInfo: { deviceId: "d", userAgent: "u" } });
  m.on("ended", (e) => console.log(e.reason));
  return r.subject + (p?.subject ?? "") + (await m.getAccessToken());
}
`;

it("packs, installs into a project outside the repository, type-checks and runs `tessera/client`", async () => {
  const timings: Record<string, number> = {};
  const timed = async <T>(what: string, f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      timings[what] = Math.round(performance.now() - t);
    }
  };

  // npm pack (its prepare script builds the client into dist/).
  const packDir = join(dir, "pack");
  await run("mkdir", ["-p", packDir]);
  const packed = await timed("npm pack (with the build)", () =>
    run("npm", ["pack", "--json", "--pack-destination", packDir], { cwd: ROOT, maxBuffer: 16 << 20 }),
  );
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.search(/^\[/m))) as [{ filename: string; files: { path: string }[] }];
  const paths = info.files.map((f) => f.path);
  expect(paths).toContain("dist/src/client/index.js");
  expect(paths).toContain("dist/src/client/index.d.ts");
  expect(paths.some((p) => p.startsWith("src/") || p.startsWith("test/"))).toBe(false);
  const tarball = join(packDir, (await readdir(packDir)).find((f) => f.endsWith(".tgz"))!);

  // A scratch project that depends on the tarball.
  const project = join(dir, "service");
  await run("mkdir", ["-p", project]);
  await writeFile(join(project, "package.json"), JSON.stringify({ name: "scratch-service", private: true, type: "module", dependencies: { tessera: `file:${tarball}` } }));
  await timed("npm install", () =>
    run("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"], { cwd: project, maxBuffer: 16 << 20 }),
  );

  // Its types, as a TypeScript service sees them (NodeNext: the exports map's `types` condition).
  await writeFile(join(project, "typed.ts"), TYPED);
  await writeFile(
    join(project, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        module: "NodeNext",
        moduleResolution: "NodeNext",
        target: "ES2022",
        strict: true,
        noEmit: true,
        typeRoots: [join(ROOT, "node_modules/@types")],
        types: ["node"],
      },
      files: ["typed.ts"],
    }),
  );
  await timed("tsc in the scratch project", () => run(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", project], { cwd: project }));

  // And it runs.
  const issuer = createTesseraClient({ baseUrl: server.url, apiKey: KEY });
  const issued = await issuer.tokens.issue({ subject: "packed-alice", scopes: ["read"], client: { deviceId: "d", userAgent: "pack-test" } });
  issuer.close();
  await writeFile(join(project, "main.mjs"), SCRIPT);
  const out = await timed("the script", () =>
    run(process.execPath, ["main.mjs"], {
      cwd: project,
      env: { ...process.env, TESSERA_URL: server.url, TESSERA_KEY: KEY, TOKEN: issued.tokens!.accessToken },
    }),
  );
  expect(JSON.parse(out.stdout.trim())).toEqual({
    active: true,
    subject: "packed-alice",
    scopes: ["read"],
    bad: "MALFORMED",
    verified: "packed-alice",
    unauthenticated: 16,
    exports: ["function", "function", "object"],
  });
  console.info(`pack test timings (ms): ${JSON.stringify(timings)}`);
}, 300_000);
