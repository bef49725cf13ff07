/**
 * What the authority records in the audit trail for each state change and refusal, with the caller's context, and
 * the risk score Introspect reports. Never a token: every recorded value is checked against the tokens handed out.
 */
import { describe, expect, it } from "vitest";
import { NO_CONTEXT, type AuditContext } from "../../src/domain/audit.js";
import type { AuditInput } from "../../src/domain/audit-trail.js";
import { LAPTOP, PHONE, issueFor, makeAuthority, type Fixture } from "../helpers/authority.js";

const GW: AuditContext = { caller: "gateway", ip: "198.51.100.1", userAgent: "app/1.0", deviceId: "phone-1", requestId: "r-1" };
const OPS: AuditContext = { ...NO_CONTEXT, caller: "ops", requestId: "r-2" };

/** type, subject, session and detail of each record (the context checked where it matters). */
const brief = (f: Fixture) => f.audited.map(({ type, subject, sessionId, detail }) => ({ type, subject, sessionId, detail }));

/** What token_issued carries for the usage statistics (domain/stats.ts). */
const opened = { platform: expect.any(String), expires_at: expect.stringMatching(/^\d+$/), idle_expires_at: expect.stringMatching(/^\d+$/) };

function expectNoSecrets(records: AuditInput[], secrets: string[]): void {
  const text = JSON.stringify(records);
  for (const s of secrets) expect(text).not.toContain(s);
}

describe("the authority's audit records", () => {
  it("Issue: token_issued with the caller's context; evictions as session_evicted", async () => {
    const f = await makeAuthority({ maxSessions: 1 });
    const first = await f.authority.issue({ subject: "alice", audience: [], scopes: ["read"], claims: {}, client: PHONE }, GW);
    const second = await f.authority.issue({ subject: "alice", audience: [], scopes: [], claims: {}, client: PHONE }, GW);
    expect(brief(f)).toEqual([
      { type: "token_issued", subject: "alice", sessionId: first.sessionId, detail: { scopes: "read", ...opened } },
      { type: "token_issued", subject: "alice", sessionId: second.sessionId, detail: opened },
      { type: "session_evicted", subject: "alice", sessionId: first.sessionId, detail: { new_session: second.sessionId } },
    ]);
    for (const r of f.audited) expect(r.context).toBe(GW);
    expectNoSecrets(f.audited, [first.pair.accessToken, first.pair.refreshToken, second.pair.accessToken]);
  });

  it("Refresh: rotated and replayed are token_refreshed; reuse is refresh_reuse_detected; a revoked session is revoked_token_presented", async () => {
    const f = await makeAuthority();
    const { pair, sessionId } = await issueFor(f);
    const next = await f.authority.refresh(pair.refreshToken, PHONE, {}, GW);
    await f.authority.refresh(pair.refreshToken, PHONE, {}, GW); // same client inside the grace window
    const thief = { ...GW, ip: "203.0.113.9", deviceId: LAPTOP.deviceId, userAgent: LAPTOP.userAgent };
    await expect(f.authority.refresh(pair.refreshToken, LAPTOP, {}, thief)).rejects.toThrow(/reuse/);
    await expect(f.authority.refresh(next.pair.refreshToken, PHONE, {}, GW)).rejects.toThrow(/ended/);
    const s = { subject: "alice", sessionId };
    expect(brief(f).slice(1)).toEqual([
      { type: "token_refreshed", ...s, detail: { idle_expires_at: expect.any(Number) } },
      { type: "token_refreshed", ...s, detail: { grace_replay: true } },
      { type: "refresh_reuse_detected", ...s, detail: { jti: expect.any(String), action: "session revoked" } },
      { type: "revoked_token_presented", ...s, detail: { rpc: "Refresh", token_type: "refresh", jti: expect.any(String) } },
    ]);
    expect(f.audited[3]!.context).toBe(thief);
    expectNoSecrets(f.audited, [pair.refreshToken, next.pair.refreshToken, next.pair.accessToken]);
  });

  it("Refresh: a bad token, or a session that ended by itself, is refresh_failed", async () => {
    const f = await makeAuthority();
    await expect(f.authority.refresh("not.a.token", PHONE, {}, GW)).rejects.toThrow();
    const { pair, sessionId } = await issueFor(f);
    f.clock.advance(2 * 24 * 3600_000); // past the idle timeout (1 day in the fixture)
    await expect(f.authority.refresh(pair.refreshToken, PHONE, {}, GW)).rejects.toThrow();
    expect(brief(f)).toEqual([
      { type: "refresh_failed", subject: undefined, sessionId: undefined, detail: { reason: "malformed" } },
      { type: "token_issued", subject: "alice", sessionId, detail: { scopes: "read write", ...opened } },
      { type: "refresh_failed", subject: "alice", sessionId, detail: { reason: expect.stringMatching(/^session_/) } },
    ]);
  });

  it("Revoke: token_revoked, session_revoked (by id or by refresh token) and subject_revoked, each once per call", async () => {
    const f = await makeAuthority();
    const a = await issueFor(f);
    const b = await issueFor(f);
    const c = await issueFor(f);
    f.audited.length = 0;
    await f.authority.revokeToken(a.pair.accessToken, "lost phone", OPS);
    await f.authority.revokeSession(b.sessionId, "user logout", OPS);
    await f.authority.revokeToken(c.pair.refreshToken, "logout", OPS);
    await f.authority.revokeSession("no-such-session", "typo", OPS);
    await f.authority.revokeSubject("alice", "logout everywhere", OPS);
    expect(brief(f)).toEqual([
      { type: "token_revoked", subject: "alice", sessionId: a.sessionId, detail: { jti: expect.any(String), reason: "lost phone", revoked: 1 } },
      { type: "session_revoked", subject: "alice", sessionId: b.sessionId, detail: { reason: "user logout", via: "session_id", sessions: 1 } },
      { type: "session_revoked", subject: "alice", sessionId: c.sessionId, detail: { reason: "logout", via: "refresh_token", sessions: 1 } },
      { type: "session_revoked", subject: undefined, sessionId: "no-such-session", detail: { reason: "typo", via: "session_id", sessions: 0 } },
      { type: "subject_revoked", subject: "alice", sessionId: undefined, detail: { reason: "logout everywhere", sessions: 1 } },
    ]);
    for (const r of f.audited) expect(r.context).toBe(OPS);
    expectNoSecrets(f.audited, [a.pair.accessToken, c.pair.refreshToken]);
  });

  it("Revoke of a subject: subject_revoked carries the ids of exactly the sessions it ended, for the statistics", async () => {
    const f = await makeAuthority();
    const a = await issueFor(f);
    const b = await issueFor(f);
    await f.authority.revokeSession(a.sessionId, "user logout", OPS);
    f.audited.length = 0;
    expect(await f.authority.revokeSubject("alice", "logout everywhere", OPS)).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    expect(f.audited).toHaveLength(1);
    expect(f.audited[0]).toMatchObject({ type: "subject_revoked", detail: { sessions: 1 }, endedSessions: [b.sessionId] });
    await f.authority.revokeSubject("alice", "again", OPS);
    expect(f.audited[1]).toMatchObject({ type: "subject_revoked", detail: { sessions: 0 }, endedSessions: [] });
  });

  it("Introspect: a revoked token is revoked_token_presented; other answers record nothing", async () => {
    const f = await makeAuthority();
    const { pair, sessionId } = await issueFor(f);
    f.audited.length = 0;
    await f.authority.introspect(pair.accessToken, "access", undefined, GW);
    await f.authority.introspect("garbage", "access", undefined, GW);
    await f.authority.introspect(pair.refreshToken, "access", undefined, GW); // wrong type
    expect(f.audited).toEqual([]);
    await f.authority.revokeToken(pair.accessToken, "x");
    f.audited.length = 0;
    expect(await f.authority.introspect(pair.accessToken, "access", undefined, GW)).toEqual({ active: false, reason: "revoked" });
    expect(f.audited).toEqual([
      {
        type: "revoked_token_presented",
        context: GW,
        subject: "alice",
        sessionId,
        detail: { rpc: "Introspect", token_type: "access", jti: expect.any(String) },
      },
    ]);
  });

  it("Introspect of an active token reports the subject's risk score from the store's observations", async () => {
    const f = await makeAuthority({ riskWindowMs: 60_000 });
    const { pair } = await issueFor(f);
    const active = async () => {
      const r = await f.authority.introspect(pair.accessToken, "access");
      if (!r.active) throw new Error("not active");
      return r.riskScore;
    };
    expect(await active()).toBe(0);
    const now = f.clock.now();
    const seen = (ip: string) => ({
      type: "token_issued" as const,
      severity: "info" as const,
      at: now,
      ...NO_CONTEXT,
      ip,
      subject: "alice",
      sessionId: "s",
      detail: {},
    });
    const bounds = { now, maxEvents: 1000, maxAgeMs: 3_600_000, riskWindowMs: 60_000 };
    await f.store.appendAudit(["a", "b", "c", "d", "e"].map(seen), bounds);
    expect(await active()).toBe(30);
    f.clock.advance(60_000); // the window has passed: the signals no longer count
    expect(await active()).toBe(0);
  });
});
