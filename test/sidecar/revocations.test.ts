/**
 * The sidecar's copy of the revocation feed (src/sidecar/revocations.ts RevocationIndex), with a fake `now`: what each
 * kind of entry revokes (and what it does not), how long an entry is held (its expiry plus the clock skew), that it is
 * then forgotten (size goes down on sweep, by hand or by the index's own timer), that entries already past are never
 * stored, and that the same entry applied twice keeps the later expiry. No network.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { RevocationIndex, type FeedEntry } from "../../src/sidecar/revocations.js";

const T0 = Date.UTC(2026, 0, 1);
const SKEW = 5_000;

let t = T0;
const indexes: RevocationIndex[] = [];

function newIndex(skewMs = SKEW, sweepEveryMs?: number): RevocationIndex {
  const index = sweepEveryMs === undefined ? new RevocationIndex(() => t, skewMs) : new RevocationIndex(() => t, skewMs, sweepEveryMs);
  indexes.push(index);
  return index;
}

afterEach(() => {
  for (const index of indexes.splice(0)) index.close();
  t = T0;
  vi.useRealTimers();
});

const token = (subject: string, jti: string, expiresAt = T0 + 60_000): FeedEntry => ({
  kind: "token",
  subject,
  target: jti,
  sessionIds: [],
  expiresAt,
});
const session = (subject: string, id: string, expiresAt = T0 + 60_000): FeedEntry => ({
  kind: "session",
  subject,
  target: id,
  sessionIds: [],
  expiresAt,
});
const logout = (subject: string, ids: string[], expiresAt = T0 + 60_000): FeedEntry => ({
  kind: "subject",
  subject,
  target: "",
  sessionIds: ids,
  expiresAt,
});

/** "jti" if the jti reads as revoked, "session" if the session does, both, or "live". */
function verdict(index: RevocationIndex, q: { subject: string; sessionId: string; jti: string }): string {
  const s = index.stateOf(q);
  const parts = [s.jtiRevoked ? "jti" : "", s.session?.status === "revoked" ? "session" : ""].filter(Boolean);
  return parts.length === 0 ? "live" : parts.join("+");
}

describe("what an entry revokes", () => {
  it("a token entry revokes that subject's jti only: the same jti of another subject, another jti, or a session of that name are not", async () => {
    const index = newIndex();
    index.apply([token("alice", "j1")]);
    expect(verdict(index, { subject: "alice", sessionId: "s-a", jti: "j1" })).toBe("jti");
    expect(verdict(index, { subject: "bob", sessionId: "s-b", jti: "j1" })).toBe("live");
    expect(verdict(index, { subject: "alice", sessionId: "s-a", jti: "j2" })).toBe("live");
    expect(verdict(index, { subject: "alice", sessionId: "j1", jti: "j9" })).toBe("live");
    // The async form says the same (the shared Introspector calls tokenState).
    await expect(index.tokenState({ subject: "alice", sessionId: "s-a", jti: "j1" })).resolves.toMatchObject({ jtiRevoked: true });
    expect(index.size).toEqual({ jtis: 1, sessions: 0, keys: 0 });
  });

  it("a session entry revokes that session, for every jti; other sessions and a jti of that name are not", () => {
    const index = newIndex();
    index.apply([session("alice", "s1")]);
    expect(verdict(index, { subject: "alice", sessionId: "s1", jti: "any" })).toBe("session");
    expect(verdict(index, { subject: "alice", sessionId: "s1", jti: "other" })).toBe("session");
    expect(verdict(index, { subject: "alice", sessionId: "s2", jti: "any" })).toBe("live");
    expect(verdict(index, { subject: "alice", sessionId: "s2", jti: "s1" })).toBe("live");
    expect(index.size).toEqual({ jtis: 0, sessions: 1, keys: 0 });
  });

  it("a subject entry revokes exactly the sessions it lists: a session opened after the logout lives", () => {
    const index = newIndex();
    index.apply([logout("carol", ["c1", "c2"])]);
    expect(verdict(index, { subject: "carol", sessionId: "c1", jti: "x" })).toBe("session");
    expect(verdict(index, { subject: "carol", sessionId: "c2", jti: "y" })).toBe("session");
    expect(verdict(index, { subject: "carol", sessionId: "c3", jti: "z" })).toBe("live");
    expect(index.size).toEqual({ jtis: 0, sessions: 2, keys: 0 });
  });

  it("a subject entry that ended no session revokes nothing and holds nothing", () => {
    const index = newIndex();
    index.apply([logout("dave", [])]);
    expect(verdict(index, { subject: "dave", sessionId: "d1", jti: "j" })).toBe("live");
    expect(index.size).toEqual({ jtis: 0, sessions: 0, keys: 0 });
  });

  it("a key entry marks that kid revoked until its expiry, and nothing else", () => {
    const index = newIndex();
    index.apply([{ kind: "key", subject: "", target: "kid-1", sessionIds: [], expiresAt: T0 + 60_000 }]);
    expect(index.keyRevoked("kid-1")).toBe(true);
    expect(index.keyRevoked("kid-2")).toBe(false);
    expect(index.stateOf({ subject: "", sessionId: "kid-1", jti: "kid-1" }).jtiRevoked).toBe(false);
    expect(index.size).toEqual({ jtis: 0, sessions: 0, keys: 1 });
    t = T0 + 60_000 + SKEW;
    expect(index.keyRevoked("kid-1")).toBe(false);
    index.sweep();
    expect(index.size).toEqual({ jtis: 0, sessions: 0, keys: 0 });
  });

  it("the state read for anything not revoked is a live session (the authority caps tokens at their session's end)", () => {
    const index = newIndex();
    expect(index.stateOf({ subject: "erin", sessionId: "e1", jti: "j" })).toMatchObject({
      jtiRevoked: false,
      session: { status: "active" },
    });
  });
});

describe("how long an entry is held", () => {
  it("until expiresAt + skew: revoked up to then, not revoked from then on, and gone from memory on sweep", () => {
    const index = newIndex();
    const expiresAt = T0 + 10_000;
    index.apply([token("alice", "j1", expiresAt), session("alice", "s1", expiresAt), logout("bob", ["b1", "b2"], expiresAt)]);
    expect(index.size).toEqual({ jtis: 1, sessions: 3, keys: 0 });

    t = expiresAt; // the token itself has expired, but is accepted for the skew yet: still revoked
    expect(verdict(index, { subject: "alice", sessionId: "s1", jti: "j1" })).toBe("jti+session");
    expect(verdict(index, { subject: "bob", sessionId: "b2", jti: "j" })).toBe("session");
    t = expiresAt + SKEW - 1;
    index.sweep();
    expect(index.size).toEqual({ jtis: 1, sessions: 3, keys: 0 });
    expect(verdict(index, { subject: "alice", sessionId: "s1", jti: "j1" })).toBe("jti+session");

    t = expiresAt + SKEW;
    expect(verdict(index, { subject: "alice", sessionId: "s1", jti: "j1" })).toBe("live");
    expect(verdict(index, { subject: "bob", sessionId: "b1", jti: "j" })).toBe("live");
    expect(index.size).toEqual({ jtis: 1, sessions: 3, keys: 0 }); // held until a sweep
    index.sweep();
    expect(index.size).toEqual({ jtis: 0, sessions: 0, keys: 0 });
  });

  it("a sweep drops only what has passed", () => {
    const index = newIndex();
    index.apply([token("alice", "short", T0 + 1_000), token("alice", "long", T0 + 100_000), session("alice", "s-short", T0 + 1_000)]);
    t = T0 + 1_000 + SKEW;
    index.sweep();
    expect(index.size).toEqual({ jtis: 1, sessions: 0, keys: 0 });
    expect(verdict(index, { subject: "alice", sessionId: "s-short", jti: "long" })).toBe("jti");
  });

  it("the index sweeps by itself every sweepEveryMs, and not after close()", () => {
    vi.useFakeTimers();
    const index = newIndex(SKEW, 1_000);
    index.apply([token("alice", "j1", T0 + 1_000)]);
    t = T0 + 1_000 + SKEW;
    expect(index.size.jtis).toBe(1);
    vi.advanceTimersByTime(1_000);
    expect(index.size.jtis).toBe(0);

    index.apply([token("alice", "j2", T0 + 100_000)]);
    t = T0 + 100_000 + SKEW;
    index.close();
    vi.advanceTimersByTime(5_000);
    expect(index.size.jtis).toBe(1);
  });

  it("entries already past (expiresAt + skew at or before now) are not even stored; one within the skew is", () => {
    t = T0 + 50_000;
    const index = newIndex();
    index.apply([
      token("alice", "gone", t - SKEW - 1),
      token("alice", "edge", t - SKEW), // until == now: already over
      session("alice", "s-gone", t - 60_000),
      logout("bob", ["b1"], t - SKEW),
    ]);
    expect(index.size).toEqual({ jtis: 0, sessions: 0, keys: 0 });
    expect(verdict(index, { subject: "alice", sessionId: "s-gone", jti: "gone" })).toBe("live");

    index.apply([token("alice", "within", t - SKEW + 1)]); // expired, but still accepted for 1ms of skew
    expect(index.size).toEqual({ jtis: 1, sessions: 0, keys: 0 });
    expect(verdict(index, { subject: "alice", sessionId: "s", jti: "within" })).toBe("jti");
  });

  it("the same entry applied twice keeps the later expiry, in either order, and is held once", () => {
    const index = newIndex();
    const early = T0 + 1_000;
    const late = T0 + 20_000;
    index.apply([token("alice", "j1", early), session("alice", "s1", early)]);
    index.apply([token("alice", "j1", late), session("alice", "s1", late)]);
    index.apply([token("alice", "j2", late), logout("alice", ["s2"], late)]);
    index.apply([token("alice", "j2", early), session("alice", "s2", early)]); // an earlier expiry never shortens it
    expect(index.size).toEqual({ jtis: 2, sessions: 2, keys: 0 });

    t = early + SKEW; // past the early expiry
    index.sweep();
    expect(index.size).toEqual({ jtis: 2, sessions: 2, keys: 0 });
    for (const [jti, sessionId] of [["j1", "s1"], ["j2", "s2"]] as const) {
      expect(verdict(index, { subject: "alice", sessionId, jti })).toBe("jti+session");
    }
    t = late + SKEW;
    expect(verdict(index, { subject: "alice", sessionId: "s1", jti: "j1" })).toBe("live");
    index.sweep();
    expect(index.size).toEqual({ jtis: 0, sessions: 0, keys: 0 });
  });

  it("the skew is the index's own: with skew 0 an entry ends at its expiresAt", () => {
    const index = newIndex(0);
    index.apply([token("alice", "j1", T0 + 1_000)]);
    t = T0 + 999;
    expect(verdict(index, { subject: "alice", sessionId: "s", jti: "j1" })).toBe("jti");
    t = T0 + 1_000;
    expect(verdict(index, { subject: "alice", sessionId: "s", jti: "j1" })).toBe("live");
  });
});
