/**
 * The operator console in a real headless Chromium (Debian's package, driven by playwright-core), against a real
 * authority on port 0 with a callers file: sign in with a key, see the overview's charts and figures, find a subject,
 * revoke one of its sessions and log another subject out everywhere through the UI (each confirmed; a cancelled
 * confirmation changes nothing), then check through the API (gRPC) that the session is gone and its access token
 * inactive; see the revocation in the audit trail; rotate the keys; a key without `stats.read` sees a readable refusal;
 * a key the authority does not know goes back to the login. Throughout: the CSP is on every console response, no
 * request leaves the origin, no CSP violation, no page error, the key is nowhere but in memory. A screenshot of each
 * screen goes to docs/console/ (the README shows them).
 *
 * Chromium missing is a failure, not a skip: `.ci/run` installs it (apt-get install chromium).
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { chromium, type BrowserContext, type Page, type Request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildConsole } from "../../console/build.js";
import { KeyService, KeyState } from "../../gen/tessera/v1/key_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { InactiveReason, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { createApp, type App } from "../../src/app.js";
import { loadConfig } from "../../src/config/config.js";
import { createLogger } from "../../src/observability/logger.js";
import { CONSOLE_CSP } from "../../src/server/console.js";
import { Code, codeOf, connectTransport } from "../helpers/clients.js";

// The browser globals the functions handed to page.evaluate use: they run in the page (this project's type check has
// no DOM library), declared here for this file only.
interface PageElement {
  id: string;
  textContent: string | null;
}
declare const window: { cspViolations: string[] };
declare const document: {
  activeElement: PageElement | null;
  cookie: string;
  addEventListener(type: "securitypolicyviolation", listener: (e: { violatedDirective: string; blockedURI: string }) => void): void;
};
declare const localStorage: { length: number };
declare const sessionStorage: { length: number };
declare const location: { href: string };
declare function getComputedStyle(el: PageElement): { outlineStyle: string; outlineWidth: string };

const CHROMIUM = process.env.TESSERA_TEST_CHROMIUM ?? "/usr/bin/chromium";
const SHOTS = fileURLToPath(new URL("../../docs/console/", import.meta.url));

const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const KEYS = { operator: newKey(), gateway: newKey(), viewer: newKey() };
const as = (caller: keyof typeof KEYS): CallOptions => ({ headers: { authorization: `Bearer ${KEYS[caller]}` } });
const CALLERS = {
  callers: [
    // What the console's operator holds: every screen and action.
    {
      name: "operator",
      api_keys: [{ sha256: sha256(KEYS.operator) }],
      permissions: ["stats.read", "sessions.read", "revoke", "audit.read", "keys.read", "keys.rotate"],
    },
    // The service that logs users in, and the test's own view through the API.
    { name: "gateway", api_keys: [{ sha256: sha256(KEYS.gateway) }], permissions: ["issue", "refresh", "introspect", "sessions.read", "keys.read"] },
    // An operator without stats.read.
    { name: "viewer", api_keys: [{ sha256: sha256(KEYS.viewer) }], permissions: ["sessions.read", "audit.read", "keys.read"] },
  ],
};

const suffix = randomUUID().slice(0, 8);
const ALICE = `alice-${suffix}`;
const BOB = `bob-${suffix}`;
const PHONE = { deviceId: "alice-phone", userAgent: "tessera-app/3.1 (iPhone)", ip: "198.51.100.7", platform: "ios" };
const LAPTOP = { deviceId: "alice-laptop", userAgent: "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", ip: "203.0.113.66", platform: "web" };
const TABLET = { deviceId: "bob-tablet", userAgent: "tessera-app/3.1 (Android 15)", ip: "192.0.2.10", platform: "android" };
const CAROL = `carol-${suffix}`;
const DESKTOP = { deviceId: "carol-desktop", userAgent: "Mozilla/5.0 (Windows NT 10.0) Chrome/150.0", ip: "198.51.100.99", platform: "windows" };
const STRANGER = { deviceId: "unknown-device", userAgent: "curl/8.0", ip: "203.0.113.250", platform: "" };

/** A real authority on 127.0.0.1:0 (loadConfig validates the env, as in production), serving the console built into consoleDir. */
async function startAuthority(env: Record<string, string>, consoleDir: string): Promise<{ url: string; app: App }> {
  const config = loadConfig({ TESSERA_LISTEN: "127.0.0.1:0", TESSERA_LOG_LEVEL: "warn", ...env });
  const app = await createApp(config, { logger: createLogger(config.logLevel, { write: () => {} }), consoleDir });
  const { port } = await app.listen();
  return { url: `http://127.0.0.1:${port}`, app };
}

const NO_CHROMIUM = `Chromium not found at ${CHROMIUM}: the console's browser test needs Debian's chromium package (apt-get install chromium; .ci/run installs it), or TESSERA_TEST_CHROMIUM naming a Chromium binary`;

// A failed test of its own when Chromium is missing (the suite below then fails in its setup, and its tests would
// otherwise only count as skipped).
it("has a Chromium to drive", () => {
  expect(existsSync(CHROMIUM), NO_CHROMIUM).toBe(true);
});

describe("the operator console in Chromium", { timeout: 60_000 }, () => {
  let dir: string;
  let server: { url: string; app: App };
  let closeTransport: () => void;
  let tokens: Client<typeof TokenService>;
  let sessions: Client<typeof SessionService>;
  let keys: Client<typeof KeyService>;
  let context: BrowserContext;
  let page: Page;
  const requests: Request[] = [];
  const pageErrors: string[] = [];
  /** The access tokens and sessions made through the API. */
  const made: Record<"phone" | "laptop" | "tablet", { sessionId: string; accessToken: string }> = {} as never;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(NO_CHROMIUM);
    dir = await mkdtemp(join(tmpdir(), "tessera-console-"));
    // The same build as `npm run build`, of the sources as they are, into a directory of the test's own (dist/ is
    // left alone: `npm pack`'s prepare may be building it at the same time).
    await buildConsole(join(dir, "console"));
    const file = join(dir, "callers.json");
    await writeFile(file, JSON.stringify(CALLERS));
    server = await startAuthority({ TESSERA_CALLERS_FILE: file }, join(dir, "console"));
    const t = connectTransport("connect-grpc", server.url); // gRPC over HTTP/2: not the browser's protocol
    closeTransport = t.close;
    tokens = createClient(TokenService, t.transport);
    sessions = createClient(SessionService, t.transport);
    keys = createClient(KeyService, t.transport);

    // What the console will show: alice on a phone (refreshed once) and a laptop, bob on a tablet.
    const phone = await tokens.issue({ subject: ALICE, scopes: ["read"], client: PHONE }, as("gateway"));
    const refreshed = await tokens.refresh({ refreshToken: phone.tokens!.refreshToken, client: PHONE }, as("gateway"));
    const laptop = await tokens.issue({ subject: ALICE, scopes: ["read"], client: LAPTOP }, as("gateway"));
    const tablet = await tokens.issue({ subject: BOB, scopes: ["read"], client: TABLET }, as("gateway"));
    made.phone = { sessionId: phone.sessionId, accessToken: refreshed.tokens!.accessToken };
    made.laptop = { sessionId: laptop.sessionId, accessToken: laptop.tokens!.accessToken };
    made.tablet = { sessionId: tablet.sessionId, accessToken: tablet.tokens!.accessToken };
    // carol's session ends at once: her first refresh token comes back from another client after a rotation (reuse).
    const desktop = await tokens.issue({ subject: CAROL, scopes: ["read"], client: DESKTOP }, as("gateway"));
    await tokens.refresh({ refreshToken: desktop.tokens!.refreshToken, client: DESKTOP }, as("gateway"));
    expect(await codeOf(tokens.refresh({ refreshToken: desktop.tokens!.refreshToken, client: STRANGER }, as("gateway")))).toBe(Code.Unauthenticated);
    await server.app.audit.flush(); // the figures follow the stored audit events

    await mkdir(SHOTS, { recursive: true });
    await mkdir(join(dir, "profile"));
    context = await chromium.launchPersistentContext(join(dir, "profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
      viewport: { width: 1366, height: 900 },
      timeout: 60_000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    context.on("request", (r) => requests.push(r));
    page.on("pageerror", (err) => pageErrors.push(String(err)));
    // Recorded before the page's own scripts run (CDP injection is not subject to the page's CSP).
    await context.addInitScript(() => {
      window.cspViolations = [];
      document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    closeTransport?.();
    await server?.app.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  const figure = (key: string) => page.locator(`[data-figure="${key}"] dd`).first();
  const signIn = async (key: string) => {
    await page.locator("#api-key").fill(key);
    await page.locator("#api-key").press("Enter"); // the keyboard submits the form
  };

  it("serves the page with its CSP, and signs in with a key", async () => {
    const response = await page.goto(`${server.url}/console/`);
    expect(response?.status()).toBe(200);
    const headers = response!.headers();
    expect(headers["content-security-policy"]).toBe(CONSOLE_CSP);
    expect(headers["x-content-type-options"]).toBe("nosniff");
    expect(headers["referrer-policy"]).toBe("no-referrer");
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe("api-key");
    await signIn(KEYS.operator);
    await expect.poll(() => page.locator("#login").isHidden()).toBe(true);
    expect(await page.locator("#api-key").inputValue()).toBe(""); // the only copy is in the script's memory
    // Keyboard: the screen's first control is next in the tab order, and its focus is visible.
    await page.locator("#overview-window").waitFor();
    await page.keyboard.press("Tab");
    const focused = await page.evaluate(() => {
      const el = document.activeElement!;
      return { id: el.id, outline: getComputedStyle(el).outlineStyle, width: getComputedStyle(el).outlineWidth };
    });
    expect(focused).toEqual({ id: "overview-window", outline: "solid", width: "3px" });
  });

  it("shows the overview: charts, and the figures of what was done through the API", async () => {
    await page.locator("#chart-activity canvas").first().waitFor();
    for (const chart of ["chart-platforms", "chart-activity", "chart-security", "chart-durations"]) {
      expect(await page.locator(`#${chart} canvas`).count(), chart).toBeGreaterThan(0);
      const box = await page.locator(`#${chart} canvas`).first().boundingBox();
      expect(box!.width, chart).toBeGreaterThan(200);
    }
    expect(await figure("live-total").textContent()).toBe("3");
    expect(await figure("live-subjects").textContent()).toBe("2");
    expect(await figure("logins").textContent()).toBe("4");
    expect(await figure("refreshes").textContent()).toBe("2");
    expect(await figure("revocations").textContent()).toBe("0");
    expect(await figure("reuse-detections").textContent()).toBe("1");
    expect(await figure("ended").textContent()).toBe("1"); // carol's, by the reuse
    const platforms = await page.locator("#platform-table tbody tr").evaluateAll((rows) =>
      rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent)),
    );
    expect(platforms.sort()).toEqual([["android", "1"], ["ios", "1"], ["web", "1"]]);
    expect(await page.locator("#chart-platforms").getAttribute("aria-label")).toMatch(/ios 1/);
    // The hourly series' totals, as the chart's summary says.
    expect(await page.locator("#chart-activity").getAttribute("aria-label")).toMatch(/Logins 4, Refreshes 2, Revocations 0/);
    expect(await page.locator("#chart-security").getAttribute("aria-label")).toMatch(/Reuse detections 1, Lockouts 0, Alerts 0/);
    await shot("overview");
  });

  it("finds a subject and revokes one of its sessions, after a confirmation", async () => {
    await page.getByRole("button", { name: "Subjects" }).click();
    await page.locator("#subject-input").fill(ALICE);
    await page.locator("#subject-input").press("Enter");
    const rows = page.locator("#subject-sessions tbody tr");
    await expect.poll(() => rows.count()).toBe(2);
    const phoneRow = page.locator(`tr[data-session-id="${made.phone.sessionId}"]`);
    expect(await phoneRow.textContent()).toContain(PHONE.ip);
    expect(await phoneRow.textContent()).toContain("ios");
    expect(await page.locator(`tr[data-session-id="${made.laptop.sessionId}"]`).textContent()).toContain(LAPTOP.deviceId);
    await page.locator('#subject-activity [data-figure="risk-score"]').waitFor();

    // Cancelled: nothing happens.
    await page.locator(`tr[data-session-id="${made.laptop.sessionId}"] button`).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Cancel"); // Enter alone never confirms
    await page.keyboard.press("Escape");
    await expect.poll(() => page.locator("#subject-status").textContent()).toBe("Nothing revoked.");
    expect(await rows.count()).toBe(2);

    // Confirmed: the phone's session ends.
    await phoneRow.getByRole("button", { name: /Revoke the session on alice-phone/ }).click();
    await dialog.waitFor();
    expect(await dialog.textContent()).toContain("alice-phone");
    await dialog.getByRole("button", { name: "Revoke session" }).click();
    await expect.poll(() => page.locator("#subject-status").textContent()).toMatch(/Session on alice-phone revoked \(1 session ended\)/);
    await expect.poll(() => rows.count()).toBe(1);
    expect(await page.locator(`tr[data-session-id="${made.laptop.sessionId}"]`).count()).toBe(1);
    // The subject's recent events, read again after the revocation, show it.
    await expect.poll(() => page.locator("#subject-activity table.events").textContent()).toContain("session revoked");
    await shot("subject");
  });

  it("the revoked session is gone and its access token inactive, through the API", async () => {
    expect(await codeOf(sessions.getSession({ sessionId: made.phone.sessionId }, as("gateway")))).toBe(Code.NotFound);
    const list = await sessions.listSessions({ subject: ALICE }, as("gateway"));
    expect(list.sessions.map((s) => s.sessionId)).toEqual([made.laptop.sessionId]);
    const revoked = await tokens.introspect({ token: made.phone.accessToken }, as("gateway"));
    expect(revoked.active).toBe(false);
    expect(revoked.inactiveReason).toBe(InactiveReason.REVOKED);
    expect((await tokens.introspect({ token: made.laptop.accessToken }, as("gateway"))).active).toBe(true);
  });

  it("logs a subject out everywhere, after a confirmation", async () => {
    await page.locator("#subject-input").fill(BOB);
    await page.locator("#subject-input").press("Enter");
    await expect.poll(() => page.locator(`tr[data-session-id="${made.tablet.sessionId}"]`).count()).toBe(1);
    await page.locator("#logout-everywhere").click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Log out everywhere" }).click();
    await expect.poll(() => page.locator("#subject-status").textContent()).toMatch(/logged out everywhere \(1 session ended\)/);
    await page.locator("#no-sessions").waitFor();
    expect((await sessions.listSessions({ subject: BOB }, as("gateway"))).sessions).toEqual([]);
    expect((await tokens.introspect({ token: made.tablet.accessToken }, as("gateway"))).active).toBe(false);
  });

  it("shows the revocation in the audit trail, filtered", async () => {
    await page.getByRole("button", { name: "Audit trail" }).click();
    await page.locator("#audit-result table.events").waitFor();
    await page.locator("#audit-subject").fill(ALICE);
    await page.getByLabel("session revoked").check();
    await page.getByRole("button", { name: "Search" }).click();
    await expect.poll(() => page.locator("#audit-result").textContent()).toMatch(/Page 1: 1 event,/);
    const row = page.locator("#audit-result table.events tbody tr");
    const text = await row.textContent();
    expect(text).toContain("session revoked");
    expect(text).toContain(ALICE);
    expect(text).toContain("operator"); // the console's caller
    expect(text).toContain("revoked from the operator console"); // the reason given in the dialog
    expect(await row.locator("code").getAttribute("title")).toBe(made.phone.sessionId);
    await page.locator('#audit-result [data-figure="risk-score"]').waitFor(); // a subject filter reports its risk
    await shot("audit");
  });

  it("lists the signing keys and rotates them, after a confirmation", async () => {
    await page.getByRole("button", { name: "Signing keys" }).click();
    const rows = page.locator("#keys-result tbody tr");
    await expect.poll(() => rows.count()).toBe(1);
    expect(await rows.first().textContent()).toContain("current");
    const before = (await keys.listKeys({}, as("gateway"))).keys.map((k) => k.kid);
    // By keyboard alone: the button, then in the dialog from Cancel (focused first) to the confirmation.
    await page.locator("#rotate-keys").focus();
    await page.keyboard.press("Enter");
    await page.getByRole("dialog").waitFor();
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Cancel");
    await page.keyboard.press("Tab");
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe("Rotate keys");
    await page.keyboard.press("Enter");
    await expect.poll(() => page.locator("#keys-status").textContent()).toMatch(/^New key [\w-]+ \(next\)\.$/);
    await expect.poll(() => rows.count()).toBe(2);
    const kid = /New key ([\w-]+)/.exec((await page.locator("#keys-status").textContent()) ?? "")![1]!;
    const after = (await keys.listKeys({}, as("gateway"))).keys;
    expect(after.map((k) => k.kid)).toEqual([kid, ...before]);
    expect(after[0]!.state).toBe(KeyState.NEXT);
    expect(await page.locator(`tr[data-kid="${kid}"]`).textContent()).toContain("next");
    await shot("keys");
  });

  it("keeps the key out of every storage and URL, and forgets it on log out", async () => {
    const stored = await page.evaluate(() => ({
      local: localStorage.length,
      session: sessionStorage.length,
      cookie: document.cookie,
      url: location.href,
    }));
    expect(stored).toEqual({ local: 0, session: 0, cookie: "", url: `${server.url}/console/` });
    expect(await context.cookies()).toEqual([]);
    await page.getByRole("button", { name: "Log out" }).click();
    await page.locator("#login").waitFor();
    expect(await page.locator("#nav").isHidden()).toBe(true);
    expect(await page.locator("#screen").isHidden()).toBe(true);
  });

  it("tells a key without stats.read what it lacks, and still serves what it may see", async () => {
    await signIn(KEYS.viewer);
    const refusal = page.locator("#overview-result .refusal");
    await refusal.waitFor();
    expect(await refusal.textContent()).toMatch(/This key lacks the permission stats\.read, which StatsService\.GetOverview needs/);
    expect(await refusal.getAttribute("role")).toBe("alert");
    expect(await page.locator("#overview-result canvas").count()).toBe(0);
    await shot("refused");
    await page.getByRole("button", { name: "Signing keys" }).click();
    await expect.poll(() => page.locator("#keys-result tbody tr").count()).toBe(2); // keys.read: allowed
    await page.getByRole("button", { name: "Log out" }).click();
  });

  it("sends a key the authority does not know back to the login, saying so", async () => {
    await signIn(newKey());
    const error = page.locator("#login-error");
    await expect.poll(() => error.isVisible()).toBe(true);
    expect(await error.textContent()).toMatch(/did not accept this API key/);
    expect(await page.locator("#nav").isHidden()).toBe(true);
  });

  it("made no request outside its origin, broke no CSP rule, and put no key in a URL", async () => {
    const origin = new URL(server.url).origin;
    expect(requests.length).toBeGreaterThan(10);
    const elsewhere = requests.map((r) => r.url()).filter((u) => !u.startsWith("data:") && new URL(u).origin !== origin);
    expect(elsewhere).toEqual([]);
    for (const r of requests) for (const key of Object.values(KEYS)) expect(r.url()).not.toContain(key);
    // Every console response carried the CSP.
    const consoleResponses = await Promise.all(requests.filter((r) => new URL(r.url()).pathname.startsWith("/console/")).map((r) => r.response()));
    expect(consoleResponses.length).toBeGreaterThanOrEqual(3); // the page, its script, its stylesheet
    for (const res of consoleResponses) expect(res?.headers()["content-security-policy"], res?.url()).toBe(CONSOLE_CSP);
    // The API calls were Connect-protocol POSTs to the authority's own services.
    const rpcs = requests.filter((r) => new URL(r.url()).pathname.startsWith("/tessera.v1."));
    expect(rpcs.length).toBeGreaterThan(5);
    for (const r of rpcs) {
      expect(r.method()).toBe("POST");
      expect(r.headers()["connect-protocol-version"]).toBe("1");
    }
    expect(await page.evaluate(() => window.cspViolations)).toEqual([]);
    expect(pageErrors).toEqual([]);
  });
});
