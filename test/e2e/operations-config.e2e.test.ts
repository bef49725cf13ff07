/**
 * Configuration hygiene, on real processes: every TESSERA_* variable a program does not read is a warning at start
 * naming the closest one it does read (the authority and the sidecar each by their own declarations); the start line
 * gives the version and the effective configuration without secrets; and the authority reloads its callers file on
 * SIGHUP: a good file replaces the callers, a broken one keeps them and the log says where the file is wrong.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { Code, codeOf } from "../helpers/clients.js";
import { spawnAuthority, spawnSidecar, startServer, type SpawnedAuthority, type StartedServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const VERSION = "0.1.0"; // package.json
const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");

interface Line {
  level: string;
  msg: string;
  [field: string]: unknown;
}
const parsed = (proc: SpawnedAuthority): Line[] => proc.stdout.map((l) => JSON.parse(l) as Line);
/** The unknown-variable warnings about what a test set (the runner's own environment may hold TESSERA_* variables too). */
const variableWarnings = (proc: SpawnedAuthority): Line[] =>
  parsed(proc).filter((l) => l.level === "warn" && typeof l.variable === "string" && process.env[l.variable] === undefined);

let dir: string;
const procs: SpawnedAuthority[] = [];
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-config-"));
});
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.kill("SIGKILL")));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("at start", () => {
  it("the authority warns of a misspelled variable, naming the right one, and of the sidecar's; logs version and configuration without the Redis password", async () => {
    const password = `pw-${randomBytes(12).toString("hex")}`;
    const redisUrl = new URL(inject("redisUrl"));
    redisUrl.password = password; // the test Redis needs none; ioredis carries on with a warning
    const proc = await spawnAuthority({
      TESSERA_LOG_LEVEL: "info",
      TESSERA_REDIS_URL: redisUrl.href,
      TESSERA_REDIS_PREFIX: `tessera-test:config:${randomBytes(6).toString("hex")}:`,
      TESSERA_ACESS_TTL: "5m", // misspelled: ignored, so the default 15m holds
      TESSERA_SIDECAR_MAX_STALENESS: "2s", // the sidecar's, not the authority's
    });
    procs.push(proc);
    const lines = parsed(proc);
    const start = lines.find((l) => l.msg.startsWith("tessera ") && l.msg.includes("starting"));
    expect(start).toMatchObject({ level: "info", version: VERSION, node: process.version });
    expect(start!.msg).toBe(`tessera ${VERSION} starting (Node.js ${process.version})`);
    const config = start!.config as Record<string, string | null>;
    expect(config).toMatchObject({
      TESSERA_LISTEN: `127.0.0.1:${proc.port}`,
      TESSERA_ACCESS_TTL: "15m",
      TESSERA_SHUTDOWN_DELAY: "0s",
      TESSERA_CALLERS_FILE: null,
      TESSERA_REDIS_URL: `redis://:***@${redisUrl.host}${redisUrl.pathname}`,
    });
    expect(Object.keys(config)).not.toContain("TESSERA_ACESS_TTL");

    const warnings = variableWarnings(proc);
    expect(warnings).toEqual([
      expect.objectContaining({ variable: "TESSERA_ACESS_TTL", closest: "TESSERA_ACCESS_TTL", msg: "unknown variable TESSERA_ACESS_TTL (ignored): did you mean TESSERA_ACCESS_TTL?" }),
      expect.objectContaining({ variable: "TESSERA_SIDECAR_MAX_STALENESS", readBy: "the sidecar" }),
    ]);
    expect(warnings[1]!.msg).toMatch(/^TESSERA_SIDECAR_MAX_STALENESS is a variable of the sidecar, not of tessera \(ignored here/);
    // The password is nowhere in the output.
    expect([...proc.stdout, ...proc.stderr].join("\n")).not.toContain(password);
  });

  it("the sidecar warns by its own declarations (an authority-only variable is unknown to it) and hides its API key", async () => {
    const authority: StartedServer = await startServer({});
    try {
      const apiKey = newKey();
      const proc = await spawnSidecar({
        TESSERA_LOG_LEVEL: "info",
        TESSERA_AUTHORITY_URL: authority.url,
        TESSERA_AUTHORITY_API_KEY: apiKey,
        TESSERA_SIDECAR_MAX_STALENES: "5s", // misspelled
        TESSERA_SIGNING_ALG: "EdDSA", // the authority's
      });
      procs.push(proc);
      const lines = parsed(proc);
      const start = lines.find((l) => l.msg.startsWith("tessera sidecar ") && l.msg.includes("starting"));
      expect(start).toMatchObject({ version: VERSION, node: process.version });
      expect(start!.config).toMatchObject({
        TESSERA_AUTHORITY_URL: authority.url,
        TESSERA_AUTHORITY_API_KEY: "[redacted]",
        TESSERA_SIDECAR_MAX_STALENESS: "5s",
      });
      const warnings = variableWarnings(proc);
      expect(warnings).toEqual([
        expect.objectContaining({ variable: "TESSERA_SIDECAR_MAX_STALENES", closest: "TESSERA_SIDECAR_MAX_STALENESS" }),
        expect.objectContaining({ variable: "TESSERA_SIGNING_ALG", readBy: "the authority" }),
      ]);
      expect(warnings[0]!.msg).toContain("did you mean TESSERA_SIDECAR_MAX_STALENESS?");
      expect([...proc.stdout, ...proc.stderr].join("\n")).not.toContain(apiKey);
    } finally {
      await authority.close();
    }
  });
});

describe("SIGHUP reloads the callers file", () => {
  const keyA = newKey();
  const keyB = newKey();
  const callers = (...entries: Array<{ name: string; key: string; permissions?: string[] }>) =>
    JSON.stringify({
      callers: entries.map((e) => ({ name: e.name, api_keys: [{ sha256: sha256(e.key) }], permissions: e.permissions ?? ["issue", "introspect"] })),
    });

  /** Issue as the holder of `key`, on a connection of its own: the gRPC code. */
  async function issueAs(url: string, key: string): Promise<Code | "OK"> {
    const sessions = new Http2SessionManager(url);
    try {
      const tokens = createClient(TokenService, createGrpcTransport({ baseUrl: url, sessionManager: sessions }));
      return await tokens.issue({ subject: "hup" }, { headers: { authorization: `Bearer ${key}` } }).then(() => "OK" as const, (e: unknown) => codeOf(Promise.reject(e)));
    } finally {
      sessions.abort();
    }
  }

  it("a good file lets the new key in and the old out; a broken one keeps the callers and logs where it is wrong", async () => {
    const file = join(dir, "callers-hup.json");
    await writeFile(file, callers({ name: "alpha", key: keyA }));
    const proc = await spawnAuthority({ TESSERA_LOG_LEVEL: "info", TESSERA_CALLERS_FILE: file });
    procs.push(proc);
    expect(await issueAs(proc.url, keyA)).toBe("OK");
    expect(await issueAs(proc.url, keyB)).toBe(Code.Unauthenticated);

    const reloads = () => parsed(proc).filter((l) => l.msg === "callers file reloaded" || l.msg.startsWith("callers file not reloaded"));
    await writeFile(file, callers({ name: "beta", key: keyB }));
    hup(proc);
    await until(() => reloads().length === 1, 5_000, "the reload's log line");
    expect(reloads()[0]).toMatchObject({ level: "info", callers: ["beta"], file });
    expect(await issueAs(proc.url, keyB)).toBe("OK");
    expect(await issueAs(proc.url, keyA)).toBe(Code.Unauthenticated);

    // A broken file: a permission that does not exist. The callers in use stay.
    await writeFile(file, callers({ name: "gamma", key: keyA, permissions: ["isue"] }));
    hup(proc);
    await until(() => reloads().length === 2, 5_000, "the failed reload's log line");
    const failed = reloads()[1]!;
    expect(failed).toMatchObject({ level: "error", msg: "callers file not reloaded: keeping the callers in use", file });
    expect((failed.err as { message: string }).message).toMatch(/^TESSERA_CALLERS_FILE: callers\[0\]\.permissions\[0\]: "isue" is not a permission/);
    expect(await issueAs(proc.url, keyB)).toBe("OK");
    expect(await issueAs(proc.url, keyA)).toBe(Code.Unauthenticated);

    // Not JSON at all: the same, and the error says so.
    await writeFile(file, "{ not json");
    hup(proc);
    await until(() => reloads().length === 3, 5_000, "the second failed reload's log line");
    expect((reloads()[2]!.err as { message: string }).message).toMatch(/^TESSERA_CALLERS_FILE: ".*callers-hup\.json" is not JSON/);
    expect(await issueAs(proc.url, keyB)).toBe("OK");

    // The process is still the same one, serving.
    expect(proc.stderr.join("\n")).not.toMatch(/failed to start/);
  });

  it("open mode stays open: SIGHUP says there is nothing to reload", async () => {
    const proc = await spawnAuthority({ TESSERA_LOG_LEVEL: "info" });
    procs.push(proc);
    hup(proc);
    await until(() => parsed(proc).some((l) => l.msg.startsWith("SIGHUP: no TESSERA_CALLERS_FILE")), 5_000, "the open-mode warning");
    expect(await issueAs(proc.url, "anything")).toBe("OK");
  });
});

/** Sends SIGHUP without waiting for an exit (there must be none). */
function hup(proc: SpawnedAuthority): void {
  void proc.kill("SIGHUP");
}
