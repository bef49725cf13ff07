/**
 * StatsService end to end, on a real server (port 0, callers file) with the memory store and with Redis: Issue,
 * Refresh, Revoke and a refresh-token reuse through a client, then GetOverview, GetSubjectActivity and GetDailyReport
 * answer the right counts; every RPC needs `stats.read` (PERMISSION_DENIED without it).
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { AuditEventType } from "../../gen/tessera/v1/audit_pb.js";
import { StatsService } from "../../gen/tessera/v1/stats_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { Code, codeOf, connectTransport } from "../helpers/clients.js";
import { redisScope, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";

const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const KEYS = { gateway: newKey(), ops: newKey() };
const as = (caller: keyof typeof KEYS): CallOptions => ({ headers: { authorization: `Bearer ${KEYS[caller]}` } });
const CALLERS = {
  callers: [
    { name: "gateway", api_keys: [{ sha256: sha256(KEYS.gateway) }], permissions: ["issue", "refresh", "revoke", "introspect", "audit.read"] },
    { name: "ops", api_keys: [{ sha256: sha256(KEYS.ops) }], permissions: ["stats.read"] },
  ],
};

const PHONE = { deviceId: "phone-1", userAgent: "tessera-app/3.1 (iPhone)", ip: "198.51.100.7", platform: "ios" };
const LAPTOP = { deviceId: "laptop-9", userAgent: "Mozilla/5.0", ip: "203.0.113.66", platform: "web" };

describe.each(["memory", "redis"] as const)("StatsService on the %s store", (backend) => {
  let dir: string;
  let scope: RedisScope | undefined;
  let server: StartedServer;
  let close: () => void;
  let tokens: Client<typeof TokenService>;
  let stats: Client<typeof StatsService>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-stats-"));
    const file = join(dir, "callers.json");
    await writeFile(file, JSON.stringify(CALLERS));
    scope = backend === "redis" ? redisScope(inject("redisUrl"), "stats") : undefined;
    server = await startServer({ TESSERA_CALLERS_FILE: file, ...scope?.env });
    const t = connectTransport("connect-grpc", server.url);
    close = t.close;
    tokens = createClient(TokenService, t.transport);
    stats = createClient(StatsService, t.transport);
  });
  afterAll(async () => {
    close?.();
    await server?.close();
    await scope?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("counts Issue, Refresh, Revoke and reuse, and reports the subject's activity", async () => {
    const alice = `alice-${randomUUID()}`;
    const bob = `bob-${randomUUID()}`;
    const a1 = await tokens.issue({ subject: alice, scopes: ["read"], client: PHONE }, as("gateway"));
    const a2 = await tokens.issue({ subject: alice, scopes: ["read"], client: LAPTOP }, as("gateway"));
    const b1 = await tokens.issue({ subject: bob, scopes: ["read"], client: PHONE }, as("gateway"));
    // Refresh a1 twice (a rotation each), then present the first refresh token again from another client: reuse.
    const r1 = await tokens.refresh({ refreshToken: a1.tokens!.refreshToken, client: PHONE }, as("gateway"));
    await tokens.refresh({ refreshToken: r1.tokens!.refreshToken, client: PHONE }, as("gateway"));
    expect(await codeOf(tokens.refresh({ refreshToken: a1.tokens!.refreshToken, client: LAPTOP }, as("gateway")))).toBe(Code.Unauthenticated);
    // Revoke: an access token, then bob's session by id.
    await tokens.revoke({ target: { case: "token", value: a2.tokens!.accessToken }, reason: "lost" }, as("gateway"));
    await tokens.revoke({ target: { case: "sessionId", value: b1.sessionId }, reason: "logout" }, as("gateway"));
    await server.app.audit.flush();

    const o = await stats.getOverview({}, as("ops"));
    expect(o.totals).toMatchObject({
      logins: 3n,
      refreshes: 2n,
      reuseDetections: 1n,
      tokenRevocations: 1n,
      sessionRevocations: 1n,
      revocations: 2n,
      lockouts: 0n,
    });
    // a1 ended by the reuse, b1 by the revocation: a2 (web) is live.
    expect(o.live).toMatchObject({ total: 1n, byPlatform: { web: 1n }, subjects: 1n });
    expect(o.sessionDurations!.count).toBe(2n);
    expect(o.hours.length).toBeGreaterThanOrEqual(24);
    expect(o.hours.reduce((n, h) => n + h.counts!.logins, 0n)).toBe(3n);

    const act = await stats.getSubjectActivity({ subject: alice }, as("ops"));
    expect(act.sessions.map((s) => s.sessionId)).toEqual([a2.sessionId]);
    expect(act.sessions[0]!.client).toMatchObject({ ip: LAPTOP.ip, deviceId: LAPTOP.deviceId, platform: "web" });
    expect(act.recentEvents[0]!.type).toBe(AuditEventType.TOKEN_REVOKED); // newest first
    expect(act.recentEvents.map((e) => e.type)).toContain(AuditEventType.REFRESH_REUSE_DETECTED);
    expect(act.recentEvents.every((e) => e.subject === alice)).toBe(true);
    expect(act.risk!.reuseDetections).toBe(1);
    expect(act.risk!.score).toBeGreaterThan(0);

    const today = new Date().toISOString().slice(0, 10);
    const d = await stats.getDailyReport({ date: today }, as("ops"));
    expect(d.date).toBe(today);
    expect(d.hours).toHaveLength(24);
    expect(d.complete).toBe(true);
    expect(d.counts).toMatchObject({ logins: 3n, refreshes: 2n, reuseDetections: 1n, revocations: 2n });
    expect(d.sessionDurations!.count).toBe(2n);
  });

  it("logout everywhere ends exactly the subject's sessions in the live figures", async () => {
    const carol = `carol-${randomUUID()}`;
    const dave = `dave-${randomUUID()}`;
    await server.app.audit.flush();
    const before = await stats.getOverview({}, as("ops"));
    for (const client of [PHONE, LAPTOP, PHONE]) await tokens.issue({ subject: carol, scopes: ["read"], client }, as("gateway"));
    await tokens.issue({ subject: dave, scopes: ["read"], client: LAPTOP }, as("gateway"));
    const out = await tokens.revoke({ target: { case: "subject", value: carol }, reason: "logout everywhere" }, as("gateway"));
    expect(out.sessionsRevoked).toBe(3);
    const after = await tokens.issue({ subject: carol, scopes: ["read"], client: PHONE }, as("gateway")); // a login right after
    await server.app.audit.flush();

    const o = await stats.getOverview({}, as("ops"));
    // carol's three sessions ended, her new one and dave's live: two more live sessions, one each for ios and web.
    expect(o.live!.total).toBe(before.live!.total + 2n);
    expect(o.live!.subjects).toBe(before.live!.subjects + 2n);
    expect(o.live!.byPlatform.ios ?? 0n).toBe((before.live!.byPlatform.ios ?? 0n) + 1n);
    expect(o.live!.byPlatform.web ?? 0n).toBe((before.live!.byPlatform.web ?? 0n) + 1n);
    expect(o.totals!.subjectRevocations).toBe(before.totals!.subjectRevocations + 1n);
    expect(o.sessionDurations!.count).toBe(before.sessionDurations!.count + 3n);
    const act = await stats.getSubjectActivity({ subject: carol }, as("ops"));
    expect(act.sessions.map((s) => s.sessionId)).toEqual([after.sessionId]);
  });

  it("needs stats.read, and checks its arguments", async () => {
    const denied = async (p: Promise<unknown>) => expect(await codeOf(p)).toBe(Code.PermissionDenied);
    await denied(stats.getOverview({}, as("gateway")));
    await denied(stats.getSubjectActivity({ subject: "alice" }, as("gateway")));
    await denied(stats.getDailyReport({ date: "2026-01-01" }, as("gateway")));
    const invalid = async (p: Promise<unknown>) => expect(await codeOf(p)).toBe(Code.InvalidArgument);
    await invalid(stats.getOverview({ window: { seconds: 8n * 86_400n } }, as("ops")));
    await invalid(stats.getDailyReport({ date: "2026-02-30" }, as("ops")));
    await invalid(stats.getDailyReport({ date: "2000-01-01" }, as("ops")));
    await invalid(stats.getSubjectActivity({ subject: "" }, as("ops")));
  });
});
