/**
 * The session rules, in one place: when a session is live, what a refresh does (rotate, replay inside the grace
 * window, reuse, or nothing because the session ended), how a rotation changes the session, and in which order
 * sessions are evicted and listed. The memory store and the authority call these; the Redis store runs them inside
 * its Lua scripts (src/store/redis/sessions.ts), which mirror them line for line: each function here names its Lua
 * twin, and each Lua twin names the function. Change both or neither; test/contract holds them to the same answers.
 */
import type { RotateInput, SessionRecord, TokenSession } from "./store.js";

export type SessionStatus = "active" | "revoked";

/** The two expiries of a session. */
export interface SessionExpiries {
  idleExpiresAt: number;
  expiresAt: number;
}

/**
 * The instant a session stops being live: the earlier of its idle expiry and its absolute expiry.
 * Lua twin: `live_until` in src/store/redis/sessions.ts (SESSION_PRELUDE).
 */
export function liveUntil(s: SessionExpiries): number {
  return Math.min(s.idleExpiresAt, s.expiresAt);
}

/**
 * Whether a session is live at `now`: not revoked, and before liveUntil. A session is dead from that instant on.
 * Lua twin: `status == 'a' and now < live_until(s)` in src/store/redis/sessions.ts.
 */
export function isLive(status: SessionStatus, s: SessionExpiries, now: number): boolean {
  return status === "active" && now < liveUntil(s);
}

/**
 * A session row as TokenState reports it: null unless it is the subject's (a store finds it by its id alone). Only the
 * record's subject, expiries and current jti are read (the Redis store keeps just those of the sessions it reads).
 */
export function tokenSession(row: TokenSessionRow | null | undefined, subject: string): TokenSession | null {
  if (!row || row.record.subject !== subject) return null;
  const { idleExpiresAt, expiresAt, currentJti } = row.record;
  return { status: row.status, idleExpiresAt, expiresAt, currentJti };
}

/** What tokenSession reads of a session row. */
export interface TokenSessionRow {
  status: SessionStatus;
  record: Pick<SessionRecord, "subject" | "idleExpiresAt" | "expiresAt" | "currentJti">;
}

/** A session as a store holds it: its record and its status. */
export interface SessionRow {
  status: SessionStatus;
  record: SessionRecord;
}

/**
 * Eviction order: least recently used first; sessions last used in the same millisecond by id. That is the order of
 * the Redis store's index (a sorted set: by score, its last use, then by member, the id, byte for byte), so the Redis
 * store finds what to evict without reading the sessions it passes over; a burst of one subject's logins in one
 * millisecond used to make it read and compare every one of them. Lua twin: the paging in CREATE_SESSIONS
 * (src/store/redis/sessions.ts).
 */
export function evictionOrder(a: SessionRow, b: SessionRow): number {
  return a.record.lastUsedAt - b.record.lastUsedAt || byId(a, b);
}

/** Listing order: most recently used first; ties: opened earlier first, then by id. */
export function listingOrder(a: SessionRow, b: SessionRow): number {
  return b.record.lastUsedAt - a.record.lastUsedAt || a.record.createdAt - b.record.createdAt || byId(a, b);
}

/** Session ids (base64url, ASCII) compared as Redis compares members: byte for byte. */
function byId(a: SessionRow, b: SessionRow): number {
  return a.record.id < b.record.id ? -1 : a.record.id > b.record.id ? 1 : 0;
}

/** How many of `live` sessions must go so that one more fits within `maxSessions` (0 or more). */
export function excessSessions(live: number, maxSessions: number): number {
  return Math.max(0, live + 1 - maxSessions);
}

/** The last rotation of a session, kept for the grace window: what was rotated out, by whom, when. */
export interface GraceEntry {
  jti: string;
  fingerprint: string;
  at: number;
}

/** What a refresh does to the session (RotateResult without the data the store fills in). */
export type RotationStep =
  | { step: "ended"; why: "revoked" | "expired" | "missing" }
  | { step: "rotate" }
  | { step: "replay" }
  | { step: "reuse" };

/**
 * Judges a refresh: a missing (or another subject's) session, a revoked one and an expired one have ended; the current
 * jti rotates; a repeat of the last rotation's jti by the same client inside the grace window replays; anything else
 * is reuse (the caller revokes the session). `s` and `previous` are what the store still holds: a store forgets an
 * active session at its liveUntil and a grace entry at graceKeptUntil, exactly, on its own clock (Redis: the keys'
 * PX), so a session past its expiry is normally "missing"; "expired" is the answer only when the caller's instants
 * have run ahead of the store's clock since the session was written (in production a few milliseconds at most; in a
 * test that moves a clock of its own, as long as the store's clock is not that one).
 * Lua twin: ROTATE in src/store/redis/sessions.ts.
 */
export function judgeRotation(
  s: { status: SessionStatus; record: SessionRecord } | null,
  previous: GraceEntry | null | undefined,
  input: Pick<RotateInput, "subject" | "presentedJti" | "clientFingerprint" | "now" | "graceMs">,
): RotationStep {
  if (!s || s.record.subject !== input.subject) return { step: "ended", why: "missing" };
  if (s.status !== "active") return { step: "ended", why: "revoked" };
  if (input.now >= liveUntil(s.record)) return { step: "ended", why: "expired" };
  if (input.presentedJti === s.record.currentJti) return { step: "rotate" };
  if (previous && graceReplays(previous, input)) return { step: "replay" };
  return { step: "reuse" };
}

/**
 * The grace window: the same jti as the last rotation's, from the same client, less than graceMs after it (0: never).
 * Lua twin: the `grace > 0 and ...` test in ROTATE.
 */
export function graceReplays(
  prev: GraceEntry,
  input: Pick<RotateInput, "presentedJti" | "clientFingerprint" | "now" | "graceMs">,
): boolean {
  return (
    input.graceMs > 0 &&
    input.presentedJti === prev.jti &&
    input.now - prev.at < input.graceMs &&
    input.clientFingerprint === prev.fingerprint
  );
}

/**
 * Until when a rotation's grace entry (what graceReplays compares with) is kept: for that rotation's grace window,
 * never past the session's new idle expiry (after it the session has ended anyway); not at all when graceMs is 0. A
 * retry finds the entry only before this instant, so a grace window longer at the retry than at the rotation (a
 * configuration changed in between) does not bring back an entry that is gone. A store forgets the entry at this
 * instant exactly. Lua twin: the `SET gkey ... PX ttl(math.min(now + grace, s[IDLE_EXPIRES_AT]))` in ROTATE.
 */
export function graceKeptUntil(at: number, graceMs: number, idleExpiresAt: number): number | null {
  return graceMs > 0 ? Math.min(at + graceMs, idleExpiresAt) : null;
}

/**
 * The session after a rotation: the successor jti is current, it was used now, and its idle expiry moves to
 * now + idleTtlMs, never beyond its absolute expiry. Lua twin: the `presented == s[CURRENT_JTI]` branch of ROTATE.
 */
export function rotated(s: SessionRecord, input: Pick<RotateInput, "nextJti" | "now" | "idleTtlMs">): SessionRecord {
  return {
    ...s,
    currentJti: input.nextJti,
    lastUsedAt: input.now,
    idleExpiresAt: Math.min(input.now + input.idleTtlMs, s.expiresAt),
  };
}
