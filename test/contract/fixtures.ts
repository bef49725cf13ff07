/**
 * What the contract suites share: the instants, sizes and builders of keys, sessions and rotations, the store
 * lifecycle of a test (a fresh, empty store from the backend per test, cleaned up after it), and the session helpers.
 * Every instant is passed in (from `T0`); nothing sleeps.
 */
import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair } from "jose";
import { afterEach, expect } from "vitest";
import { newSessionId } from "../../src/domain/ids.js";
import type {
  IssuedPair,
  RevocationEvent,
  RevocationFeed,
  RotateInput,
  RotateResult,
  SessionRecord,
  SessionStore,
  StoredKey,
} from "../../src/domain/store.js";

/** Makes a fresh, empty store of one backend, and the cleanup that removes it. */
export type StoreFactory<S> = () => Promise<{ store: S; cleanup: () => Promise<void> }>;

/**
 * Fresh stores for the tests of the enclosing describe block: every store made during a test is cleaned up after
 * it, newest first. Call inside `describe`.
 */
export function storesFrom<S>(make: StoreFactory<S>): { fresh(): Promise<S> } {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  return {
    async fresh() {
      const made = await make();
      cleanups.push(made.cleanup);
      return made.store;
    },
  };
}

export const T0 = Date.UTC(2026, 0, 1);
export const SEC = 1_000;
export const MIN = 60 * SEC;
export const HOUR = 60 * MIN;
export const DAY = 24 * HOUR;
export const IDLE = HOUR;
export const LIFETIME = 30 * DAY;
export const GRACE = 10 * SEC;
export const RETENTION = DAY;
export const MAX_SESSIONS = 10;
export const FP = "fingerprint-of-the-client";
export const OTHER_FP = "fingerprint-of-someone-else";

/** A feed entry without its backend-chosen id. */
export type FeedEntry = Omit<RevocationEvent, "id">;

/** Any non-blank text: the reason of a revocation the store decides on (eviction, reuse) is its own wording. */
export const someReason = () => expect.stringMatching(/\S/);

export async function makeKey(alg: "ES256" | "EdDSA", createdAt: number): Promise<StoredKey> {
  const kid = randomUUID();
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg, use: "sig" };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  return { kid, alg, createdAt, privateJwk, publicJwk };
}

/** Two ES256 keys and an EdDSA key, created in that order. */
export function esEsEd(): Promise<[StoredKey, StoredKey, StoredKey]> {
  return Promise.all([makeKey("ES256", T0), makeKey("ES256", T0 + 1), makeKey("EdDSA", T0 + 2)]);
}

/** A session opened at `at` (created = last used = at) with its own id, client and first refresh jti. */
export function sessionAt(at: number, over: Partial<SessionRecord> = {}): SessionRecord {
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

export function pairFor(jti: string, now: number): IssuedPair {
  return {
    accessToken: `access.${jti}`,
    refreshToken: `refresh.${jti}`,
    accessExpiresAt: now + 5 * MIN,
    refreshExpiresAt: now + LIFETIME,
  };
}

/** A rotation of `s` presenting `presentedJti` at `now`, with a fresh successor; `over` changes any input. */
export function rotation(s: SessionRecord, presentedJti: string, now: number, over: Partial<RotateInput> = {}): RotateInput {
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

export function countOutcomes(results: RotateResult[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) {
    const key = r.outcome === "ended" ? `ended:${r.why}` : r.outcome;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

/** The session helpers of the session and feed suites, on the store the test is using now. */
export function sessionHelpers(storeOf: () => SessionStore & RevocationFeed) {
  /** Opens `s` (at its createdAt unless `now` is given) and returns the ids the store evicted. */
  async function open(s: SessionRecord, maxSessions = MAX_SESSIONS, now = s.createdAt): Promise<string[]> {
    const { evicted } = await storeOf().createSession(s, { maxSessions, now, retentionMs: RETENTION });
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
    const result = await storeOf().rotateRefresh(input);
    expect(result.outcome).toBe("rotated");
    if (result.outcome !== "rotated") throw new Error("unreachable");
    expect(result.session.currentJti).toBe(input.nextJti);
    return result.session;
  }

  /** 20 refreshes of `s` presenting its current jti at once (T0 + 1 min), each with its own successor. */
  async function refreshRace(s: SessionRecord, over: Partial<RotateInput> = {}) {
    const inputs = Array.from({ length: 20 }, () => rotation(s, s.currentJti, T0 + MIN, over));
    const results = await Promise.all(inputs.map((input) => storeOf().rotateRefresh(input)));
    return { inputs, results };
  }

  function stateOf(s: SessionRecord, jti = s.currentJti) {
    return storeOf().tokenState({ subject: s.subject, sessionId: s.id, jti });
  }

  async function expectRevoked(s: SessionRecord, now: number): Promise<void> {
    expect((await stateOf(s)).session?.status).toBe("revoked");
    expect(await storeOf().getSession(s.id, now)).toBeNull();
  }

  async function expectLive(s: SessionRecord, now: number): Promise<void> {
    expect((await stateOf(s)).session?.status).toBe("active");
    expect((await storeOf().getSession(s.id, now))?.id).toBe(s.id);
  }

  async function liveIds(subject: string, now: number): Promise<string[]> {
    return (await storeOf().listSessions(subject, now)).map((s) => s.id);
  }

  /** The whole feed, oldest first, without ids. */
  async function feed(): Promise<FeedEntry[]> {
    return (await storeOf().revocations(null, 10_000)).entries.map(({ id: _id, ...rest }) => rest);
  }

  /** The entry of a session revoked at `at` with the fixtures' RETENTION. */
  function sessionEvent(s: SessionRecord, at: number, reason: unknown = someReason()): FeedEntry {
    const entry = { kind: "session", subject: s.subject, target: s.id, sessions: [], at, until: at + RETENTION, reason };
    return entry as FeedEntry;
  }

  /** The entry revokeJti appends. */
  function tokenEvent(jti: string, at: number, reason = "logout"): FeedEntry {
    return { kind: "token", subject: "alice", target: jti, sessions: [], at, until: at + HOUR, reason };
  }

  /** The entry of alice's revokeSubject at `at` with the fixtures' RETENTION, which ended `ended`. */
  function subjectEvent(ended: SessionRecord[], at: number, reason: string): FeedEntry {
    const sessions = ended.map((s) => s.id);
    return { kind: "subject", subject: "alice", target: "", sessions, at, until: at + RETENTION, reason };
  }

  /** Revokes one token of alice that expires in an hour; returns what the store answered. */
  function revokeJti(jti: string, now = T0, reason = "logout"): Promise<boolean> {
    return storeOf().revokeToken({ subject: "alice", jti, expiresAt: now + HOUR, now, reason });
  }

  return {
    open,
    opened,
    openMany,
    rotated,
    refreshRace,
    stateOf,
    expectRevoked,
    expectLive,
    liveIds,
    feed,
    sessionEvent,
    tokenEvent,
    subjectEvent,
    revokeJti,
  };
}
