/**
 * Builds the operator console (console/src, console/index.html) into dist/console/: one JavaScript bundle and one
 * stylesheet (uPlot's included), both named by their content hash, and index.html naming them. Everything the page
 * loads is in that directory: no third-party request. src/server/console.ts serves it at /console/.
 *
 *   npm run build:console            (part of `npm run build`, and of `npm ci` through `prepare`)
 */
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..");
export const CONSOLE_OUT_DIR = join(ROOT, "dist", "console");

/** Builds into outDir (replaced as a whole, so stale hashed files do not pile up). Returns the file names written. */
export async function buildConsole(outDir: string = CONSOLE_OUT_DIR): Promise<string[]> {
  const staging = `${outDir}.tmp-${process.pid}-${Date.now()}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const result = await build({
      entryPoints: { app: join(HERE, "src", "main.ts") },
      outdir: staging,
      entryNames: "[name]-[hash]",
      assetNames: "[name]-[hash]",
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      target: ["chrome111", "firefox111", "safari16"],
      metafile: true,
      legalComments: "eof",
      logLevel: "warning",
      tsconfig: join(HERE, "tsconfig.json"),
      absWorkingDir: ROOT, // the metafile's paths, and so the build, do not depend on where it runs from
    });
    const outputs = Object.entries(result.metafile.outputs);
    const js = outputs.find(([, o]) => o.entryPoint !== undefined);
    const css = js?.[1].cssBundle;
    if (js === undefined || css === undefined) throw new Error("console build: no script or stylesheet was produced");
    const name = (path: string) => basename(path);
    const template = await readFile(join(HERE, "index.html"), "utf8");
    const html = template.replace("{{app.js}}", name(js[0])).replace("{{app.css}}", name(css));
    if (html.includes("{{")) throw new Error("console build: index.html has a placeholder left");
    await writeFile(join(staging, "index.html"), html);
    await writeFile(join(staging, "licenses.txt"), await licenses(Object.keys(result.metafile.inputs)));
    await swapIn(staging, outDir);
    return ["index.html", name(js[0]), name(css), "licenses.txt"];
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** The packages bundled into the console, with their versions, licenses and license texts (served as licenses.txt). */
async function licenses(inputs: string[]): Promise<string> {
  const dirs = new Map<string, string>(); // package -> its directory (the innermost node_modules of each input)
  for (const input of inputs) {
    const at = input.lastIndexOf("node_modules/");
    if (at < 0) continue;
    const rest = input.slice(at + "node_modules/".length).split("/");
    const pkg = rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? "");
    dirs.set(pkg, resolve(ROOT, input.slice(0, at + "node_modules/".length + pkg.length)));
  }
  const parts = ["The operator console bundles these packages:", ""];
  for (const [pkg, dir] of [...dirs].sort(([a], [b]) => a.localeCompare(b))) {
    const meta = JSON.parse(await readFile(join(dir, "package.json"), "utf8")) as { version?: string; license?: string };
    parts.push(`${pkg} ${meta.version ?? ""}, license: ${meta.license ?? "see the package"}`);
    const text = await readFile(join(dir, "LICENSE"), "utf8").catch(() => undefined);
    if (text) parts.push("", text.trim(), "");
  }
  return `${parts.join("\n")}\n`;
}

/**
 * Puts the staging directory in outDir's place: the old one is moved aside first and removed after, so a reader (the
 * authority reads the directory once, at start) finds a whole build, never a half-written one. If another build (a concurrent `npm run build`) put its
 * output there in between, that one stays: both come from the same sources.
 */
async function swapIn(staging: string, outDir: string): Promise<void> {
  await mkdir(dirname(outDir), { recursive: true });
  const previous = `${outDir}.old-${process.pid}-${Date.now()}`;
  await rename(outDir, previous).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
  });
  try {
    await rename(staging, outDir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
    await rm(staging, { recursive: true, force: true });
  }
  await rm(previous, { recursive: true, force: true });
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = Date.now();
  const files = await buildConsole();
  console.log(`console: ${files.join(", ")} in ${relative(process.cwd(), CONSOLE_OUT_DIR) || "."} (${Date.now() - started} ms)`);
}
