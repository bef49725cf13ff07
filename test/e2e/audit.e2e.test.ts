/**
 * The security audit trail end to end, on a real server (port 0, callers file) with the memory store and with Redis:
 * a scripted sequence of calls produces exactly the expected audit events (type, severity, caller, subject, session,
 * client), ListAuditEvents filters and pages them, no token or API key reaches an event or a log line, and many IPs
 * for one subject raise one suspicious_activity event while Introspect reports the score.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toJson, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import {
  AuditEventSchema,
  AuditEventType,
  AuditService,
  AuditSeverity,
  type AuditEvent,
  type ListAuditEventsRequestSchema,
} from "../../gen/tessera/v1/audit_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { Code, InactiveReason, codeOf, connectTransport } from "../helpers/clients.js";
import { redisScope, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";

const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const KEYS = { gateway: newKey(), auditor: newKey(), ops: newKey() };
const as = (caller: keyof typeof KEYS, requestId?: string): CallOptions => ({
  headers: { authorization: `Bearer ${KEYS[caller]}`, ...(requestId ? { "x-request-id": requestId } : {}) },
});
const CALLERS = {
  callers: [
    { name: "gateway", api_keys: [{ sha256: sha256(KEYS.gateway) }], permissions: ["issue", "refresh", "revoke", "introspect"] },
    { name: "auditor", api_keys: [{ sha256: sha256(KEYS.auditor) }], permissions: ["audit.read"] },
    { name: "ops", api_keys: [{ sha256: sha256(KEYS.ops) }], permissions: ["sessions.read"] },
  ],
};

const PHONE = { deviceId: "phone-1", userAgent: "tessera-app/3.1 (iPhone)", ip: "198.51.100.7", platform: "ios" };
const LAPTOP = { deviceId: "laptop-9", userAgent: "Mozilla/5.0 (X11; thief)", ip: "203.0.113.66", platform: "web" };

/** The fields every expectation checks. */
interface Seen {
  type: AuditEventType;
  severity: AuditSeverity;
  caller: string;
  subject: string;
  sessionId: string;
  ip: string;
  userAgent: string;
  deviceId: string;
}
const seen = (e: AuditEvent): Seen => ({
  type: e.type,
  severity: e.severity,
  caller: e.caller,
  subject: e.subject,
  sessionId: e.sessionId,
  ip: e.ip,
  userAgent: e.userAgent,
  deviceId: e.deviceId,
});
const NO_CLIENT = { ip: "", userAgent: "", deviceId: "" };
type ListRequest = MessageInitShape<typeof ListAuditEventsRequestSchema>;
const client = (c: typeof PHONE) => ({ ip: c.ip, userAgent: c.userAgent, deviceId: c.deviceId });

describe.each(["memory", "redis"] as const)("the audit trail on the %s store", (backend) => {
  let dir: string;
  let scope: RedisScope | undefined;
  let server: StartedServer;
  let close: () => void;
  let tokens: Client<typeof TokenService>;
  let audit: Client<typeof AuditService>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-audit-"));
    const file = join(dir, "callers.json");
    await writeFile(file, JSON.stringify(CALLERS));
    scope = backend === "redis" ? redisScope(inject("redisUrl"), "audit") : undefined;
    server = await startServer({ TESSERA_CALLERS_FILE: file, TESSERA_RISK_THRESHOLD: "50", ...scope?.env });
    const t = connectTransport("connect-grpc", server.url);
    close = t.close;
    tokens = createClient(TokenService, t.transport);
    audit = createClient(AuditService, t.transport);
  });
  afterAll(async () => {
    close?.();
    await server?.close();
    await scope?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Every page of a listing (as the auditor), newest first. */
  async function listAll(req: ListRequest, pageSize = 100): Promise<AuditEvent[][]> {
    const pages: AuditEvent[][] = [];
    let pageToken = "";
    for (let i = 0; i < 100; i++) {
      const res = await audit.listAuditEvents({ ...req, pageSize, pageToken }, as("auditor"));
      pages.push(res.events);
      if (res.nextPageToken === "") return pages;
      pageToken = res.nextPageToken;
    }
    throw new Error("paging did not end");
  }
  const list = async (req: ListRequest) => (await listAll(req)).flat();

  /**
   * The listing once everything recorded so far is stored: the trail is written in batches (every ~50 ms), and
   * flush() writes what is buffered and what writing it raises (suspicious_activity), so the listing is then final and
   * must hold exactly `n` events (an extra one, however late the trail would have written it, is already there).
   */
  async function settled(req: ListRequest, n: number): Promise<AuditEvent[]> {
    await server.app.audit.flush();
    const events = await list(req);
    expect(events).toHaveLength(n);
    return events;
  }

  it("a scripted sequence produces exactly the expected events, and ListAuditEvents filters and pages them", async () => {
    const sub = `alice-${randomUUID()}`;
    const handedOut: string[] = [];
    const keep = <T extends { tokens?: { accessToken: string; refreshToken: string } }>(r: T) => {
      handedOut.push(r.tokens!.accessToken, r.tokens!.refreshToken);
      return r;
    };

    const s1 = keep(await tokens.issue({ subject: sub, scopes: ["read"], client: PHONE }, as("gateway")));
    keep(await tokens.refresh({ refreshToken: s1.tokens!.refreshToken, client: PHONE }, as("gateway")));
    expect(await codeOf(tokens.refresh({ refreshToken: s1.tokens!.refreshToken, client: LAPTOP }, as("gateway")))).toBe(
      Code.Unauthenticated,
    );
    const s2 = keep(await tokens.issue({ subject: sub, client: PHONE }, as("gateway")));
    const s3 = keep(await tokens.issue({ subject: sub, client: PHONE }, as("gateway")));
    await tokens.revoke({ target: { case: "token", value: s2.tokens!.accessToken }, reason: "lost phone" }, as("gateway"));
    await tokens.revoke({ target: { case: "sessionId", value: s2.sessionId }, reason: "user logout" }, as("gateway"));
    const bySubject = await tokens.revoke({ target: { case: "subject", value: sub }, reason: "password reset" }, as("gateway"));
    expect(bySubject.sessionsRevoked).toBe(1); // s3 (s1 ended at the reuse, s2 just now)
    expect(await codeOf(tokens.issue({ subject: sub, client: PHONE }, as("ops")))).toBe(Code.PermissionDenied);
    const anonymousId = `no-credentials-${randomUUID()}`;
    expect(await codeOf(tokens.introspect({ token: s3.tokens!.accessToken }, { headers: { "x-request-id": anonymousId } }))).toBe(
      Code.Unauthenticated,
    );
    const revoked = await tokens.introspect({ token: s2.tokens!.accessToken }, as("gateway"));
    expect(revoked.inactiveReason).toBe(InactiveReason.REVOKED);

    const T = AuditEventType;
    const S = AuditSeverity;
    const gw = (type: AuditEventType, severity: AuditSeverity, sessionId: string, c = NO_CLIENT): Seen => ({
      type,
      severity,
      caller: "gateway",
      subject: sub,
      sessionId,
      ...c,
    });
    const expected: Seen[] = [
      gw(T.TOKEN_ISSUED, S.INFO, s1.sessionId, client(PHONE)),
      gw(T.TOKEN_REFRESHED, S.INFO, s1.sessionId, client(PHONE)),
      gw(T.REFRESH_REUSE_DETECTED, S.CRITICAL, s1.sessionId, client(LAPTOP)),
      gw(T.TOKEN_ISSUED, S.INFO, s2.sessionId, client(PHONE)),
      gw(T.TOKEN_ISSUED, S.INFO, s3.sessionId, client(PHONE)),
      gw(T.TOKEN_REVOKED, S.NOTICE, s2.sessionId),
      gw(T.SESSION_REVOKED, S.NOTICE, s2.sessionId),
      gw(T.SUBJECT_REVOKED, S.NOTICE, ""),
      { ...gw(T.CALLER_DENIED, S.WARNING, "", client(PHONE)), caller: "ops" },
      gw(T.REVOKED_TOKEN_PRESENTED, S.WARNING, s2.sessionId),
      // reuse (40) + a revoked token presented (15) = 55, over the threshold of 50; raised by the tipping event
      gw(T.SUSPICIOUS_ACTIVITY, S.WARNING, s2.sessionId),
    ];
    const events = (await settled({ subject: sub }, expected.length)).reverse();
    expect(events.map(seen)).toEqual(expected);

    // Details: what happened, never a token.
    const detail = (type: AuditEventType) => events.find((e) => e.type === type)!.detail;
    expect(detail(T.TOKEN_REVOKED)).toMatchObject({ reason: "lost phone", revoked: "1", jti: expect.any(String) });
    expect(detail(T.SESSION_REVOKED)).toMatchObject({ reason: "user logout", via: "session_id", sessions: "1" });
    expect(detail(T.SUBJECT_REVOKED)).toMatchObject({ reason: "password reset", sessions: "1" });
    expect(detail(T.CALLER_DENIED)).toMatchObject({ code: "permission_denied", rpc: "TokenService.Issue", permission: "issue" });
    expect(detail(T.REVOKED_TOKEN_PRESENTED)).toMatchObject({ rpc: "Introspect", token_type: "access" });
    expect(detail(T.SUSPICIOUS_ACTIVITY)).toMatchObject({ score: "55", threshold: "50", reuse_detections: "1", revoked_presented: "1" });
    for (const e of events) expect(e.requestId).not.toBe("");
    expect(new Set(events.map((e) => e.id)).size).toBe(events.length);

    // The call without credentials: no caller, no subject, found by its request id.
    const denied = (await list({ types: [T.CALLER_DENIED] })).filter((e) => e.requestId === anonymousId);
    expect(denied.map(seen)).toEqual([
      { type: T.CALLER_DENIED, severity: S.WARNING, caller: "", subject: "", sessionId: "", ...NO_CLIENT },
    ]);
    expect(denied[0]!.detail).toMatchObject({ code: "unauthenticated", reason: "missing credentials", rpc: "TokenService.Introspect" });

    // Filters.
    const newestFirst = [...expected].reverse();
    const pick = (...types: AuditEventType[]) => newestFirst.filter((e) => types.includes(e.type));
    expect((await list({ sessionId: s2.sessionId })).map(seen)).toEqual(newestFirst.filter((e) => e.sessionId === s2.sessionId));
    expect((await list({ subject: sub, types: [T.REFRESH_REUSE_DETECTED, T.SUSPICIOUS_ACTIVITY] })).map(seen)).toEqual(
      pick(T.REFRESH_REUSE_DETECTED, T.SUSPICIOUS_ACTIVITY),
    );
    expect((await list({ subject: sub, minSeverity: S.WARNING })).map(seen)).toEqual(
      pick(T.REFRESH_REUSE_DETECTED, T.CALLER_DENIED, T.REVOKED_TOKEN_PRESENTED, T.SUSPICIOUS_ACTIVITY),
    );
    expect((await list({ subject: sub, minSeverity: S.CRITICAL })).map(seen)).toEqual(pick(T.REFRESH_REUSE_DETECTED));
    const [from, to] = [timestampMs(events[3]!.time!), timestampMs(events[6]!.time!)];
    const inRange = [...events].reverse().filter((e) => timestampMs(e.time!) >= from && timestampMs(e.time!) <= to);
    const ranged = await list({ subject: sub, startTime: timestampFromMs(from), endTime: timestampFromMs(to) });
    expect(ranged.map((e) => e.id)).toEqual(inRange.map((e) => e.id));
    expect(ranged.length).toBeGreaterThanOrEqual(4);

    // Paging: pages of 4, newest first, nothing twice, nothing left out.
    const pages = await listAll({ subject: sub }, 4);
    expect(pages.slice(0, 2).map((p) => p.length)).toEqual([4, 4]);
    expect(pages.flat().map((e) => e.id)).toEqual([...events].reverse().map((e) => e.id));

    // The subject's risk comes with the listing.
    const res = await audit.listAuditEvents({ subject: sub, pageSize: 1 }, as("auditor"));
    expect(res.risk).toMatchObject({ score: 55, distinctIps: 2, distinctDevices: 2, refreshes: 1, reuseDetections: 1, revokedPresented: 1 });
    expect(timestampDate(res.events[0]!.time!).getTime()).toBeLessThanOrEqual(Date.now());

    // No token, refresh token or API key in any audit event or log line.
    const everything = JSON.stringify([
      (await list({})).map((e) => toJson(AuditEventSchema, e)),
      server.logs,
    ]);
    for (const secret of [...handedOut, ...Object.values(KEYS)]) expect(everything).not.toContain(secret);
    // Each event is also a log line, at a level following its severity.
    const auditLines = server.logs.filter((l) => (l.audit as { subject?: string } | undefined)?.subject === sub);
    expect(auditLines.map((l) => (l.audit as { type: string }).type)).toEqual(
      events.map((e) => AuditEventType[e.type].toLowerCase()),
    );
    expect(auditLines.find((l) => (l.audit as { type: string }).type === "refresh_reuse_detected")?.level).toBe("error");
  });

  it("many IPs for one subject in the window: one suspicious_activity warning, and Introspect reports the score", async () => {
    const sub = `bob-${randomUUID()}`;
    let last = "";
    for (let i = 1; i <= 12; i++) {
      const res = await tokens.issue({ subject: sub, client: { ...PHONE, ip: `192.0.2.${i}` } }, as("gateway"));
      last = res.tokens!.accessToken;
    }
    await vi.waitFor(
      async () => expect((await tokens.introspect({ token: last }, as("gateway"))).riskScore).toBe(100),
      { timeout: 5_000, interval: 50 },
    );
    const alerts = await settled({ subject: sub, types: [AuditEventType.SUSPICIOUS_ACTIVITY] }, 1);
    expect(alerts[0]).toMatchObject({ severity: AuditSeverity.WARNING, caller: "gateway", subject: sub });
    expect(Number(alerts[0]!.detail.score)).toBeGreaterThanOrEqual(50);
    expect(Number(alerts[0]!.detail.distinct_ips)).toBeGreaterThanOrEqual(7);
    // More signals inside the window raise no second alert: once the 13th login is stored, and with it whatever
    // storing it raised (settled flushes the trail), there is still one alert.
    await tokens.issue({ subject: sub, client: { ...PHONE, ip: "192.0.2.200" } }, as("gateway"));
    await settled({ subject: sub, types: [AuditEventType.TOKEN_ISSUED] }, 13);
    expect(await list({ subject: sub, types: [AuditEventType.SUSPICIOUS_ACTIVITY] })).toHaveLength(1);
    const res = await audit.listAuditEvents({ subject: sub, pageSize: 1 }, as("auditor"));
    expect(res.risk).toMatchObject({ score: 100, distinctIps: 13, distinctDevices: 1 });
    // Another subject is untouched.
    const other = await tokens.issue({ subject: `carol-${randomUUID()}`, client: PHONE }, as("gateway"));
    expect((await tokens.introspect({ token: other.tokens!.accessToken }, as("gateway"))).riskScore).toBe(0);
  });

  it("ListAuditEvents needs audit.read, bounds page_size and refuses bad filters and foreign page tokens", async () => {
    const sub = `dave-${randomUUID()}`;
    expect(await codeOf(audit.listAuditEvents({ subject: sub }, as("gateway")))).toBe(Code.PermissionDenied);
    expect(await codeOf(audit.listAuditEvents({ subject: sub }))).toBe(Code.Unauthenticated);
    for (let i = 0; i < 3; i++) await tokens.issue({ subject: sub, client: PHONE }, as("gateway"));
    // The denied ListAuditEvents above is itself in the trail (as a refusal concerning this subject).
    await settled({ subject: sub }, 4);
    const first = await audit.listAuditEvents({ subject: sub, pageSize: 2 }, as("auditor"));
    expect(first.events).toHaveLength(2);
    expect(first.nextPageToken).not.toBe("");
    const bad = (req: ListRequest) => codeOf(audit.listAuditEvents(req, as("auditor")));
    expect(await bad({ subject: `${sub}-x`, pageToken: first.nextPageToken })).toBe(Code.InvalidArgument);
    expect(await bad({ pageToken: "bm90LWEtdG9rZW4" })).toBe(Code.InvalidArgument);
    expect(await bad({ pageSize: -1 })).toBe(Code.InvalidArgument);
    expect(await bad({ types: [AuditEventType.UNSPECIFIED] })).toBe(Code.InvalidArgument);
    expect(await bad({ startTime: timestampFromMs(2_000), endTime: timestampFromMs(1_000) })).toBe(Code.InvalidArgument);
    expect(await bad({ sessionId: "not a session id" })).toBe(Code.InvalidArgument);
    const big = await audit.listAuditEvents({ pageSize: 100_000 }, as("auditor"));
    expect(big.events.length).toBeLessThanOrEqual(500);
  });
});
