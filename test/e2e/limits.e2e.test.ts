/**
 * Rate limits, refresh lockout and structured error details against the real server (port 0), with small limits
 * configured through the environment: per caller and method, per subject, per client IP, lockout after failed
 * refreshes, and, on Redis, two server instances sharing every counter.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { afterEach, describe, expect, inject, it, vi } from "vitest";
import { BadRequestSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AuditEventType, AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { connectTransport, statusOf, tesseraClient, TokenType, type ClientKind, type TesseraClient } from "../helpers/clients.js";
import { countKeys, redisScope, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const PHONE = { deviceId: "phone-l", userAgent: "tessera-e2e/1.0", ip: "192.0.2.10" };

const servers: StartedServer[] = [];
const closers: (() => void)[] = [];
let scope: RedisScope | undefined;

afterEach(async () => {
  for (const c of closers.splice(0)) c();
  await Promise.all(servers.splice(0).map((s) => s.close()));
  await scope?.cleanup();
  scope = undefined;
});

async function serve(env: Record<string, string>): Promise<StartedServer> {
  const s = await startServer({ TESSERA_LOG_LEVEL: "warn", ...env });
  servers.push(s);
  return s;
}

function client(s: StartedServer, kind: ClientKind = "connect-grpc"): TesseraClient {
  const c = tesseraClient(kind, s.url);
  closers.push(() => c.close());
  return c;
}

/** The error a call must fail with. */
async function failure(call: Promise<unknown>): Promise<ConnectError> {
  return call.then(
    () => expect.fail("expected the call to fail, but it succeeded"),
    (e: unknown) => ConnectError.from(e),
  );
}

/** RESOURCE_EXHAUSTED with a RetryInfo: its delay in ms, checked to be > 0 and <= maxMs. */
async function limited(call: Promise<unknown>, maxMs: number): Promise<number> {
  const err = await failure(call);
  expect(Code[err.code]).toBe(Code[Code.ResourceExhausted]);
  const infos = err.findDetails(RetryInfoSchema);
  expect(infos).toHaveLength(1);
  const d = infos[0]!.retryDelay!;
  const ms = Number(d.seconds) * 1000 + d.nanos / 1e6;
  expect(ms).toBeGreaterThan(0);
  expect(ms).toBeLessThanOrEqual(maxMs);
  return ms;
}

describe("structured error details", () => {
  it.each(["connect-grpc", "connect-h1", "connect-h2"] as const)("INVALID_ARGUMENT carries a BadRequest over %s", async (kind) => {
    const s = await serve({});
    const c = client(s, kind);
    const err = await failure(c.issue({ subject: "a", scopes: ["no spaces"], client: PHONE }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.findDetails(BadRequestSchema)).toMatchObject([
      { fieldViolations: [{ field: "scopes[0]", description: "is not a valid scope token (RFC 6749 3.3)" }] },
    ]);
    const ttl = await failure(c.issue({ subject: "a", accessTtlSeconds: 86_400, client: PHONE }));
    expect(ttl.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field).toBe("access_ttl");
  });
});

describe("per caller and method (TESSERA_RATE_CALLER)", () => {
  it("refuses the caller's calls of one method beyond the limit, with a RetryInfo within the window", async () => {
    const s = await serve({ TESSERA_RATE_CALLER: "3/5s", TESSERA_LOG_LEVEL: "info" });
    const c = client(s);
    const { tokens } = await c.issue({ subject: "caller-limit", client: PHONE }); // Issue: 1 of 3
    for (let i = 0; i < 3; i++) await c.introspect(tokens.accessToken);
    await limited(c.introspect(tokens.accessToken), 5_000);
    // Other methods have budgets of their own: Issue has two left, ListSessions three.
    await c.issue({ subject: "caller-limit", client: PHONE });
    await c.issue({ subject: "caller-limit", client: PHONE });
    await limited(c.issue({ subject: "caller-limit", client: PHONE }), 5_000);
    for (let i = 0; i < 3; i++) await c.listSessions("caller-limit");
    await limited(c.listSessions("caller-limit"), 5_000);
    // Health has no caller and is never limited; KeyService counts apart.
    const { transport, close } = connectTransport("connect-grpc", s.url);
    closers.push(close);
    const health = createClient(Health, transport);
    const keys = createClient(KeyService, transport);
    for (let i = 0; i < 5; i++) await health.check({ service: "" });
    for (let i = 0; i < 3; i++) await keys.getJwks({});
    await limited(keys.getJwks({}), 5_000);
    // The refusal shows in the RPC log line, with the limit that refused it (never a key or token).
    expect(s.logs).toContainEqual(
      expect.objectContaining({ code: "ResourceExhausted", err: expect.objectContaining({ message: "caller limit: anonymous/tessera.v1.KeyService/GetJwks" }) }),
    );
  });

  /**
   * One burst: 200 Introspects (20 rounds of 10 at once) by one caller, 30 Issues of one subject from one IP and 30
   * Issues of 30 subjects from another IP. What each part got, as counts of outcomes ("OK" or the code's name).
   */
  async function burst(s: StartedServer) {
    const c = client(s);
    const { tokens } = await c.issue({ subject: "burst-token", client: { ...PHONE, ip: "198.51.100.30" } });
    const tally = async (calls: Array<() => Promise<unknown>>, inParallel = 10) => {
      const counts: Record<string, number> = {};
      for (let i = 0; i < calls.length; i += inParallel) {
        for (const r of await Promise.allSettled(calls.slice(i, i + inParallel).map((call) => call()))) {
          const key = r.status === "fulfilled" ? "OK" : Code[ConnectError.from(r.reason).code];
          counts[key] = (counts[key] ?? 0) + 1;
        }
      }
      return counts;
    };
    const introspect = await tally(
      Array.from({ length: 200 }, () => async () => expect((await c.introspect(tokens.accessToken)).active).toBe(true)),
    );
    const oneSubject = await tally(
      Array.from({ length: 30 }, () => () => c.issue({ subject: "burst-subject", client: { ...PHONE, ip: "198.51.100.31" } })),
    );
    const oneIp = await tally(
      Array.from({ length: 30 }, (_, i) => () => c.issue({ subject: `burst-ip-${i}`, client: { ...PHONE, ip: "198.51.100.32" } })),
    );
    return { introspect, oneSubject, oneIp };
  }

  it("is off by default (caller, subject and IP): a burst far beyond any limit set below all succeeds", async () => {
    const s = await serve({});
    expect(await burst(s)).toEqual({ introspect: { OK: 200 }, oneSubject: { OK: 30 }, oneIp: { OK: 30 } });
  });

  it("for contrast, the same burst with limits set is refused beyond each limit", async () => {
    const s = await serve({ TESSERA_RATE_CALLER: "100/1m", TESSERA_RATE_SUBJECT: "10/1m", TESSERA_RATE_IP: "20/1m" });
    expect(await burst(s)).toEqual({
      introspect: { OK: 100, ResourceExhausted: 100 }, // the caller's Introspect budget (Issue has its own)
      oneSubject: { OK: 10, ResourceExhausted: 20 }, // the subject's Issue budget
      oneIp: { OK: 20, ResourceExhausted: 10 }, // the IP's Issue budget
    });
  });
});

describe("per subject (TESSERA_RATE_SUBJECT) and per client IP (TESSERA_RATE_IP)", () => {
  it("limits Issue per subject; other subjects and Refresh keep their own budgets", async () => {
    const s = await serve({ TESSERA_RATE_SUBJECT: "2/5s" });
    const c = client(s);
    const first = await c.issue({ subject: "subj-a", client: PHONE });
    await c.issue({ subject: "subj-a", client: { ...PHONE, ip: "192.0.2.11" } });
    await limited(c.issue({ subject: "subj-a", client: { ...PHONE, ip: "192.0.2.12" } }), 5_000);
    await c.issue({ subject: "subj-b", client: PHONE });
    // Refresh counts per subject apart from Issue.
    const r1 = await c.refresh(first.tokens.refreshToken, PHONE);
    const r2 = await c.refresh(r1.tokens.refreshToken, PHONE);
    await limited(c.refresh(r2.tokens.refreshToken, PHONE), 5_000);
    // Refused before the session was touched: the presented token is still the current one.
    expect(await statusOf(c, r2.tokens.refreshToken, TokenType.REFRESH)).toBe("ACTIVE");
    // Each refusal is a rate_limited audit event naming the subject.
    const audit = createClient(AuditService, connectTransport("connect-grpc", s.url).transport);
    const seen = await vi.waitFor(async () => {
      const { events } = await audit.listAuditEvents({ subject: "subj-a", types: [AuditEventType.RATE_LIMITED] });
      expect(events).toHaveLength(2);
      return events;
    });
    expect(seen.map((e) => e.detail)).toEqual([{ limit: "subject" }, { limit: "subject" }]);
  });

  it("limits Issue per client IP (IPv6 per /64); calls without an IP are not counted by IP", async () => {
    const s = await serve({ TESSERA_RATE_IP: "2/5s" });
    const c = client(s);
    await c.issue({ subject: "ip-1", client: { ...PHONE, ip: "198.51.100.1" } });
    await c.issue({ subject: "ip-2", client: { ...PHONE, ip: "198.51.100.1" } });
    await limited(c.issue({ subject: "ip-3", client: { ...PHONE, ip: "198.51.100.1" } }), 5_000);
    await c.issue({ subject: "ip-3", client: { ...PHONE, ip: "198.51.100.2" } });
    await c.issue({ subject: "ip-4", client: { ...PHONE, ip: "2001:db8:1:2::1" } });
    await c.issue({ subject: "ip-5", client: { ...PHONE, ip: "2001:db8:1:2:ffff::9" } });
    await limited(c.issue({ subject: "ip-6", client: { ...PHONE, ip: "2001:db8:1:2::abcd" } }), 5_000);
    await c.issue({ subject: "ip-6", client: { ...PHONE, ip: "2001:db8:1:3::1" } });
    for (let i = 0; i < 4; i++) await c.issue({ subject: `ip-none-${i}`, client: { ...PHONE, ip: "" } });
  });
});

describe("refresh lockout (TESSERA_REFRESH_LOCKOUT_*)", () => {
  const LOCKOUT = {
    TESSERA_REFRESH_LOCKOUT_AFTER: "3",
    TESSERA_REFRESH_LOCKOUT_SUBJECT_AFTER: "5",
    TESSERA_REFRESH_LOCKOUT_WINDOW: "30s",
    TESSERA_REFRESH_LOCKOUT_TIME: "1s",
  };

  it("locks a session out after N failed refreshes, and the lock ends after the lockout time", async () => {
    const s = await serve(LOCKOUT);
    const c = client(s);
    const issued = await c.issue({ subject: "lock-a", client: PHONE });
    await c.revoke({ sessionId: issued.sessionId });
    let lockedAt = 0; // just before the failure that locks the session
    for (let i = 0; i < 3; i++) {
      lockedAt = Date.now();
      expect((await failure(c.refresh(issued.tokens.refreshToken, PHONE))).code).toBe(Code.Unauthenticated);
    }
    await limited(c.refresh(issued.tokens.refreshToken, PHONE), 1_000);
    // Another subject is unaffected.
    const other = await c.issue({ subject: "lock-b", client: PHONE });
    await c.refresh(other.tokens.refreshToken, PHONE);
    // Refused (and not counted) until the lockout time is over; then the revoked token is answered again.
    const after = await until(
      async () => {
        const code = (await failure(c.refresh(issued.tokens.refreshToken, PHONE))).code;
        return code === Code.ResourceExhausted ? undefined : Code[code];
      },
      10_000,
      "the session lock to end",
    );
    expect(after).toBe(Code[Code.Unauthenticated]);
    expect(Date.now() - lockedAt).toBeGreaterThanOrEqual(900); // TESSERA_REFRESH_LOCKOUT_TIME=1s, less timer slack
  });

  it("locks a subject after failures across its sessions, without touching its live sessions", async () => {
    const s = await serve(LOCKOUT);
    const c = client(s);
    const dead1 = await c.issue({ subject: "lock-c", client: PHONE });
    const dead2 = await c.issue({ subject: "lock-c", client: PHONE });
    const live = await c.issue({ subject: "lock-c", client: PHONE });
    await c.revoke({ sessionId: dead1.sessionId });
    await c.revoke({ sessionId: dead2.sessionId });
    let lockedAt = 0; // just before the failure that locks the subject
    for (const t of [dead1, dead2, dead1, dead2, dead2]) {
      lockedAt = Date.now();
      expect((await failure(c.refresh(t.tokens.refreshToken, PHONE))).code).toBe(Code.Unauthenticated);
    }
    await limited(c.refresh(live.tokens.refreshToken, PHONE), 1_000);
    expect(await statusOf(c, live.tokens.refreshToken, TokenType.REFRESH)).toBe("ACTIVE");
    // Refused until the lockout time is over; then the live session refreshes.
    const refreshed = await until(
      () =>
        c.refresh(live.tokens.refreshToken, PHONE).catch((e: unknown) => {
          if (ConnectError.from(e).code === Code.ResourceExhausted) return undefined;
          throw e;
        }),
      10_000,
      "the subject lock to end",
    );
    expect(refreshed.sessionId).toBe(live.sessionId);
    expect(Date.now() - lockedAt).toBeGreaterThanOrEqual(900);
  });

  it("does not count tokens that are not validly signed: a forged token cannot lock anybody out", async () => {
    const s = await serve(LOCKOUT);
    const c = client(s);
    const victim = await c.issue({ subject: "lock-d", client: PHONE });
    const [h, p] = victim.tokens.refreshToken.split(".");
    const forged = `${h}.${p}.${"A".repeat(86)}`; // the victim's session, any signature
    for (let i = 0; i < 10; i++) expect((await failure(c.refresh(forged, PHONE))).code).toBe(Code.Unauthenticated);
    await c.refresh(victim.tokens.refreshToken, PHONE);
  });

  it("reuse of a rotated token counts as a failure of its session", async () => {
    const s = await serve({ ...LOCKOUT, TESSERA_REFRESH_GRACE: "0s" });
    const c = client(s);
    const issued = await c.issue({ subject: "lock-e", client: PHONE });
    await c.refresh(issued.tokens.refreshToken, PHONE);
    for (let i = 0; i < 3; i++) expect((await failure(c.refresh(issued.tokens.refreshToken, PHONE))).code).toBe(Code.Unauthenticated);
    await limited(c.refresh(issued.tokens.refreshToken, PHONE), 1_000);
  });
});

describe("on Redis, two server instances share the limits", () => {
  it("per subject, per caller and lockout counters are shared", async () => {
    scope = redisScope(inject("redisUrl"), "limits");
    const env = {
      ...scope.env,
      TESSERA_RATE_SUBJECT: "2/10s",
      TESSERA_RATE_CALLER: "6/10s",
      TESSERA_REFRESH_LOCKOUT_AFTER: "2",
      TESSERA_REFRESH_LOCKOUT_TIME: "1s",
    };
    const [sa, sb] = [await serve(env), await serve(env)];
    const a = client(sa);
    const b = client(sb, "connect-h1");
    const issued = await a.issue({ subject: "shared", client: PHONE });
    await b.issue({ subject: "shared", client: PHONE });
    await limited(a.issue({ subject: "shared", client: PHONE }), 10_000);
    await limited(b.issue({ subject: "shared", client: PHONE }), 10_000);

    // Lockout: one failure on A, one on B, locked on both.
    await b.revoke({ sessionId: issued.sessionId });
    expect((await failure(a.refresh(issued.tokens.refreshToken, PHONE))).code).toBe(Code.Unauthenticated);
    expect((await failure(b.refresh(issued.tokens.refreshToken, PHONE))).code).toBe(Code.Unauthenticated);
    await limited(a.refresh(issued.tokens.refreshToken, PHONE), 1_000);
    await limited(b.refresh(issued.tokens.refreshToken, PHONE), 1_000);

    // Per caller (both "anonymous" in open mode): Refresh has had 4 calls across A and B, 2 more fit.
    expect((await failure(a.refresh("x.y.z", PHONE))).code).toBe(Code.Unauthenticated);
    expect((await failure(b.refresh("x.y.z", PHONE))).code).toBe(Code.Unauthenticated);
    await limited(a.refresh("x.y.z", PHONE), 10_000);
    // The counters live under the store's prefix (and go with its cleanup).
    expect(await countKeys(scope.env.TESSERA_REDIS_URL!, `${scope.prefix}rl:`)).toBeGreaterThan(0);
  });
});

describe("the in-memory store's most sessions (TESSERA_MEMORY_MAX_SESSIONS)", () => {
  it("answers Issue RESOURCE_EXHAUSTED once it holds that many sessions, and serves every other call as before", async () => {
    const s = await serve({ TESSERA_MEMORY_MAX_SESSIONS: "3", TESSERA_MAX_SESSIONS: "1" });
    const c = client(s);
    const issued = [];
    for (let i = 0; i < 3; i++) issued.push(await c.issue({ subject: "filler", client: PHONE })); // 1 live, 2 evicted
    for (const kind of ["connect-grpc", "grpc-js"] as const) {
      const err = await failure(client(s, kind).issue({ subject: "newcomer", client: PHONE }));
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.rawMessage).toContain("TESSERA_MEMORY_MAX_SESSIONS");
    }
    // What it holds still answers: the live session's tokens introspect active and refresh; the evicted stay revoked.
    const [first, , last] = issued as [(typeof issued)[0], unknown, (typeof issued)[0]];
    expect((await c.introspect(last.tokens.accessToken)).active).toBe(true);
    expect((await c.introspect(first.tokens.accessToken)).active).toBe(false);
    const refreshed = await c.refresh(last.tokens.refreshToken, PHONE);
    expect((await c.introspect(refreshed.tokens.accessToken)).active).toBe(true);
  });
});
