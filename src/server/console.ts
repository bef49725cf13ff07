/**
 * The operator console's static files (console/, built by console/build.ts into dist/console/), served at /console/
 * on the authority's own port. The browser then speaks the Connect protocol to the same port with the operator's API
 * key, so the console can do nothing its key could not do through any other client: the pipeline checks every call.
 *
 * What this module guarantees for every /console response, files and errors alike:
 * - the files come from a fixed in-memory map, read once at start from one directory; a request path is only ever
 *   looked up in that map, never joined to a filesystem path (no traversal, nothing read at request time);
 * - GET and HEAD only (405 with `Allow` otherwise); an unknown path is 404;
 * - a strict Content-Security-Policy (scripts, styles and calls from this origin only, no inline code, no framing),
 *   `nosniff`, no referrer; the page (index.html) revalidates with its ETag, the hashed assets are immutable.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RequestHandler } from "./listener.js";

type Req = Parameters<RequestHandler>[0];
type Res = Parameters<RequestHandler>[1];

/** The prefix every console path starts with; `/console` alone redirects to `/console/`. */
export const CONSOLE_PATH = "/console";

/** The policy of every console response. No 'unsafe-inline', no 'unsafe-eval', nothing from another origin. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "content-security-policy": CONSOLE_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
});

/** What a file name may look like, and the types served (anything else in the directory is left out). */
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
});
/** esbuild's content hash in a name (`app-4F2KQJ3M.js`): such a file never changes, it is replaced by another name. */
const HASHED = /-[A-Z0-9]{8}\.[a-z]+$/;

export interface ConsoleFile {
  readonly body: Buffer;
  readonly contentType: string;
  readonly etag: string;
  readonly cacheControl: string;
}

/** The console's files by name (`index.html`, `app-4F2KQJ3M.js`, ...). */
export type ConsoleFiles = ReadonlyMap<string, ConsoleFile>;

/** Builds the map from file names and contents (the loader's second half; tests build one directly). */
export function consoleFiles(entries: Iterable<readonly [string, Buffer]>): ConsoleFiles {
  const files = new Map<string, ConsoleFile>();
  for (const [name, body] of entries) {
    const contentType = CONTENT_TYPES[extension(name)];
    if (!FILE_NAME.test(name) || contentType === undefined) continue;
    const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    const cacheControl = HASHED.test(name) ? "public, max-age=31536000, immutable" : "no-cache";
    files.set(name, Object.freeze({ body, contentType, etag, cacheControl }));
  }
  return files;
}

/**
 * Where the built console is: dist/console/ at the package root, whether this module runs from its source
 * (src/server/console.ts, through tsx: `npm start`) or compiled (dist/src/server/console.js: the image).
 */
export function defaultConsoleDir(): string {
  const fromSource = import.meta.url.endsWith(".ts");
  return fileURLToPath(new URL(fromSource ? "../../dist/console/" : "../../console/", import.meta.url));
}

/**
 * Reads the built console once (the directory's regular files, not its subdirectories); undefined if it has not been
 * built (no index.html), and the console then answers 503 saying so.
 */
export function loadConsoleFiles(dir: string = defaultConsoleDir()): ConsoleFiles | undefined {
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => e.name);
  } catch {
    return undefined;
  }
  if (!names.includes("index.html")) return undefined;
  return consoleFiles(names.map((name) => [name, readFileSync(join(dir, name))] as const));
}

/**
 * The handler of the console's paths: answers and returns true for `/console` and everything under `/console/`,
 * returns false (and writes nothing) for any other path. `files` undefined: the console is not built.
 */
export function consoleRoute(files: ConsoleFiles | undefined): (req: Req, res: Res) => boolean {
  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    if (path !== CONSOLE_PATH && !path.startsWith(`${CONSOLE_PATH}/`)) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      plain(req, res, 405, "method not allowed: the console takes GET and HEAD", { allow: "GET, HEAD" });
      return true;
    }
    if (path === CONSOLE_PATH) {
      // Relative, so that a proxy that serves Tessera under a prefix keeps it.
      plain(req, res, 308, "the console is at /console/", { location: "console/" });
      return true;
    }
    if (files === undefined) {
      plain(req, res, 503, "the operator console is not built: run `npm run build` (or `npm ci`, which builds it)");
      return true;
    }
    const name = path.slice(CONSOLE_PATH.length + 1);
    const file = files.get(name === "" ? "index.html" : name);
    if (file === undefined) {
      plain(req, res, 404, "not found");
      return true;
    }
    const headers = { ...SECURITY_HEADERS, "content-type": file.contentType, "cache-control": file.cacheControl, etag: file.etag };
    if (req.headers["if-none-match"] === file.etag) {
      res.writeHead(304, headers);
      res.end();
      return true;
    }
    res.writeHead(200, { ...headers, "content-length": String(file.body.length) });
    if (req.method === "HEAD") res.end();
    else res.end(file.body);
    return true;
  };
}

function plain(req: Req, res: Res, status: number, message: string, extra: Record<string, string> = {}): void {
  const body = `${message}\n`;
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    ...extra,
    "content-type": "text/plain; charset=utf-8",
    "cache-control": "no-store",
    "content-length": String(Buffer.byteLength(body)),
  });
  if (req.method === "HEAD") res.end();
  else res.end(body);
}

function extension(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot);
}
