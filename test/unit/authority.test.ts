import { decodeJwt, decodeProtectedHeader } from "jose";
import { describe, expect, it, vi } from "vitest";
import { TesseraError } from "../../src/domain/errors.js";
import { D, H, ISSUER, LAPTOP, MIN, PHONE, S, issueFor, makeAuthority, type Fixture } from "../helpers/authority.js";

async function expectError(p: Promise<unknown>, code: string, message?: RegExp): Promise<TesseraError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TesseraError);
  expect((err as TesseraError).code).toBe(code);
  if (message) expect((err as TesseraError).message).toMatch(message);
  return err as TesseraError;
}

describe("issue", () => {
  it("signs an at+jwt access token and an rt+jwt refresh token for one new session", async () => {
    const f = await makeAuthority();
    const { pair, sessionId } = await issueFor(f);
    const ah = decodeProtectedHeader(pair.accessToken);
    const rh = decodeProtectedHeader(pair.refreshToken);
    expect(ah).toEqual({ alg: "ES256", kid: f.keys.signingKey().kid, typ: "at+jwt" });
    expect(rh.typ).toBe("rt+jwt");
    const claims = decodeJwt(pair.accessToken);
    const now = Math.floor(f.clock.now() / 1000);
    expect(claims).toMatchObject({
      iss: ISSUER,
      sub: "alice",
      aud: ["api"],
      iat: now,
      nbf: now,
      exp: now + 15 * 60,
      sid: sessionId,
      scope: "read write",
      tenant: "t1",
    });
    expect(claims.jti).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(decodeJwt(pair.refreshToken).jti).not.toBe(claims.jti);
    expect(pair.accessExpiresAt).toBe((now + 15 * 60) * 1000);
    const sessions = await f.authority.listSessions("alice");
    expect(sessions.map((s) => s.id)).toEqual([sessionId]);
    expect(sessions[0]!.client).toEqual(PHONE);
  });

  it("honours requested TTLs up to the maximum and rejects longer ones", async () => {
    const f = await makeAuthority();
    const base = { subject: "bob", audience: ["x"], scopes: [], claims: {}, client: PHONE };
    const r = await f.authority.issue({ ...base, accessTtlMs: H, refreshTtlMs: 30 * D });
    const now = f.clock.now();
    expect(r.pair.accessExpiresAt).toBe(Math.floor((now + H) / 1000) * 1000);
    expect(r.pair.refreshExpiresAt).toBe(Math.floor((now + 30 * D) / 1000) * 1000);
    await expectError(f.authority.issue({ ...base, accessTtlMs: H + 1 }), "invalid_argument", /access_ttl/);
    await expectError(f.authority.issue({ ...base, refreshTtlMs: 30 * D + 1000 }), "invalid_argument", /refresh_ttl/);
    await expectError(f.authority.issue({ ...base, accessTtlMs: 500 }), "invalid_argument", /access_ttl/);
  });

  it("rejects reserved claim names", async () => {
    const f = await makeAuthority();
    for (const name of ["sub", "exp", "sid", "scope", "iss"]) {
      await expectError(
        f.authority.issue({ subject: "a", audience: [], scopes: [], claims: { [name]: "x" }, client: PHONE }),
        "invalid_argument",
        new RegExp(name),
      );
    }
  });

  it("evicts the least recently used session beyond the per-subject limit", async () => {
    const f = await makeAuthority({ maxSessions: 2 });
    const first = await issueFor(f);
    f.clock.advance(S);
    const second = await issueFor(f);
    f.clock.advance(S);
    await f.authority.refresh(first.pair.refreshToken, PHONE); // first is now the most recently used
    f.clock.advance(S);
    const third = await issueFor(f);
    expect(third.evicted).toEqual([second.sessionId]);
    expect(f.events).toContainEqual({ type: "session_evicted", subject: "alice", sessionId: second.sessionId });
    expect(await f.authority.introspect(second.pair.accessToken, "access")).toEqual({ active: false, reason: "revoked" });
    expect((await f.authority.listSessions("alice")).map((s) => s.id).sort()).toEqual(
      [first.sessionId, third.sessionId].sort(),
    );
  });
});

/** Makes every signature by `f`'s current key wait for `gate` (and fail, when `fail`), refresh MACs included. */
function holdSignatures(f: Fixture, gate: Promise<void>, fail = false): { calls: number } {
  const seen = { calls: 0 };
  const held = (sign: (input: string) => Promise<string>) => async (input: string) => {
    seen.calls++;
    await gate;
    if (fail) throw new Error("the signing thread went away");
    return sign(input);
  };
  const key = f.keys.signingKey();
  const mac = key.refreshMac;
  const wrapped = { ...key, sign: held(key.sign), refreshMac: mac && { ...mac, sign: held(mac.sign) } };
  f.keys.signingKey = () => wrapped;
  return seen;
}

/** The ids of the sessions `f`'s store is asked to open, in order. */
function watchOpenings(f: Fixture): string[] {
  const opened: string[] = [];
  const createSession = f.store.createSession.bind(f.store);
  f.store.createSession = (s, opts) => {
    opened.push(s.id);
    return createSession(s, opts);
  };
  return opened;
}

describe("issue: signing and opening the session overlap", () => {
  it("opens the session while the tokens are still being signed, and answers once both are done", async () => {
    const f = await makeAuthority();
    let release!: () => void;
    const signing = holdSignatures(f, new Promise<void>((r) => (release = r)));
    const opened = watchOpenings(f);
    const issuing = issueFor(f);
    await vi.waitFor(() => expect(opened).toHaveLength(1));
    expect(signing.calls).toBe(2); // both signatures were asked for, neither has come back
    expect((await f.store.getSession(opened[0]!, f.clock.now()))?.currentJti).toBeDefined();
    release();
    const { pair, sessionId } = await issuing;
    expect(sessionId).toBe(opened[0]);
    expect(await f.authority.introspect(pair.accessToken, "access")).toMatchObject({ active: true, token: { sessionId } });
    expect(f.audited.map((e) => e.type)).toEqual(["token_issued"]);
  });

  it("signing that fails after the session opened: the session is ended again, its evictions recorded, the error returned", async () => {
    const f = await makeAuthority({ maxSessions: 1 });
    const first = await issueFor(f);
    f.clock.advance(S);
    holdSignatures(f, Promise.resolve(), true);
    await expect(issueFor(f)).rejects.toThrow("the signing thread went away");
    // The new session is not left open (no tokens of it exist); the one it evicted was evicted, and says so.
    const types = f.audited.map((e) => `${e.type}${e.detail?.reason ? `:${String(e.detail.reason)}` : ""}`);
    expect(types).toEqual(["token_issued", "session_evicted", "session_revoked:signing_failed"]);
    expect(f.audited[2]).toMatchObject({ subject: "alice", detail: { via: "issue", sessions: 1 } });
    expect(f.events).toContainEqual({ type: "session_evicted", subject: "alice", sessionId: first.sessionId });
    expect(await f.authority.listSessions("alice")).toEqual([]);
    expect(await f.authority.introspect(first.pair.accessToken, "access")).toEqual({ active: false, reason: "revoked" });
  });

  it("signing that fails, and a store that then fails to end the session: the signing failure is what the caller hears", async () => {
    const f = await makeAuthority();
    holdSignatures(f, Promise.resolve(), true);
    let endings = 0;
    f.store.revokeSession = () => {
      endings++;
      return Promise.reject(new Error("store down"));
    };
    await expect(issueFor(f)).rejects.toThrow("the signing thread went away");
    expect(endings).toBe(1);
  });

  it("a key of a type whose signature length is unknown: signed and checked before the store is touched", async () => {
    const f = await makeAuthority();
    const key = f.keys.signingKey();
    const odd = { ...key, publicJwk: { ...key.publicJwk, kty: "unknown" }, sign: async () => "A".repeat(9000) };
    f.keys.signingKey = () => odd;
    const opened = watchOpenings(f);
    await expectError(issueFor(f), "invalid_argument", /over TESSERA_MAX_TOKEN_LENGTH/);
    expect(opened).toEqual([]);
    expect(await f.authority.listSessions("alice")).toEqual([]);
  });
});

describe("introspect", () => {
  it("is active until exp, then EXPIRED; clock skew extends the edge", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    f.clock.set(pair.accessExpiresAt - 1);
    expect((await f.authority.introspect(pair.accessToken, "access")).active).toBe(true);
    f.clock.set(pair.accessExpiresAt);
    expect(await f.authority.introspect(pair.accessToken, "access")).toEqual({ active: false, reason: "expired" });

    const g = await makeAuthority({ clockSkewMs: 5 * S });
    const p2 = (await issueFor(g)).pair;
    g.clock.set(p2.accessExpiresAt + 5 * S - 1);
    expect((await g.authority.introspect(p2.accessToken, "access")).active).toBe(true);
    g.clock.set(p2.accessExpiresAt + 5 * S);
    expect((await g.authority.introspect(p2.accessToken, "access")).active).toBe(false);
  });

  it("never reports a token active as the other type", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    expect(await f.authority.introspect(pair.refreshToken, "access")).toEqual({ active: false, reason: "wrong_type" });
    expect(await f.authority.introspect(pair.accessToken, "refresh")).toEqual({ active: false, reason: "wrong_type" });
    const r = await f.authority.introspect(pair.refreshToken, "refresh");
    expect(r.active && r.token.kind).toBe("refresh");
  });

  it("checks the requested audience", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    expect((await f.authority.introspect(pair.accessToken, "access", "api")).active).toBe(true);
    expect(await f.authority.introspect(pair.accessToken, "access", "other")).toEqual({
      active: false,
      reason: "wrong_audience",
    });
  });

  it("reports a token from a future issue time as NOT_YET_VALID", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    f.clock.advance(-2 * S);
    expect(await f.authority.introspect(pair.accessToken, "access")).toEqual({ active: false, reason: "not_yet_valid" });
  });
});

describe("refresh", () => {
  it("rotates: new pair with the same grant, old refresh token ROTATED, session last-used moves", async () => {
    const f = await makeAuthority();
    const { pair, sessionId } = await issueFor(f);
    f.clock.advance(MIN);
    const next = await f.authority.refresh(pair.refreshToken, PHONE);
    expect(next.sessionId).toBe(sessionId);
    expect(next.pair.refreshToken).not.toBe(pair.refreshToken);
    expect(next.pair.refreshExpiresAt).toBe(pair.refreshExpiresAt);
    const claims = decodeJwt(next.pair.accessToken);
    expect(claims).toMatchObject({ sub: "alice", aud: ["api"], scope: "read write", tenant: "t1", sid: sessionId });
    expect(await f.authority.introspect(pair.refreshToken, "refresh")).toEqual({ active: false, reason: "rotated" });
    expect((await f.authority.introspect(next.pair.refreshToken, "refresh")).active).toBe(true);
    // the first access token stays valid: rotation is not revocation
    expect((await f.authority.introspect(pair.accessToken, "access")).active).toBe(true);
    const s = await f.authority.getSession(sessionId);
    expect(s.lastUsedAt).toBe(f.clock.now());
    expect(s.idleExpiresAt).toBe(f.clock.now() + D);
  });

  it("grace window: a retry from the same client just inside gets the same pair; at the edge it is reuse", async () => {
    const f = await makeAuthority({ refreshGraceMs: 10 * S });
    const { pair } = await issueFor(f);
    const first = await f.authority.refresh(pair.refreshToken, PHONE);
    f.clock.advance(10 * S - 1);
    const retry = await f.authority.refresh(pair.refreshToken, PHONE);
    expect(retry).toEqual(first);
    f.clock.advance(1);
    await expectError(f.authority.refresh(pair.refreshToken, PHONE), "unauthenticated", /reuse/);
    expect(f.events.map((e) => e.type)).toEqual(["refresh_reuse"]);
    expect(await f.authority.introspect(first.pair.accessToken, "access")).toEqual({ active: false, reason: "revoked" });
    await expectError(f.authority.refresh(first.pair.refreshToken, PHONE), "unauthenticated", /ended/);
  });

  it("grace window: the same token from another client is theft", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    const first = await f.authority.refresh(pair.refreshToken, PHONE);
    await expectError(f.authority.refresh(pair.refreshToken, LAPTOP), "unauthenticated", /reuse/);
    expect((await f.authority.introspect(first.pair.accessToken, "access")).active).toBe(false);
  });

  it("without a grace window any second use is theft", async () => {
    const f = await makeAuthority({ refreshGraceMs: 0 });
    const { pair } = await issueFor(f);
    await f.authority.refresh(pair.refreshToken, PHONE);
    await expectError(f.authority.refresh(pair.refreshToken, PHONE), "unauthenticated", /reuse/);
  });

  it("without a grace window, a racing call whose clock reading predates the winner's is still theft", async () => {
    const f = await makeAuthority({ refreshGraceMs: 0 });
    const { pair } = await issueFor(f);
    f.clock.advance(1);
    await f.authority.refresh(pair.refreshToken, PHONE);
    f.clock.advance(-1); // the loser read the clock first but reached the store second
    await expectError(f.authority.refresh(pair.refreshToken, PHONE), "unauthenticated", /reuse/);
  });

  it("a token two rotations old is theft even inside the grace window", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    const second = await f.authority.refresh(pair.refreshToken, PHONE);
    await f.authority.refresh(second.pair.refreshToken, PHONE);
    await expectError(f.authority.refresh(pair.refreshToken, PHONE), "unauthenticated", /reuse/);
  });

  it("idle timeout ends the session; refreshing in time keeps it alive", async () => {
    const f = await makeAuthority({ refreshIdleTtlMs: H });
    const { pair } = await issueFor(f);
    f.clock.advance(H - 1);
    const kept = await f.authority.refresh(pair.refreshToken, PHONE);
    f.clock.advance(H);
    await expectError(f.authority.refresh(kept.pair.refreshToken, PHONE), "unauthenticated", /ended/);
    expect(await f.authority.introspect(kept.pair.refreshToken, "refresh")).toEqual({
      active: false,
      reason: "session_ended",
    });
  });

  it("an access token never outlives its session's idle end: capped at issue and at every refresh", async () => {
    const f = await makeAuthority({ refreshIdleTtlMs: 10 * MIN }); // shorter than the 15-minute access TTL
    const { pair } = await issueFor(f);
    const idleEnd = (await f.authority.listSessions("alice"))[0]!.idleExpiresAt;
    expect(pair.accessExpiresAt).toBe(Math.floor(idleEnd / 1000) * 1000);
    expect(decodeJwt(pair.accessToken).exp).toBe(Math.floor(idleEnd / 1000));
    f.clock.advance(5 * MIN);
    const next = await f.authority.refresh(pair.refreshToken, PHONE);
    const movedEnd = (await f.authority.listSessions("alice"))[0]!.idleExpiresAt;
    expect(movedEnd).toBe(f.clock.now() + 10 * MIN);
    expect(next.pair.accessExpiresAt).toBe(Math.floor(movedEnd / 1000) * 1000);
    // With the usual idle TTL (longer than the access TTL) nothing changes: the access TTL decides.
    const g = await makeAuthority();
    const usual = await issueFor(g);
    expect(usual.pair.accessExpiresAt).toBe(Math.floor((g.clock.now() + 15 * MIN) / 1000) * 1000);
  });

  it("the absolute lifetime ends the session however often it is refreshed", async () => {
    const f = await makeAuthority({ refreshIdleTtlMs: D, refreshTtlMs: 3 * D });
    let { pair } = await issueFor(f);
    for (let i = 0; i < 3; i++) {
      f.clock.advance(D - S);
      pair = (await f.authority.refresh(pair.refreshToken, PHONE)).pair;
    }
    f.clock.advance(D);
    const r = await f.authority.refresh(pair.refreshToken, PHONE).catch((e: TesseraError) => e);
    expect(r).toBeInstanceOf(TesseraError);
    expect((r as TesseraError).code).toBe("unauthenticated");
  });

  it("an access token cannot be used as a refresh token", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    const err = await expectError(f.authority.refresh(pair.accessToken, PHONE), "unauthenticated");
    expect(err.cause).toBe("wrong_type");
  });
});

describe("revoke", () => {
  it("an access token stays revoked until its own expiry; others of the session live", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    const next = await f.authority.refresh(pair.refreshToken, PHONE);
    expect(await f.authority.revokeToken(pair.accessToken, "test")).toEqual({ sessionsRevoked: 0, tokenRevoked: true });
    expect(await f.authority.revokeToken(pair.accessToken, "again")).toEqual({ sessionsRevoked: 0, tokenRevoked: false });
    expect(await f.authority.introspect(pair.accessToken, "access")).toEqual({ active: false, reason: "revoked" });
    expect((await f.authority.introspect(next.pair.accessToken, "access")).active).toBe(true);
  });

  it("a refresh token ends its session and every access token of it", async () => {
    const f = await makeAuthority();
    const { pair, sessionId } = await issueFor(f);
    expect(await f.authority.revokeToken(pair.refreshToken, "logout")).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    expect(await f.authority.introspect(pair.accessToken, "access")).toEqual({ active: false, reason: "revoked" });
    await expectError(f.authority.getSession(sessionId), "not_found");
  });

  it("an expired token needs nothing; a forged one is INVALID_ARGUMENT", async () => {
    const f = await makeAuthority();
    const { pair } = await issueFor(f);
    f.clock.set(pair.accessExpiresAt);
    expect(await f.authority.revokeToken(pair.accessToken, "late")).toEqual({ sessionsRevoked: 0, tokenRevoked: false });
    const [h, p] = pair.accessToken.split(".");
    await expectError(f.authority.revokeToken(`${h}.${p}.AAAA`, "x"), "invalid_argument");
  });

  it("by session is idempotent", async () => {
    const f = await makeAuthority();
    const { sessionId } = await issueFor(f);
    expect(await f.authority.revokeSession(sessionId, "x")).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    expect(await f.authority.revokeSession(sessionId, "x")).toEqual({ sessionsRevoked: 0, tokenRevoked: false });
    expect(await f.authority.revokeSession("no-such-session", "x")).toEqual({ sessionsRevoked: 0, tokenRevoked: false });
  });

  it("by subject: every session dies, other subjects live, a login in the same millisecond works", async () => {
    const f = await makeAuthority();
    const a1 = await issueFor(f, "alice", PHONE);
    const a2 = await issueFor(f, "alice", LAPTOP);
    const b = await issueFor(f, "bob", PHONE);
    expect(await f.authority.revokeSubject("alice", "logout everywhere")).toEqual({ sessionsRevoked: 2, tokenRevoked: false });
    for (const t of [a1.pair.accessToken, a2.pair.accessToken]) {
      expect(await f.authority.introspect(t, "access")).toEqual({ active: false, reason: "revoked" });
    }
    await expectError(f.authority.refresh(a1.pair.refreshToken, PHONE), "unauthenticated");
    expect((await f.authority.introspect(b.pair.accessToken, "access")).active).toBe(true);
    // same clock reading, same second: the new login is not caught by the logout
    const again = await issueFor(f, "alice", PHONE);
    expect((await f.authority.introspect(again.pair.accessToken, "access")).active).toBe(true);
    expect((await f.authority.refresh(again.pair.refreshToken, PHONE)).sessionId).toBe(again.sessionId);
  });
});

describe("signing algorithms", () => {
  it.each(["ES256", "EdDSA", "RS256", "PS256"] as const)("%s round-trips", async (alg) => {
    const f = await makeAuthority({}, { alg });
    const { pair } = await issueFor(f);
    expect(decodeProtectedHeader(pair.accessToken).alg).toBe(alg);
    expect((await f.authority.introspect(pair.accessToken, "access")).active).toBe(true);
  });
});
