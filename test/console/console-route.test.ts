/**
 * The /console route on its own (src/server/console.ts, as src/server/http-routes.ts mounts it): every answer carries
 * the CSP and the other security headers; only GET and HEAD; unknown paths 404; a request path is only looked up in
 * the in-memory map read at start, so no spelling of "..", no subdirectory, no symlink and no later change on disk
 * reaches the filesystem. Also: the console's permission table is the authority's, and its page has no inline code.
 */
import http from "node:http";
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CONSOLE_RPCS } from "../../console/src/permissions.js";
import { METHOD_PERMISSIONS } from "../../src/api/auth.js";
import { CONSOLE_CSP, consoleFiles, consoleRoute, defaultConsoleDir, loadConsoleFiles } from "../../src/server/console.js";
import { httpRoutes } from "../../src/server/http-routes.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const INDEX = "<!doctype html><title>console</title>";
const SCRIPT = "console.log('app')";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A raw request: node's http client sends the path exactly as given (fetch would resolve the dots first). */
function request(port: number, path: string, method = "GET", headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
    });
    req.on("error", reject);
    req.end();
  });
}

function expectSecurityHeaders(a: Answer): void {
  expect(a.headers["content-security-policy"]).toBe(CONSOLE_CSP);
  expect(a.headers["x-content-type-options"]).toBe("nosniff");
  expect(a.headers["referrer-policy"]).toBe("no-referrer");
  expect(a.headers["x-frame-options"]).toBe("DENY");
}

describe("the console's Content-Security-Policy", () => {
  it("allows only this origin, and no inline code, framing, forms or base", () => {
    const directives = new Map(CONSOLE_CSP.split(/;\s*/).map((d) => [d.split(" ")[0], d.split(" ").slice(1).join(" ")]));
    expect(directives.get("default-src")).toBe("'none'");
    expect(directives.get("script-src")).toBe("'self'");
    expect(directives.get("style-src")).toBe("'self'");
    expect(directives.get("connect-src")).toBe("'self'");
    expect(directives.get("img-src")).toBe("'self' data:");
    expect(directives.get("base-uri")).toBe("'none'");
    expect(directives.get("form-action")).toBe("'none'");
    expect(directives.get("frame-ancestors")).toBe("'none'");
    expect(CONSOLE_CSP).not.toMatch(/unsafe|\*|https?:/);
  });
});

describe("the /console route", () => {
  let dir: string;
  let server: http.Server;
  let port: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-console-"));
    await writeFile(join(dir, "index.html"), INDEX);
    await writeFile(join(dir, "app-ABCDEFGH.js"), SCRIPT);
    await writeFile(join(dir, "app-ABCDEFGH.css"), "body{}");
    await writeFile(join(dir, "notes.md"), "not a served type");
    await mkdir(join(dir, "sub"));
    await writeFile(join(dir, "sub", "secret.txt"), "in a subdirectory");
    await symlink(join(ROOT, "package.json"), join(dir, "linked.txt"));
    const files = loadConsoleFiles(dir);
    expect(files).toBeDefined();
    // Changed on disk after the start: the console still serves what it read then.
    await writeFile(join(dir, "index.html"), "changed on disk");
    const routes = httpRoutes({ jwks: () => [], ready: () => true, console: consoleRoute(files) });
    server = http.createServer((req, res) => routes(req, res));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((r) => server?.close(r));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("serves the page with the CSP, nosniff, no referrer, and revalidation by ETag", async () => {
    for (const path of ["/console/", "/console/index.html", "/console/?from=bookmark"]) {
      const a = await request(port, path);
      expect(a.status, path).toBe(200);
      expect(a.body).toBe(INDEX);
      expect(a.headers["content-type"]).toBe("text/html; charset=utf-8");
      expect(a.headers["cache-control"]).toBe("no-cache");
      expectSecurityHeaders(a);
    }
    const etag = (await request(port, "/console/")).headers.etag!;
    expect(etag).toMatch(/^"[\w-]{27}"$/);
    const again = await request(port, "/console/", "GET", { "if-none-match": etag });
    expect(again.status).toBe(304);
    expect(again.body).toBe("");
    expectSecurityHeaders(again);
  });

  it("serves the hashed assets as immutable, with their types", async () => {
    const js = await request(port, "/console/app-ABCDEFGH.js");
    expect(js).toMatchObject({ status: 200, body: SCRIPT });
    expect(js.headers["content-type"]).toBe("text/javascript; charset=utf-8");
    expect(js.headers["cache-control"]).toBe("public, max-age=31536000, immutable");
    expectSecurityHeaders(js);
    const css = await request(port, "/console/app-ABCDEFGH.css");
    expect(css.headers["content-type"]).toBe("text/css; charset=utf-8");
  });

  it("answers HEAD with the headers only", async () => {
    const a = await request(port, "/console/app-ABCDEFGH.js", "HEAD");
    expect(a.status).toBe(200);
    expect(a.body).toBe("");
    expect(a.headers["content-length"]).toBe(String(SCRIPT.length));
    expectSecurityHeaders(a);
  });

  it("redirects /console to /console/", async () => {
    const a = await request(port, "/console");
    expect(a.status).toBe(308);
    expect(a.headers.location).toBe("console/");
    expect(new URL(a.headers.location!, "http://h/console").pathname).toBe("/console/");
    expectSecurityHeaders(a);
  });

  it("takes GET and HEAD only", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      for (const path of ["/console/", "/console/app-ABCDEFGH.js", "/console/nope"]) {
        const a = await request(port, path, method);
        expect({ method, path, status: a.status }).toEqual({ method, path, status: 405 });
        expect(a.headers.allow).toBe("GET, HEAD");
        expectSecurityHeaders(a);
      }
    }
  });

  it("answers 404 for every path it does not have, with the same headers", async () => {
    for (const path of ["/console/nope.js", "/console/index.html/", "/console//index.html", "/console/notes.md", "/console/sub/secret.txt", "/console/sub/", "/console/linked.txt", "/console/app-abcdefgh.js"]) {
      const a = await request(port, path);
      expect({ path, status: a.status }).toEqual({ path, status: 404 });
      expect(a.headers["cache-control"]).toBe("no-store");
      expectSecurityHeaders(a);
    }
  });

  it("never reaches the filesystem from a request path", async () => {
    const packageJson = await readFile(join(ROOT, "package.json"), "utf8");
    const attempts = [
      "/console/../package.json",
      "/console/../../package.json",
      "/console/..%2fpackage.json",
      "/console/..%2F..%2Fpackage.json",
      "/console/%2e%2e/%2e%2e/package.json",
      "/console/.%2e/src/app.ts",
      "/console/..\\..\\package.json",
      `/console/${encodeURIComponent(join(ROOT, "package.json"))}`,
      "/console/%00index.html",
      "/console/sub%2fsecret.txt",
    ];
    for (const path of attempts) {
      const a = await request(port, path);
      expect({ path, status: a.status }).toEqual({ path, status: 404 });
      expect(a.body).not.toContain(packageJson.slice(0, 40));
      expect(a.body).not.toContain("in a subdirectory");
    }
  });

  it("leaves every other path to the other routes", async () => {
    expect((await request(port, "/healthz")).status).toBe(200);
    const other = await request(port, "/consoles");
    expect(other.status).toBe(404);
    expect(other.headers["content-security-policy"]).toBeUndefined();
    const route = consoleRoute(consoleFiles([["index.html", Buffer.from(INDEX)]]));
    const untouched = { writeHead: () => expect.unreachable(), end: () => expect.unreachable() };
    expect(route({ url: "/healthz", method: "GET", headers: {} } as never, untouched as never)).toBe(false);
    expect(route({ url: "/console-x/", method: "GET", headers: {} } as never, untouched as never)).toBe(false);
  });

  it("says so when the console has not been built", async () => {
    expect(loadConsoleFiles(join(dir, "missing"))).toBeUndefined();
    expect(loadConsoleFiles(join(dir, "sub"))).toBeUndefined(); // no index.html
    const routes = httpRoutes({ jwks: () => [], ready: () => true, console: consoleRoute(undefined) });
    const unbuilt = http.createServer((req, res) => routes(req, res));
    await new Promise<void>((r) => unbuilt.listen(0, "127.0.0.1", r));
    try {
      const a = await request((unbuilt.address() as AddressInfo).port, "/console/");
      expect(a.status).toBe(503);
      expect(a.body).toMatch(/not built: run `npm run build`/);
      expectSecurityHeaders(a);
    } finally {
      await new Promise((r) => unbuilt.close(r));
    }
  });

  it("reads the built console from dist/console at the package root", () => {
    expect(defaultConsoleDir()).toBe(join(ROOT, "dist", "console") + "/");
  });
});

describe("the console's sources", () => {
  it("name, for each RPC the console calls, the permission the authority requires", () => {
    const authority = new Map([...METHOD_PERMISSIONS].map(([m, p]) => [`${m.parent.typeName}/${m.name}`, p]));
    for (const [rpc, permission] of Object.entries(CONSOLE_RPCS)) expect({ rpc, permission }).toEqual({ rpc, permission: authority.get(rpc) });
  });

  it("has a page without inline scripts, inline styles or event-handler attributes", async () => {
    const html = await readFile(join(ROOT, "console", "index.html"), "utf8");
    const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attrs, body] of scripts) {
      expect(attrs).toMatch(/\bsrc="/);
      expect(body!.trim()).toBe("");
    }
    expect(html).not.toMatch(/<style\b/i);
    expect(html).not.toMatch(/\sstyle\s*=/i);
    expect(html).not.toMatch(/\son[a-z]+\s*=/i);
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//i); // nothing from another origin
  });
});
