/**
 * The `tessera` command line against a real server (port 0, a callers file). Every command runs at least once as a
 * child process (`node --import tsx src/cli/main.ts`; hash-api-key also through bin/tessera.mjs and next to
 * scripts/hash-api-key.mjs): --json output parsed and checked, human output holding the key facts, the exit codes (0
 * done, 1 refused or inactive, 2 bad command line, 3 unreachable), tokens from stdin, `audit tail --follow` printing a
 * new event and ending on SIGINT. The variants (the other output form, help, more usage errors, refusals and
 * unreachable cases, TLS with --ca and client certificates, --protocol connect) run in-process through run(): the
 * same code minus src/cli/main.ts's few lines, without the second or more a child spends loading through tsx.
 *
 * Children run at most CHILDREN at a time, the cases concurrently. No output of any run may hold an API key.
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenType } from "../../gen/tessera/v1/common_pb.js";
import { InactiveReason } from "../../gen/tessera/v1/token_pb.js";
import { COMMANDS, run } from "../../src/cli/run.js";
import { createTesseraClient, type TesseraClient } from "../../src/client/index.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { freePort } from "../helpers/redis-server.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CHILDREN = 3;

const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");
const KEYS = { admin: newKey(), reader: newKey(), wrong: newKey() };
const ALL_PERMISSIONS = ["issue", "refresh", "revoke", "introspect", "sessions.read", "keys.read", "keys.rotate", "audit.read"];
const ISO = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/;
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

let dir: string;
let server: StartedServer;
let sdk: TesseraClient;
let readerKeyFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-cli-"));
  const callersFile = join(dir, "callers.json");
  await writeFile(
    callersFile,
    JSON.stringify({
      callers: [
        { name: "admin", api_keys: [{ sha256: sha256(KEYS.admin) }], permissions: ALL_PERMISSIONS },
        { name: "reader", api_keys: [{ sha256: sha256(KEYS.reader) }], permissions: ["introspect", "keys.read"] },
      ],
    }),
  );
  readerKeyFile = join(dir, "reader.key");
  await writeFile(readerKeyFile, `${KEYS.reader}\n`, { mode: 0o600 });
  server = await startServer({ TESSERA_CALLERS_FILE: callersFile });
  sdk = createTesseraClient({ baseUrl: server.url, apiKey: KEYS.admin });
}, 60_000);

afterAll(async () => {
  sdk?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------
// Running the command line

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  /** Added to the child's environment (TESSERA_URL and TESSERA_API_KEY default to the server and the admin key); undefined removes. */
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed (closed at once without it). */
  input?: string;
  /** The launcher instead of src/cli/main.ts. */
  bin?: boolean;
}

/** A tiny pool: at most n children at once. */
function pool(n: number): <T>(job: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (job) => {
    if (running >= n) await new Promise<void>((r) => waiting.push(r));
    running++;
    try {
      return await job();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}
const slot = pool(CHILDREN);

function childEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("TESSERA_")));
  Object.assign(env, { TESSERA_URL: server.url, TESSERA_API_KEY: KEYS.admin });
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function start(args: readonly string[], opts: RunOptions = {}) {
  const entry = opts.bin ? ["bin/tessera.mjs"] : ["--import", "tsx", "src/cli/main.ts"];
  const proc = spawn(process.execPath, [...entry, ...args], { cwd: ROOT, env: childEnv(opts.env), stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  proc.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
  proc.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
  proc.stdin.on("error", () => {}); // a child that exits before reading its stdin
  proc.stdin.end(opts.input ?? "");
  const exited = new Promise<Ran>((resolve) =>
    proc.once("close", (code, signal) => {
      noSecrets(stdout + stderr);
      resolve({ code, signal, stdout, stderr });
    }),
  );
  return { proc, exited, stdout: () => stdout, stderr: () => stderr };
}

/** Runs the command line as a child process and waits for it. */
function cli(args: readonly string[], opts: RunOptions = {}): Promise<Ran> {
  return slot(() => start(args, opts).exited);
}

/** Runs the command line in-process (run() with captured streams); env as for a child. */
async function inProcess(args: readonly string[], opts: { env?: Record<string, string | undefined>; input?: string; tty?: boolean } = {}): Promise<Ran> {
  let stdout = "";
  let stderr = "";
  const stdin = Object.assign(Readable.from(opts.input === undefined ? [] : [Buffer.from(opts.input)]), { isTTY: opts.tty ?? false });
  const code = await run(args, {
    env: childEnv(opts.env),
    stdin,
    out: (t) => void (stdout += t),
    err: (t) => void (stderr += t),
    signal: new AbortController().signal,
  });
  noSecrets(stdout + stderr);
  return { code, signal: null, stdout, stderr };
}

function noSecrets(output: string): void {
  for (const [name, key] of Object.entries(KEYS)) {
    if (output.includes(key)) throw new Error(`the output holds the ${name} API key:\n${output}`);
  }
}

const json = (r: Ran): any => {
  expect(r.stdout.trim().split("\n"), r.stderr).toHaveLength(1);
  return JSON.parse(r.stdout);
};
const lines = (r: Ran) => r.stdout.split("\n").filter((l) => l !== "");
const unique = (label: string) => `cli-${label}-${randomUUID().slice(0, 8)}`;

async function issue(subject: string, deviceId = "laptop-1") {
  const res = await sdk.tokens.issue({ subject, scopes: ["read"], client: { deviceId, userAgent: "cli-test/1" } });
  return { access: res.tokens!.accessToken, refresh: res.tokens!.refreshToken, sessionId: res.sessionId };
}

/** Waits until the audit trail holds `count` events of the subject (events are recorded just after the answer). */
async function settled(subject: string, count: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await sdk.audit.listAuditEvents({ subject })).events.length < count) {
    if (Date.now() > deadline) throw new Error(`fewer than ${count} audit events for ${subject}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits until check() holds, or fails after ms. */
async function within(ms: number, what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// ---------------------------------------------------------------------------------------------------------------

// Cases wait for a free child slot, so a case's time includes its wait: a generous timeout for each.
describe.concurrent("the tessera command line", { timeout: 180_000 }, () => {
  it("--help lists every command and discourages an API key on the command line; groups and commands have their own help", async () => {
    const r = await inProcess(["--help"]);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toContain(c.name);
    expect(r.stdout).toMatch(/--api-key KEY\s+the API key itself: discouraged/);
    expect(r.stdout).toContain("TESSERA_API_KEY");
    expect(r.stdout).toContain("--api-key-file");

    const keys = await inProcess(["keys", "--help"]);
    expect(keys.code).toBe(0);
    expect(keys.stdout).toMatch(/keys list[\s\S]*keys rotate[\s\S]*keys revoke KID/);
    const issueHelp = await inProcess(["issue", "-h"]);
    expect(issueHelp.stdout).toMatch(/--scope SCOPE .*repeatable/);
    expect(issueHelp.stdout).toContain("--claims JSON");
    expect((await inProcess(["--version"])).stdout).toMatch(/^tessera \d+\.\d+\.\d+/);
  });

  it("a bad command line exits 2, with the message and a hint on stderr", async () => {
    const [unknown, badOption] = await Promise.all([cli(["frobnicate"]), inProcess(["keys", "list", "--immediate"])]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('"frobnicate" is not a command');
    expect(unknown.stderr).toContain('hint: run "tessera --help"');
    expect(unknown.stdout).toBe("");
    expect(badOption.code).toBe(2);
    expect(badOption.stderr).toContain('--immediate is not an option of "tessera keys list"');
    expect(badOption.stderr).toContain('hint: run "tessera keys list --help"');

    const cases: [string[], RegExp, { tty?: boolean; env?: Record<string, string | undefined> }?][] = [
      [[], /no command given/],
      [["--bogus"], /Unknown option '--bogus'/],
      [["issue"], /needs SUBJECT/],
      [["issue", "a", "b"], /at most SUBJECT, not "b"/],
      [["issue", "a", "--claims", "{bad"], /--claims: not JSON/],
      [["issue", "a", "--claims", "[1]"], /--claims: must be a JSON object/],
      [["issue", "a", "--access-ttl", "soon"], /--access-ttl: "soon" is not a duration/],
      [["introspect", "t", "--audience", "a", "--audience", "b"], /--audience may be given once/],
      [["introspect"], /needs a token: as an argument, or on stdin/, { tty: true }],
      [["introspect", "-"], /no token on stdin/],
      [["revoke"], /exactly one of --token, --session or --subject/],
      [["revoke", "--session", "s", "--subject", "x"], /exactly one of/],
      [["sessions"], /"sessions" needs a command/],
      [["sessions", "drop"], /"sessions drop" is not a command/],
      [["keys", "revoke", "kid"], /needs --reason/],
      [["audit", "tail", "--type", "nope"], /--type: "nope" is not an audit event type \(token_issued,/],
      [["audit", "tail", "--min-severity", "loud"], /--min-severity: "loud" is not one of info, notice, warning, critical/],
      [["audit", "tail", "--since", "yesterday"], /--since: "yesterday" is neither a duration/],
      [["audit", "tail", "--limit", "0"], /--limit: "0" is not a number from 1 to 500/],
      [["audit", "tail", "--interval", "1s"], /--interval goes with --follow/],
      [["health", "--protocol", "carrier-pigeon"], /--protocol: "carrier-pigeon" is neither grpc nor connect/],
      [["health", "--url", "ftp://example.com"], /must be http:\/\/ or https:\/\//],
      [["health", "--ca", "/nonexistent.pem"], /--ca, --cert and --key need an https:\/\/ URL/],
      [["health", "--url", "https://127.0.0.1:1", "--ca", "/nonexistent.pem"], /--ca: cannot read "\/nonexistent.pem" \(ENOENT\)/],
      [["keys", "list", "--api-key-file", "/nonexistent"], /--api-key-file: cannot read/],
      [["keys", "list", "--api-key-file", "/dev/null", "--api-key", "x"], /not both/],
      [["keys", "list"], /the API key from TESSERA_API_KEY is empty or contains whitespace/, { env: { TESSERA_API_KEY: "two words" } }],
      [["hash-api-key", "extra"], /takes no arguments, not "extra"/],
    ];
    for (const [args, message, opts] of cases) {
      const r = await inProcess(args, opts);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr, args.join(" ")).toMatch(message);
      expect(r.stderr, args.join(" ")).toContain("hint: run");
      expect(r.stdout, args.join(" ")).toBe("");
    }
  });

  it("issue: --json is the IssueResponse; the human form shows the session, both tokens and ISO expiries", async () => {
    const subject = unique("issue");
    const [j, human] = await Promise.all([
      cli([
        "issue", subject, "--json", "--scope", "read", "--scope", "write", "--audience", "api-a", "--claims", '{"tenant":"b","n":2}',
        "--device-id", "dev-9", "--user-agent", "cli-test/2", "--ip", "198.51.100.4", "--platform", "web", "--access-ttl", "5m",
        "--refresh-ttl", "1h",
      ]),
      inProcess(["issue", subject]),
    ]);
    expect(j.code, j.stderr).toBe(0);
    const res = json(j);
    expect(res.tokens.accessToken).toMatch(JWT);
    expect(res.tokens.refreshToken).toMatch(JWT);
    expect(res.tokens.tokenType).toBe("Bearer");
    expect(res.sessionId).toMatch(/^[A-Za-z0-9_-]{38}$/);
    const ttl = Date.parse(res.tokens.accessExpiresAt) - Date.now();
    expect(ttl).toBeGreaterThan(4 * 60_000);
    expect(ttl).toBeLessThanOrEqual(5 * 60_000);
    expect(Date.parse(res.tokens.refreshExpiresAt) - Date.now()).toBeLessThanOrEqual(3_600_000);
    const seen = await sdk.tokens.introspect({ token: res.tokens.accessToken, audience: "api-a" });
    expect(seen.active).toBe(true);
    expect(seen.scopes).toEqual(["read", "write"]);
    expect(seen.claims).toEqual({ tenant: "b", n: 2 });
    const session = (await sdk.sessions.getSession({ sessionId: res.sessionId })).session!;
    expect(session.client).toMatchObject({ deviceId: "dev-9", userAgent: "cli-test/2", ip: "198.51.100.4", platform: "web" });

    expect(human.code, human.stderr).toBe(0);
    const sessionId = /^session\s+(\S+)$/m.exec(human.stdout)?.[1];
    expect(sessionId).toMatch(/^[A-Za-z0-9_-]{38}$/);
    expect(human.stdout).toMatch(/^access token\s+\S+\.\S+\.\S+$/m);
    expect(human.stdout).toMatch(/^refresh token\s+\S+\.\S+\.\S+$/m);
    expect(human.stdout).toMatch(new RegExp(`^access expires\\s+${ISO.source}$`, "m"));
    expect((await sdk.sessions.getSession({ sessionId: sessionId! })).session?.subject).toBe(subject);
  });

  it("introspect: active exits 0, inactive 1; the token from an argument, from '-' or piped into stdin", async () => {
    const subject = unique("introspect");
    const t = await issue(subject);
    const [arg, dash, piped, audience] = await Promise.all([
      inProcess(["introspect", t.access]),
      cli(["introspect", "-", "--json"], { input: `${t.access}\n` }),
      cli(["introspect", "--refresh", "--json"], { input: t.refresh }),
      inProcess(["introspect", "--audience", "someone-else", "--json"], { input: t.access }),
    ]);
    expect(arg.code, arg.stderr).toBe(0);
    expect(arg.stdout).toMatch(/^active\s+yes$/m);
    expect(arg.stdout).toMatch(new RegExp(`^subject\\s+${subject}$`, "m"));
    expect(arg.stdout).toMatch(/^type\s+access$/m);
    expect(arg.stdout).toMatch(new RegExp(`^expires at\\s+${ISO.source}$`, "m"));
    expect(arg.stdout).toContain(t.sessionId);
    // Tokens are printed only by issue and refresh, whose result they are.
    for (const r of [arg, dash, piped, audience]) expect(r.stdout + r.stderr).not.toMatch(new RegExp(`${t.access}|${t.refresh}`));

    expect(dash.code, dash.stderr).toBe(0);
    expect(json(dash)).toMatchObject({ active: true, subject, scopes: ["read"], sessionId: t.sessionId, tokenType: "TOKEN_TYPE_ACCESS" });
    expect(piped.code, piped.stderr).toBe(0);
    expect(json(piped)).toMatchObject({ active: true, subject, tokenType: "TOKEN_TYPE_REFRESH" });
    expect(audience.code).toBe(1);
    expect(JSON.parse(audience.stdout)).toMatchObject({ active: false, inactiveReason: "INACTIVE_REASON_WRONG_AUDIENCE" });

    const garbage = await inProcess(["introspect", "not-a-token"]);
    expect(garbage.code).toBe(1);
    expect(garbage.stdout).toBe("active  no (MALFORMED)\n");
    const wrongType = await inProcess(["introspect", "--json"], { input: t.refresh });
    expect(wrongType.code).toBe(1);
    expect(JSON.parse(wrongType.stdout).inactiveReason).toBe("INACTIVE_REASON_WRONG_TYPE");
  });

  it("refresh rotates the refresh token read from stdin; the old one is then ROTATED", async () => {
    const t = await issue(unique("refresh"), "phone-2");
    const r = await cli(["refresh", "--device-id", "phone-2", "--user-agent", "cli-test/1", "--json"], { input: `${t.refresh}\n` });
    expect(r.code, r.stderr).toBe(0);
    const res = json(r);
    expect(res.sessionId).toBe(t.sessionId);
    expect(res.tokens.refreshToken).toMatch(JWT);
    expect(res.tokens.refreshToken).not.toBe(t.refresh);
    const old = await sdk.tokens.introspect({ token: t.refresh, expectedType: TokenType.REFRESH });
    expect(old.inactiveReason).toBe(InactiveReason.ROTATED);
    expect((await sdk.tokens.introspect({ token: res.tokens.refreshToken, expectedType: TokenType.REFRESH })).active).toBe(true);

    const human = await inProcess(["refresh", "--device-id", "phone-2", "--user-agent", "cli-test/1"], { input: res.tokens.refreshToken });
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^session\\s+${t.sessionId}$`, "m"));
    expect(human.stdout).toMatch(/^refresh token\s+\S+\.\S+\.\S+$/m);
  });

  it("revoke: a token (from stdin), a session, every session of a subject", async () => {
    const subject = unique("revoke");
    const [a, b] = [await issue(subject, "d-a"), await issue(subject, "d-b")];
    await issue(subject, "d-c");
    const token = await cli(["revoke", "--token", "-", "--reason", "cli test", "--json"], { input: a.access });
    expect(token.code, token.stderr).toBe(0);
    expect(json(token)).toEqual({ sessionsRevoked: 0, tokenRevoked: true });
    expect(token.stdout + token.stderr).not.toContain(a.access);
    expect((await sdk.tokens.introspect({ token: a.access })).inactiveReason).toBe(InactiveReason.REVOKED);

    const session = await inProcess(["revoke", "--session", b.sessionId, "--json"]);
    expect(session.code, session.stderr).toBe(0);
    expect(JSON.parse(session.stdout)).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    const all = await inProcess(["revoke", "--subject", subject]);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/^sessions revoked\s+2$/m);
    expect(all.stdout).toMatch(/^token revoked\s+no$/m);
    expect((await sdk.sessions.listSessions({ subject })).sessions).toEqual([]);

    // Session ids (base64url) may start with "-": taken as a value and as an argument, not as an option.
    const dashed = `-${b.sessionId.slice(1)}`;
    // "--" and an id (a kid or session id can begin so) as a positional argument too, while an unknown option is not.
    const doubleDashed = `--${b.sessionId.slice(2)}`;
    for (const args of [["revoke", "--session", dashed], ["sessions", "get", dashed], ["revoke", "--session", doubleDashed], ["sessions", "get", doubleDashed]]) {
      const r = await inProcess(args);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).not.toBe(2);
      expect(r.stderr).not.toContain("hint: run");
    }
    const typo = await inProcess(["sessions", "get", "--verbose", b.sessionId]);
    expect(typo.code).toBe(2);
  });

  it("sessions list and get; get of an ended session is NOT_FOUND, exit 1", async () => {
    const subject = unique("sessions");
    const one = await issue(subject, "tablet-1");
    const two = await issue(subject, "watch-2");
    const [listed, got] = await Promise.all([cli(["sessions", "list", subject, "--json"]), inProcess(["sessions", "get", one.sessionId])]);
    expect(listed.code, listed.stderr).toBe(0);
    const sessions = json(listed).sessions as { sessionId: string; subject: string; client: { deviceId: string } }[];
    expect(sessions.map((s) => s.sessionId).sort()).toEqual([one.sessionId, two.sessionId].sort());
    expect(sessions.map((s) => s.client.deviceId).sort()).toEqual(["tablet-1", "watch-2"]);
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toMatch(new RegExp(`^session\\s+${one.sessionId}$`, "m"));
    expect(got.stdout).toMatch(new RegExp(`^subject\\s+${subject}$`, "m"));
    expect(got.stdout).toMatch(/^device\s+tablet-1$/m);
    expect(got.stdout).toMatch(new RegExp(`^last used\\s+${ISO.source}$`, "m"));

    const table = await inProcess(["sessions", "list", subject]);
    expect(table.stdout).toMatch(/^SESSION\s+DEVICE\s+PLATFORM\s+IP\s+LAST USED\s+EXPIRES\s+USER AGENT$/m);
    expect(table.stdout).toContain(one.sessionId);
    expect(table.stdout).toContain("watch-2");
    expect((await inProcess(["sessions", "list", unique("nobody")])).stdout).toMatch(/^no live sessions for cli-nobody-/);

    await sdk.tokens.revoke({ target: { case: "sessionId", value: one.sessionId } });
    const ended = await cli(["sessions", "get", one.sessionId]);
    expect(ended.code).toBe(1);
    expect(ended.stderr).toMatch(/^tessera sessions get: NOT_FOUND: /);
    expect(ended.stdout).toBe("");
  });

  it("keys: rotate --immediate, rotate, revoke a key that never signed, list", async () => {
    // The only case that changes the key set. The revoked key never signed, so no other case's token is touched.
    const immediate = await cli(["keys", "rotate", "--immediate", "--json"]);
    expect(immediate.code, immediate.stderr).toBe(0);
    const current = json(immediate).key;
    expect(current).toMatchObject({ state: "KEY_STATE_CURRENT", signing: true, alg: "ES256" });
    const next = await inProcess(["keys", "rotate", "--json"]);
    expect(next.code, next.stderr).toBe(0);
    const waiting = JSON.parse(next.stdout).key;
    expect(waiting).toMatchObject({ state: "KEY_STATE_NEXT", signing: false });
    expect(Date.parse(waiting.activatesAt)).toBeGreaterThan(Date.now());

    const revoked = await cli(["keys", "revoke", waiting.kid, "--reason", "cli test", "--json"]);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(json(revoked)).toMatchObject({ revoked: { kid: waiting.kid, state: "KEY_STATE_REVOKED" }, signing: { kid: current.kid } });

    const listed = await cli(["keys", "list", "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    const keys = json(listed).keys as { kid: string; state: string; signing: boolean }[];
    expect(keys.find((k) => k.kid === waiting.kid)?.state).toBe("KEY_STATE_REVOKED");
    expect(keys.filter((k) => k.signing).map((k) => k.kid)).toEqual([current.kid]);

    const table = await inProcess(["keys", "list"]);
    expect(table.stdout).toMatch(/^KID\s+ALG\s+STATE\s+SIGNING\s+CREATED\s+ACTIVATES\s+RETIRED\s+.*REVOKED$/m);
    expect(table.stdout).toMatch(new RegExp(`^${current.kid}\\s+ES256\\s+current\\s+yes\\s+${ISO.source}`, "m"));
    expect(table.stdout).toMatch(new RegExp(`^${waiting.kid}\\s+ES256\\s+revoked\\s+no\\s`, "m"));
    const rotateHuman = await inProcess(["keys", "rotate"]);
    expect(rotateHuman.stdout).toMatch(/^state\s+next$/m);
    expect(rotateHuman.stdout).toMatch(new RegExp(`^activates\\s+${ISO.source}$`, "m"));
  });

  it("audit tail: the latest events oldest first, filtered; --json one event per line", async () => {
    const subject = unique("audit");
    await issue(subject, "dev-audit");
    await sdk.tokens.revoke({ target: { case: "subject", value: subject }, reason: "cli audit test" });
    await settled(subject, 2);
    const [all, filtered] = await Promise.all([
      cli(["audit", "tail", "--subject", subject, "--json"]),
      inProcess(["audit", "tail", "--subject", subject, "--type", "subject_revoked", "--min-severity", "notice", "--since", "5m"]),
    ]);
    expect(all.code, all.stderr).toBe(0);
    const events = lines(all).map((l) => JSON.parse(l));
    expect(events.map((e) => e.type)).toEqual(["AUDIT_EVENT_TYPE_TOKEN_ISSUED", "AUDIT_EVENT_TYPE_SUBJECT_REVOKED"]);
    expect(events[0]).toMatchObject({ subject, caller: "admin", deviceId: "dev-audit", severity: "AUDIT_SEVERITY_INFO" });
    expect(events[1].detail).toMatchObject({ reason: "cli audit test" });

    expect(filtered.code, filtered.stderr).toBe(0);
    expect(lines(filtered)).toHaveLength(1);
    expect(lines(filtered)[0]).toMatch(new RegExp(`^${ISO.source}  NOTICE\\s+subject_revoked\\s+subject=${subject} caller=admin .*reason="cli audit test"`));

    const newest = await inProcess(["audit", "tail", "--subject", subject, "--limit", "1", "--json"]);
    expect(lines(newest).map((l) => JSON.parse(l).type)).toEqual(["AUDIT_EVENT_TYPE_SUBJECT_REVOKED"]);
    const future = await inProcess(["audit", "tail", "--subject", subject, "--since", new Date(Date.now() + 3_600_000).toISOString()]);
    expect(future.code).toBe(0);
    expect(future.stdout).toBe("");
    const warnings = await inProcess(["audit", "tail", "--subject", subject, "--min-severity", "warning"]);
    expect(warnings.stdout).toBe("");
  });

  it("audit tail --follow prints a new event within a bounded wait, and ends with 0 on SIGINT", async () => {
    const subject = unique("follow");
    await issue(subject, "before");
    await slot(async () => {
      const child = start(["audit", "tail", "--follow", "--interval", "200ms", "--subject", subject, "--json"]);
      try {
        await within(30_000, "the event that was there before", () => child.stdout().includes('"deviceId":"before"'));
        await issue(subject, "after");
        await within(10_000, "the new event", () => child.stdout().includes('"deviceId":"after"'));
      } finally {
        child.proc.kill("SIGINT");
      }
      const r = await child.exited;
      expect(r.code, r.stderr).toBe(0);
      const events = lines(r).map((l) => JSON.parse(l));
      expect(events.map((e) => e.deviceId)).toEqual(["before", "after"]);
    });
  });

  it("health: SERVING exits 0; a service the server does not know is NOT_FOUND, exit 1", async () => {
    const [plain, service] = await Promise.all([
      cli(["health"], { env: { TESSERA_API_KEY: undefined } }),
      inProcess(["health", "tessera.v1.TokenService", "--json"]),
    ]);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toBe("SERVING\n");
    expect(service.code, service.stderr).toBe(0);
    expect(JSON.parse(service.stdout)).toEqual({ status: "SERVING" });
    const unknown = await inProcess(["health", "no.such.Service"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/NOT_FOUND/);
  });

  it("hash-api-key prints what scripts/hash-api-key.mjs prints; --new makes a key and its hash", async () => {
    const key = newKey();
    const script = slot(
      () =>
        new Promise<string>((resolve, reject) => {
          const p = spawn(process.execPath, ["scripts/hash-api-key.mjs"], { cwd: ROOT, env: childEnv() });
          let out = "";
          p.stdout.setEncoding("utf8").on("data", (c: string) => (out += c));
          p.once("error", reject);
          p.once("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`script exited ${code}`))));
          p.stdin.end(`${key}\n`);
        }),
    );
    const [viaCli, viaBin, fresh, scripted] = await Promise.all([
      cli(["hash-api-key"], { input: `${key}\n` }),
      cli(["hash-api-key"], { input: key, bin: true }),
      inProcess(["hash-api-key", "--new"]),
      script,
    ]);
    expect(viaCli.code, viaCli.stderr).toBe(0);
    expect(viaCli.stdout).toBe(`${sha256(key)}\n`);
    expect(scripted).toBe(viaCli.stdout);
    expect(viaBin.code, viaBin.stderr).toBe(0);
    expect(viaBin.stdout).toBe(viaCli.stdout);
    expect(fresh.code).toBe(0);
    const made = /^key: ([A-Za-z0-9_-]{43})\n$/.exec(fresh.stderr)?.[1];
    expect(made).toBeDefined();
    expect(fresh.stdout).toBe(`${sha256(made!)}\n`);

    const empty = await inProcess(["hash-api-key"], { input: "\n" });
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain("empty or contains whitespace");
  });

  it("refusals exit 1: no API key, a wrong one, a missing permission, a bad argument", async () => {
    const [none, wrong, denied, invalid] = await Promise.all([
      inProcess(["keys", "list"], { env: { TESSERA_API_KEY: undefined } }),
      inProcess(["keys", "list", "--api-key", KEYS.wrong]),
      inProcess(["keys", "rotate", "--api-key-file", readerKeyFile]),
      inProcess(["issue", unique("invalid"), "--ip", "not-an-ip"]),
    ]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/^tessera keys list: UNAUTHENTICATED: /);
    expect(none.stderr).toContain("hint: no API key given: set TESSERA_API_KEY or use --api-key-file");
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/UNAUTHENTICATED/);
    expect(wrong.stderr).not.toContain("hint: no API key");
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^tessera keys rotate: PERMISSION_DENIED: /);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^tessera issue: INVALID_ARGUMENT: .*ip/);
    for (const r of [none, wrong, denied, invalid]) expect(r.stdout).toBe("");
    // The reader's key file works for what the reader may do.
    const allowed = await inProcess(["keys", "list", "--json", "--api-key-file", readerKeyFile]);
    expect(allowed.code, allowed.stderr).toBe(0);
  });

  it("unreachable exits 3: nothing listening, or no answer before --timeout", async () => {
    const silent = net.createServer((socket) => socket.on("error", () => {}));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    try {
      const closed = `http://127.0.0.1:${await freePort()}`;
      const hanging = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
      const [refused, introspect, timedOut] = await Promise.all([
        cli(["health", "--url", closed]),
        inProcess(["introspect", "some-token"], { env: { TESSERA_URL: closed } }),
        inProcess(["keys", "list", "--url", hanging, "--timeout", "500ms"]),
      ]);
      expect(refused.code).toBe(3);
      expect(refused.stderr).toContain(`tessera health: cannot reach Tessera (or Tessera cannot reach its store) at ${closed}: UNAVAILABLE: `);
      expect(refused.stderr).toContain("ECONNREFUSED");
      expect(introspect.code).toBe(3);
      expect(introspect.stderr).toContain("UNAVAILABLE");
      expect(introspect.stderr).not.toContain("some-token");
      expect(timedOut.code).toBe(3);
      expect(timedOut.stderr).toMatch(/no answer in time .*DEADLINE_EXCEEDED/);
    } finally {
      silent.close();
    }
  });

  it("--protocol connect speaks the Connect protocol to the same server", async () => {
    const t = await issue(unique("connect"));
    const r = await inProcess(["introspect", "--protocol", "connect", "--json"], { input: t.access });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ active: true, sessionId: t.sessionId });
    const issued = await inProcess(["issue", unique("connect"), "--protocol", "connect", "--json"]);
    expect(issued.code, issued.stderr).toBe(0);
    expect(JSON.parse(issued.stdout).tokens.accessToken).toMatch(JWT);
  });

  describe("over TLS", () => {
    let pki: TestPki;
    let tlsServer: StartedServer;
    let url: string;
    beforeAll(async () => {
      pki = await makePki();
      const callersFile = join(pki.dir, "callers.json");
      await writeFile(
        callersFile,
        JSON.stringify({ callers: [{ name: "ops", mtls: { cn: "ops-console" }, permissions: ["keys.read"] }] }),
      );
      tlsServer = await startServer({
        TESSERA_TLS_CERT: pki.server.certPath,
        TESSERA_TLS_KEY: pki.server.keyPath,
        TESSERA_TLS_CLIENT_CA: pki.caPath,
        TESSERA_CALLERS_FILE: callersFile,
      });
      url = `https://127.0.0.1:${tlsServer.port}`;
    }, 60_000);
    afterAll(async () => {
      await tlsServer?.close();
      await pki?.remove();
    });

    it("--ca trusts the server; without it the server is unreachable (exit 3); a client certificate is a caller", async () => {
      const [trusted, mtls] = await Promise.all([
        inProcess(["health", "--url", url, "--ca", pki.caPath]),
        inProcess(["keys", "list", "--json", "--cert", pki.ops.certPath, "--key", pki.ops.keyPath], {
          env: { TESSERA_URL: url, TESSERA_CA: pki.caPath, TESSERA_API_KEY: undefined },
        }),
      ]);
      expect(trusted.code, trusted.stderr).toBe(0);
      expect(trusted.stdout).toBe("SERVING\n");
      expect(mtls.code, mtls.stderr).toBe(0);
      expect(JSON.parse(mtls.stdout).keys.length).toBeGreaterThan(0);

      const untrusted = await inProcess(["health", "--url", url]);
      expect(untrusted.code).toBe(3);
      expect(untrusted.stderr).toMatch(/cannot reach Tessera.*(certificate|CERT)/i);
      const noCert = await inProcess(["keys", "list", "--url", url, "--ca", pki.caPath], { env: { TESSERA_API_KEY: undefined } });
      expect(noCert.code).toBe(1);
      expect(noCert.stderr).toMatch(/UNAUTHENTICATED/);
    });
  });
});
