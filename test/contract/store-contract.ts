/**
 * The shared store contract: one suite that every `Store` backend runs (see `store.contract.test.ts`). It holds a
 * backend to the doc comments of `src/domain/store.ts`. Every instant is passed in (from `T0`), nothing sleeps, and
 * each test gets a fresh, empty store from `makeStore`.
 */
import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair } from "jose";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { newSessionId } from "../../src/domain/ids.js";
import { auditContract } from "./audit-contract.js";
import type {
  IssuedPair,
  RevocationEvent,
  RotateInput,
  RotateResult,
  SessionRecord,
  Store,
  StoredKey,
} from "../../src/domain/store.js";

export type StoreFactory = () => Promise<{ store: Store; cleanup: () => Promise<void> }>;

const T0 = Date.UTC(2026, 0, 1);
const SEC = 1_000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const IDLE = HOUR;
const LIFETIME = 30 * DAY;
const GRACE = 10 * SEC;
const RETENTION = DAY;
const MAX_SESSIONS = 10;
const FP = "fingerprint-of-the-client";
const OTHER_FP = "fingerprint-of-someone-else";

/** A feed entry without its backend-chosen id. */
type FeedEntry = Omit<RevocationEvent, "id">;

/** Any non-blank text: the reason of a revocation the store decides on (eviction, reuse) is its own wording. */
const someReason = () => expect.stringMatching(/\S/);

async function makeKey(alg: "ES256" | "EdDSA", createdAt: number): Promise<StoredKey> {
  const kid = randomUUID();
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg, use: "sig" };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, createdAt, privateJwk, publicJwk };
}

/** Two ES256 keys and an EdDSA key, created in that order. */
function esEsEd(): Promise<[StoredKey, StoredKey, StoredKey]> {
  return Promise.all([makeKey("ES256", T0), makeKey("ES256", T0 + 1), makeKey("EdDSA", T0 + 2)]);
}

/** A session opened at `at` (created = last used = at) with its own id, client and first refresh jti. */
function sessionAt(at: number, over: Partial<SessionRecord> = {}): SessionRecord {
  const subject = over.subject ?? "alice";
  const id = over.id ?? newSessionId(subject);
  return {
    id,
    subject,
    client: { deviceId: `device-${id}`, userAgent: "tessera-contract/1.0", ip: "203.0.113.7", platform: "linux" },
    createdAt: at,
    lastUsedAt: at,
    idleExpiresAt: at + IDLE,
    expiresAt: at + LIFETIME,
    currentJti: `jti-${randomUUID()}`,
    ...over,
  };
}

function pairFor(jti: string, now: number): IssuedPair {
  return {
    accessToken: `access.${jti}`,
    refreshToken: `refresh.${jti}`,
    accessExpiresAt: now + 5 * MIN,
    refreshExpiresAt: now + LIFETIME,
  };
}

/** A rotation of `s` presenting `presentedJti` at `now`, with a fresh successor; `over` changes any input. */
function rotation(s: SessionRecord, presentedJti: string, now: number, over: Partial<RotateInput> = {}): RotateInput {
  const nextJti = over.nextJti ?? `jti-${randomUUID()}`;
  return {
    subject: s.subject,
    sessionId: s.id,
    presentedJti,
    nextJti,
    nextPair: pairFor(nextJti, now),
    clientFingerprint: FP,
    now,
    graceMs: GRACE,
    idleTtlMs: IDLE,
    retentionMs: RETENTION,
    ...over,
  };
}

function countOutcomes(results: RotateResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) {
    const key = r.outcome === "ended" ? `ended:${r.why}` : r.outcome;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

export function storeContract(name: string, makeStore: StoreFactory): void {
  describe(name, () => {
    let store: Store;
    const cleanups: Array<() => Promise<void>> = [];

    /** Another fresh store from the factory, cleaned up with the test's own. */
    async function freshStore(): Promise<Store> {
      const made = await makeStore();
      cleanups.push(made.cleanup);
      return made.store;
    }

    beforeEach(async () => {
      store = await freshStore();
    });

    afterEach(async () => {
      for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    });

    /** Opens `s` (at its createdAt unless `now` is given) and returns the ids the store evicted. */
    async function open(s: SessionRecord, maxSessions = MAX_SESSIONS, now = s.createdAt): Promise<string[]> {
      const { evicted } = await store.createSession(s, { maxSessions, now, retentionMs: RETENTION });
      return evicted;
    }

    /** Opens one session of alice at T0 (changed by `over`) and returns it. */
    async function opened(over: Partial<SessionRecord> = {}): Promise<SessionRecord> {
      const s = sessionAt(T0, over);
      expect(await open(s)).toEqual([]);
      return s;
    }

    /** Opens one session per instant, all of `subject`. */
    async function openMany(instants: number[], subject = "alice", maxSessions = MAX_SESSIONS) {
      const out: SessionRecord[] = [];
      for (const at of instants) {
        const s = sessionAt(at, { subject });
        expect(await open(s, maxSessions)).toEqual([]);
        out.push(s);
      }
      return out;
    }

    /** Rotates `s` from its current jti at `now`, expects "rotated", and returns the session as it is now. */
    async function rotated(s: SessionRecord, now: number, over: Partial<RotateInput> = {}): Promise<SessionRecord> {
      const input = rotation(s, s.currentJti, now, over);
      const result = await store.rotateRefresh(input);
      expect(result.outcome).toBe("rotated");
      if (result.outcome !== "rotated") throw new Error("unreachable");
      expect(result.session.currentJti).toBe(input.nextJti);
      return result.session;
    }

    /** 20 refreshes of `s` presenting its current jti at once (T0 + 1 min), each with its own successor. */
    async function refreshRace(s: SessionRecord, over: Partial<RotateInput> = {}) {
      const inputs = Array.from({ length: 20 }, () => rotation(s, s.currentJti, T0 + MIN, over));
      const results = await Promise.all(inputs.map((input) => store.rotateRefresh(input)));
      return { inputs, results };
    }

    function stateOf(s: SessionRecord, jti = s.currentJti) {
      return store.tokenState({ subject: s.subject, sessionId: s.id, jti });
    }

    async function expectRevoked(s: SessionRecord, now: number): Promise<void> {
      expect((await stateOf(s)).session?.status).toBe("revoked");
      expect(await store.getSession(s.id, now)).toBeNull();
    }

    async function expectLive(s: SessionRecord, now: number): Promise<void> {
      expect((await stateOf(s)).session?.status).toBe("active");
      expect((await store.getSession(s.id, now))?.id).toBe(s.id);
    }

    async function liveIds(subject: string, now: number): Promise<string[]> {
      return (await store.listSessions(subject, now)).map((s) => s.id);
    }

    /** The whole feed, oldest first, without ids. */
    async function feed(): Promise<FeedEntry[]> {
      return (await store.revocations(null, 10_000)).map(({ id: _id, ...rest }) => rest);
    }

    function sessionEvent(s: SessionRecord, at: number, reason: unknown = someReason()): FeedEntry {
      return { kind: "session", subject: s.subject, target: s.id, at, reason } as FeedEntry;
    }

    /** Revokes one token of alice that expires in an hour; returns what the store answered. */
    function revokeJti(jti: string, now = T0, reason = "logout"): Promise<boolean> {
      return store.revokeToken({ subject: "alice", jti, expiresAt: now + HOUR, now, reason });
    }

    describe("keys", () => {
      it("addKey returns the keys after the call; listKeys round-trips every field, oldest first", async () => {
        const [k1, k2, k3] = await esEsEd();
        expect(await store.listKeys()).toEqual([]);
        expect(await store.addKey(k1, false)).toEqual([k1]);
        expect(await store.addKey(k2, false)).toEqual([k1, k2]);
        expect(await store.addKey(k3, false)).toEqual([k1, k2, k3]);
        expect(await store.listKeys()).toEqual([k1, k2, k3]);
      });

      it("onlyIfAlgAbsent adds no second key of a present algorithm but adds one of another", async () => {
        const [es1, es2, ed] = await esEsEd();
        expect(await store.addKey(es1, true)).toEqual([es1]);
        expect(await store.addKey(es2, true)).toEqual([es1]);
        expect(await store.addKey(ed, true)).toEqual([es1, ed]);
        expect(await store.listKeys()).toEqual([es1, ed]);
      });

      it("concurrent addKey(onlyIfAlgAbsent) of two keys of one algorithm leaves exactly one", async () => {
        const [a, b] = await Promise.all([makeKey("ES256", T0), makeKey("ES256", T0)]);
        const answers = await Promise.all([store.addKey(a, true), store.addKey(b, true)]);
        const keys = await store.listKeys();
        expect(keys).toHaveLength(1);
        expect([a.kid, b.kid]).toContain(keys[0]!.kid);
        for (const answer of answers) expect(answer).toEqual(keys);
      });
    });

    describe("sessions", () => {
      it("createSession then getSession and listSessions round-trip every field", async () => {
        const s = await opened({
          client: {
            deviceId: "device-7",
            userAgent: 'Mozilla/5.0 (X11; "Ünïcødé" 📱) \\ end/',
            ip: "2001:db8::1",
            platform: "android",
          },
        });
        expect(await store.getSession(s.id, T0)).toEqual(s);
        expect(await store.listSessions("alice", T0)).toEqual([s]);
      });

      it("listSessions lists only live sessions of the subject, most recently used first", async () => {
        const [a, b, c] = await openMany([T0, T0 + 2, T0 + 1]);
        const idled = sessionAt(T0, { idleExpiresAt: T0 + 30 * SEC });
        const revoked = sessionAt(T0 + 3);
        const bobs = sessionAt(T0 + 4, { subject: "bob" });
        for (const s of [idled, revoked, bobs]) await open(s);
        expect(await store.revokeSession({ sessionId: revoked.id, now: T0 + 5, retentionMs: RETENTION, reason: "x" }))
          .toBe(true);
        expect(await liveIds("alice", T0 + MIN)).toEqual([b!.id, c!.id, a!.id]);
        expect(await liveIds("bob", T0 + MIN)).toEqual([bobs.id]);
        expect(await store.listSessions("nobody", T0)).toEqual([]);
      });

      it("getSession of an unknown id, or of a string that is no session id, is null", async () => {
        const s = await opened();
        expect(await store.getSession(newSessionId("alice"), T0)).toBeNull();
        for (const id of [randomUUID(), "", "x", `${s.id}x`, s.id.slice(0, -1), `${s.id.slice(0, -1)}.`]) {
          expect(await store.getSession(id, T0), id).toBeNull();
        }
        expect(await store.getSession(s.id, T0)).toEqual(s);
      });

      it("createSession refuses an id not minted for the session's subject, and stores nothing", async () => {
        for (const id of [newSessionId("bob"), randomUUID(), "", "s-1"]) {
          await expect(store.createSession(sessionAt(T0, { id }), { maxSessions: 5, now: T0, retentionMs: RETENTION }))
            .rejects.toThrow(/not minted for its subject/);
        }
        expect(await store.listSessions("alice", T0)).toEqual([]);
      });

      it("a session is not live from its idle expiry on", async () => {
        const s = await opened();
        expect(await store.getSession(s.id, T0 + IDLE - 1)).toEqual(s);
        expect(await store.getSession(s.id, T0 + IDLE)).toBeNull();
        expect(await store.listSessions("alice", T0 + IDLE)).toEqual([]);
      });

      it("a session is not live from its absolute expiry on, whatever its idle expiry says", async () => {
        const s = await opened({ idleExpiresAt: T0 + 2 * HOUR, expiresAt: T0 + HOUR });
        expect(await store.getSession(s.id, T0 + HOUR - 1)).toEqual(s);
        expect(await store.getSession(s.id, T0 + HOUR)).toBeNull();
        expect(await store.listSessions("alice", T0 + HOUR)).toEqual([]);
      });
    });

    describe("eviction", () => {
      it("past maxSessions the least recently used session is evicted, revoked and returned", async () => {
        const [s1, s2, s3] = await openMany([T0, T0 + 1, T0 + 2], "alice", 3);
        const s4 = sessionAt(T0 + 3);
        expect(await open(s4, 3)).toEqual([s1!.id]);
        await expectRevoked(s1!, T0 + 3);
        for (const s of [s2!, s3!, s4]) await expectLive(s, T0 + 3);
        expect(await liveIds("alice", T0 + 3)).toEqual([s4.id, s3!.id, s2!.id]);
        expect(await feed()).toEqual([sessionEvent(s1!, T0 + 3)]);
      });

      it("rotating a session makes it the most recently used, which changes who is evicted next", async () => {
        const [s1, s2, s3] = await openMany([T0, T0 + 1, T0 + 2], "alice", 3);
        await rotated(s1!, T0 + 10);
        expect(await open(sessionAt(T0 + 20), 3)).toEqual([s2!.id]);
        expect(await open(sessionAt(T0 + 30), 3)).toEqual([s3!.id]);
        expect(await open(sessionAt(T0 + 40), 3)).toEqual([s1!.id]);
      });
    });

    describe("rotateRefresh", () => {
      it("rotates: new current jti, last used now, idle expiry pushed out", async () => {
        const s = await opened();
        const now = T0 + 5 * MIN;
        const input = rotation(s, s.currentJti, now);
        const want = { ...s, currentJti: input.nextJti, lastUsedAt: now, idleExpiresAt: now + IDLE };
        expect(await store.rotateRefresh(input)).toEqual({ outcome: "rotated", session: want });
        expect(await store.getSession(s.id, now)).toEqual(want);
        expect((await stateOf(s, input.nextJti)).session?.currentJti).toBe(input.nextJti);
      });

      it("caps the new idle expiry at the absolute expiry", async () => {
        const s = await opened({ expiresAt: T0 + 90 * MIN });
        const after = await rotated(s, T0 + 45 * MIN);
        expect(after.idleExpiresAt).toBe(s.expiresAt);
        expect(await store.getSession(s.id, T0 + 90 * MIN - 1)).toEqual(after);
      });

      it("a retry of the previous jti by the same client inside the grace window replays the pair", async () => {
        const s = await opened();
        const first = rotation(s, s.currentJti, T0 + MIN);
        await store.rotateRefresh(first);
        const retry = await store.rotateRefresh(rotation(s, s.currentJti, T0 + MIN + GRACE - 1));
        expect(retry.outcome).toBe("replayed");
        if (retry.outcome !== "replayed") return;
        expect(retry.pair).toEqual(first.nextPair);
        expect(retry.session.currentJti).toBe(first.nextJti);
        expect((await store.getSession(s.id, T0 + 2 * MIN))?.currentJti).toBe(first.nextJti);
        expect(await feed()).toEqual([]);
        // Nothing rotated or revoked: the winner's token is still the current one.
        await rotated({ ...s, currentJti: first.nextJti }, T0 + 2 * MIN);
      });

      it.each<[string, Partial<RotateInput> & { now: number }]>([
        ["at exactly graceMs after the rotation", { now: T0 + MIN + GRACE }],
        ["from another client inside the grace window", { now: T0 + MIN + 1, clientFingerprint: OTHER_FP }],
        ["with graceMs = 0", { now: T0 + MIN, graceMs: 0 }],
      ])("a retry of the previous jti %s is reuse and revokes the session", async (_, over) => {
        const s = await opened();
        const first = rotation(s, s.currentJti, T0 + MIN, { graceMs: over.graceMs ?? GRACE });
        await store.rotateRefresh(first);
        expect(await store.rotateRefresh(rotation(s, s.currentJti, over.now, over))).toEqual({ outcome: "reused" });
        const current = { ...s, currentJti: first.nextJti };
        await expectRevoked(current, over.now);
        expect(await store.rotateRefresh(rotation(current, current.currentJti, over.now + 1))).toEqual({
          outcome: "ended",
          why: "revoked",
        });
        expect(await feed()).toEqual([sessionEvent(s, over.now)]);
      });

      it("a jti older than the previous one is reuse", async () => {
        const s = await opened();
        const s1 = await rotated(s, T0 + 1);
        await rotated(s1, T0 + 2);
        expect(await store.rotateRefresh(rotation(s, s.currentJti, T0 + 3))).toEqual({ outcome: "reused" });
        await expectRevoked(s, T0 + 3);
      });

      it("an unknown session or another subject's session has ended (missing) and nothing changes", async () => {
        const s = await opened();
        const ended = { outcome: "ended", why: "missing" };
        const unknown = rotation(s, s.currentJti, T0 + 1, { sessionId: randomUUID() });
        expect(await store.rotateRefresh(unknown)).toEqual(ended);
        expect(await store.rotateRefresh(rotation(s, s.currentJti, T0 + 1, { subject: "mallory" }))).toEqual(ended);
        expect(await store.getSession(s.id, T0 + 1)).toEqual(s);
        expect(await feed()).toEqual([]);
      });

      it.each<[string, Partial<SessionRecord>, number]>([
        ["idle", {}, T0 + IDLE],
        ["absolute", { idleExpiresAt: T0 + 2 * HOUR, expiresAt: T0 + HOUR }, T0 + HOUR],
      ])("a session past its %s expiry has ended", async (_, over, now) => {
        const s = await opened(over);
        expect((await store.rotateRefresh(rotation(s, s.currentJti, now))).outcome).toBe("ended");
        expect(await feed()).toEqual([]);
      });

      it("20 concurrent refreshes of one token, graceMs > 0: one rotates, the rest replay its pair", async () => {
        const s = await opened();
        const { inputs, results } = await refreshRace(s);
        expect(countOutcomes(results)).toEqual({ rotated: 1, replayed: 19 });
        const winner = inputs[results.findIndex((r) => r.outcome === "rotated")]!;
        for (const r of results) {
          if (r.outcome === "replayed") expect(r.pair).toEqual(winner.nextPair);
        }
        expect((await store.getSession(s.id, T0 + MIN))?.currentJti).toBe(winner.nextJti);
      });

      it("20 concurrent refreshes of one token, graceMs = 0: one rotates, one is reuse, the rest end", async () => {
        // "reused" means "this call revoked the session", so only one call can get it; the later ones see a revoked
        // session and end with why "revoked".
        const s = await opened();
        const { results } = await refreshRace(s, { graceMs: 0 });
        expect(countOutcomes(results)).toEqual({ rotated: 1, reused: 1, "ended:revoked": 18 });
        await expectRevoked(s, T0 + MIN);
        expect(await feed()).toEqual([sessionEvent(s, T0 + MIN)]);
      });
    });

    describe("tokenState", () => {
      it("reports the session's status, expiries and current jti", async () => {
        const s = await opened();
        expect(await stateOf(s)).toEqual({
          jtiRevoked: false,
          session: {
            status: "active",
            createdAt: s.createdAt,
            idleExpiresAt: s.idleExpiresAt,
            expiresAt: s.expiresAt,
            currentJti: s.currentJti,
          },
        });
        const after = await rotated(s, T0 + 1);
        expect((await stateOf(s)).session?.currentJti).toBe(after.currentJti);
      });

      it("has no session for an unknown session id", async () => {
        expect(await store.tokenState({ subject: "alice", sessionId: randomUUID(), jti: "j" })).toEqual({
          jtiRevoked: false,
          session: null,
        });
      });

      it("reports jtiRevoked once the jti is revoked, for that jti only", async () => {
        const s = await opened();
        expect((await stateOf(s, "access-1")).jtiRevoked).toBe(false);
        expect(await revokeJti("access-1")).toBe(true);
        expect((await stateOf(s, "access-1")).jtiRevoked).toBe(true);
        expect((await stateOf(s, "access-2")).jtiRevoked).toBe(false);
        expect((await stateOf(s, "access-1")).session?.status).toBe("active");
      });
    });

    describe("revokeToken", () => {
      it("is true the first time and false the second", async () => {
        expect(await revokeJti("j1", T0, "first")).toBe(true);
        expect(await revokeJti("j1", T0 + 1, "second")).toBe(false);
        expect(await feed()).toEqual([{ kind: "token", subject: "alice", target: "j1", at: T0, reason: "first" }]);
      });

      it("is false for a token already expired, and records nothing", async () => {
        const q = { subject: "alice", now: T0, reason: "late" };
        expect(await store.revokeToken({ ...q, jti: "at-now", expiresAt: T0 })).toBe(false);
        expect(await store.revokeToken({ ...q, jti: "before", expiresAt: T0 - 1 })).toBe(false);
        expect(
          (await store.tokenState({ subject: "alice", sessionId: randomUUID(), jti: "at-now" })).jtiRevoked,
        ).toBe(false);
        expect(await feed()).toEqual([]);
      });
    });

    describe("revokeSession", () => {
      function revoke(s: SessionRecord, now: number, subject: string | undefined = s.subject) {
        return store.revokeSession({ sessionId: s.id, subject, now, retentionMs: RETENTION, reason: "user logout" });
      }

      it("is true and revokes, then false (idempotent)", async () => {
        const s = await opened();
        expect(await revoke(s, T0 + 1)).toBe(true);
        await expectRevoked(s, T0 + 1);
        expect(await revoke(s, T0 + 2)).toBe(false);
        expect(await feed()).toEqual([sessionEvent(s, T0 + 1, "user logout")]);
      });

      it("is false with another subject, and the session stays live", async () => {
        const s = await opened();
        expect(await revoke(s, T0 + 1, "mallory")).toBe(false);
        await expectLive(s, T0 + 1);
        expect(await feed()).toEqual([]);
      });

      it("works without a subject (the store looks the session up)", async () => {
        const s = await opened();
        expect(await revoke(s, T0 + 1, undefined)).toBe(true);
        await expectRevoked(s, T0 + 1);
        expect(await feed()).toEqual([sessionEvent(s, T0 + 1, "user logout")]);
      });

      it("is false for an unknown or expired session, or a string that is no session id", async () => {
        const s = await opened();
        expect(await revoke(sessionAt(T0), T0 + 1)).toBe(false);
        expect(await revoke(s, T0 + IDLE)).toBe(false);
        for (const sessionId of [randomUUID(), "", `${s.id}x`]) {
          expect(await store.revokeSession({ sessionId, now: T0 + 1, retentionMs: RETENTION, reason: "r" })).toBe(false);
        }
        expect(await feed()).toEqual([]);
        await expectLive(s, T0 + 1);
      });
    });

    describe("revokeSubject", () => {
      it("revokes every live session of the subject, counts them, and appends one subject entry", async () => {
        const now = T0 + MIN;
        const alices = await openMany([T0, T0 + 1, T0 + 2]);
        const gone = sessionAt(T0 + 3);
        await open(gone);
        await store.revokeSession({ sessionId: gone.id, now: T0 + 4, retentionMs: RETENTION, reason: "x" });
        const [bobs] = await openMany([T0], "bob");
        const before = (await feed()).length;
        const q = { subject: "alice", now, retentionMs: RETENTION, reason: "logout everywhere" };
        expect(await store.revokeSubject(q)).toBe(3);
        for (const s of alices) await expectRevoked(s, now);
        expect(await store.listSessions("alice", now)).toEqual([]);
        await expectLive(bobs!, now);
        expect((await feed()).slice(before)).toEqual([
          { kind: "subject", subject: "alice", target: "", at: now, reason: "logout everywhere" },
        ]);
      });

      it("a session opened afterwards in the same millisecond lives", async () => {
        await openMany([T0]);
        const q = { subject: "alice", now: T0 + 1, retentionMs: RETENTION, reason: "r" };
        expect(await store.revokeSubject(q)).toBe(1);
        const s = sessionAt(T0 + 1);
        await open(s);
        await expectLive(s, T0 + 1);
        expect(await liveIds("alice", T0 + 1)).toEqual([s.id]);
        await rotated(s, T0 + 2);
      });
    });

    describe("revocation feed", () => {
      it("records every kind of revocation in order with kind, subject, target, reason and at", async () => {
        const [evictee, reused, revoked] = await openMany([T0, T0 + 1, T0 + 2], "alice", 3);
        expect(await revokeJti("jti-x", T0 + 10, "token reason")).toBe(true);
        const q = { sessionId: revoked!.id, now: T0 + 20, retentionMs: RETENTION, reason: "session reason" };
        expect(await store.revokeSession(q)).toBe(true);
        expect(await open(sessionAt(T0 + 30), 2)).toEqual([evictee!.id]);
        await rotated(reused!, T0 + 40, { graceMs: 0 });
        await store.rotateRefresh(rotation(reused!, reused!.currentJti, T0 + 50, { graceMs: 0 }));
        await store.revokeSubject({ subject: "alice", now: T0 + 60, retentionMs: RETENTION, reason: "subject reason" });
        expect(await feed()).toEqual([
          { kind: "token", subject: "alice", target: "jti-x", at: T0 + 10, reason: "token reason" },
          sessionEvent(revoked!, T0 + 20, "session reason"),
          sessionEvent(evictee!, T0 + 30),
          sessionEvent(reused!, T0 + 50),
          { kind: "subject", subject: "alice", target: "", at: T0 + 60, reason: "subject reason" },
        ]);
      });

      it("pages by cursor: in order, limit respected, nothing twice, nothing left out", async () => {
        const jtis = Array.from({ length: 7 }, (_, i) => `jti-${i}`);
        for (const [i, jti] of jtis.entries()) expect(await revokeJti(jti, T0 + i)).toBe(true);
        const all = await store.revocations(null, 100);
        expect(all.map((e) => e.target)).toEqual(jtis);
        expect(await store.revocations(null, 3)).toEqual(all.slice(0, 3));
        const pages: RevocationEvent[][] = [];
        let cursor: string | null = null;
        // Bounded, so a cursor that does not advance fails the test instead of hanging it.
        for (let i = 0; i < 5; i++) {
          const page: RevocationEvent[] = await store.revocations(cursor, 3);
          if (page.length === 0) break;
          pages.push(page);
          cursor = page[page.length - 1]!.id;
        }
        expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
        expect(pages.flat()).toEqual(all);
        expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
        expect(await store.revocations(all[4]!.id, 100)).toEqual(all.slice(5));
      });
    });

    auditContract(() => store);

    describe("isolation", () => {
      it("two stores do not see each other's state", async () => {
        const other = await freshStore();
        const key = await makeKey("ES256", T0);
        const s = sessionAt(T0);
        await store.addKey(key, true);
        await open(s);
        expect(await revokeJti("jti-a")).toBe(true);
        expect(await other.listKeys()).toEqual([]);
        expect(await other.getSession(s.id, T0)).toBeNull();
        expect(await other.listSessions("alice", T0)).toEqual([]);
        expect(await other.tokenState({ subject: "alice", sessionId: s.id, jti: "jti-a" })).toEqual({
          jtiRevoked: false,
          session: null,
        });
        expect(await other.revocations(null, 100)).toEqual([]);
        expect(await other.revokeSubject({ subject: "alice", now: T0, retentionMs: RETENTION, reason: "r" })).toBe(0);
        await expectLive(s, T0);
      });
    });
  });
}
