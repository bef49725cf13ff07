/**
 * The RevocationFeed contract (src/domain/store.ts), run against every backend: every kind of revocation a
 * SessionWriter makes is recorded in order with what a verifier needs (until, the sessions a logout ended), a retried
 * revocation appends again, entries go only once their `until` has passed, the feed pages by cursor without duplicates
 * or gaps and refuses a cursor it cannot continue from, and a subscriber hears of every append.
 */
import { beforeEach, describe, expect, it } from "vitest";
import {
  FeedCursorError,
  type FeedPage,
  type RevocationEvent,
  type RevocationFeed,
  type SessionStore,
} from "../../src/domain/store.js";
import { until } from "../helpers/wait.js";
import { BACKENDS } from "./backends.js";
import { HOUR, MIN, RETENTION, T0, rotation, sessionAt, sessionHelpers, storesFrom } from "./fixtures.js";

/**
 * The id right after `id` in the feed's own form (memory `<epoch>-<n>`: n + 1; Redis `<epoch>.<ms>-<seq>`: seq + 1):
 * beyond it if `id` is last.
 */
function after(id: string): string {
  const [position, seq] = id.split("-");
  return `${position}-${BigInt(seq!) + 1n}`;
}

/** The position of `cursor` with the epoch of `other` (a cursor of another feed of the same store kind). */
function withEpochOf(cursor: string, other: string): string {
  const sep = cursor.includes(".") ? "." : "-";
  return other.slice(0, other.indexOf(sep)) + cursor.slice(cursor.indexOf(sep));
}

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: SessionStore & RevocationFeed;
    const stores = storesFrom(make);
    beforeEach(async () => {
      store = await stores.fresh();
    });
    const { open, openMany, rotated, feed, sessionEvent, tokenEvent, subjectEvent, revokeJti } = sessionHelpers(() => store);

    /** Revokes a token of alice at `now` that expires (so its entry's until is) at `expiresAt`. */
    function revokeUntil(jti: string, now: number, expiresAt: number): Promise<boolean> {
      return store.revokeToken({ subject: "alice", jti, expiresAt, now, reason: "logout" });
    }

    /** The targets of every entry kept, oldest first. */
    async function targets(): Promise<string[]> {
      return (await feed()).map((e) => e.target);
    }

    /** The FeedCursorError reason a read from `cursor` throws, or "none". */
    async function cursorError(cursor: string): Promise<string> {
      try {
        await store.revocations(cursor, 10);
        return "none";
      } catch (err) {
        if (err instanceof FeedCursorError) return err.why;
        throw err;
      }
    }

    describe("entries", () => {
      it("records every kind of revocation in order with kind, subject, target, sessions, at, until and reason", async () => {
        const [evictee, reused, revoked] = await openMany([T0, T0 + 1, T0 + 2], "alice", 3);
        expect(await revokeJti("jti-x", T0 + 10, "token reason")).toBe(true);
        const q = { sessionId: revoked!.id, now: T0 + 20, retentionMs: RETENTION, reason: "session reason" };
        expect(await store.revokeSession(q)).toBe(true);
        const newest = sessionAt(T0 + 30);
        expect(await open(newest, 2)).toEqual([evictee!.id]);
        await rotated(reused!, T0 + 40, { graceMs: 0 });
        await store.rotateRefresh(rotation(reused!, reused!.currentJti, T0 + 50, { graceMs: 0 }));
        await store.revokeSubject({ subject: "alice", now: T0 + 60, retentionMs: RETENTION, reason: "subject reason" });
        // Opened after the logout (same millisecond): it lives, and no entry names it.
        const later = sessionAt(T0 + 60);
        await open(later);
        expect(await feed()).toEqual([
          tokenEvent("jti-x", T0 + 10, "token reason"),
          sessionEvent(revoked!, T0 + 20, "session reason"),
          sessionEvent(evictee!, T0 + 30),
          sessionEvent(reused!, T0 + 50),
          subjectEvent([newest], T0 + 60, "subject reason"),
        ]);
        expect(JSON.stringify(await feed())).not.toContain(later.id);
      });

      it("a token's entry lasts until the token's expiry; a session's and a subject's until now + retention", async () => {
        const s = sessionAt(T0);
        await open(s);
        await store.revokeToken({ subject: "alice", jti: "j", expiresAt: T0 + 5 * MIN, now: T0 + 1, reason: "r" });
        await store.revokeSession({ sessionId: s.id, now: T0 + 2, retentionMs: 7 * MIN, reason: "r" });
        await store.revokeSubject({ subject: "alice", now: T0 + 3, retentionMs: 9 * MIN, reason: "r" });
        expect((await feed()).map((e) => [e.kind, e.at, e.until])).toEqual([
          ["token", T0 + 1, T0 + 5 * MIN],
          ["session", T0 + 2, T0 + 2 + 7 * MIN],
          ["subject", T0 + 3, T0 + 3 + 9 * MIN],
        ]);
      });

      it("a subject entry lists exactly the sessions that call ended: least recently used first, then by id", async () => {
        // Opened in another order than they were last used, two used in the same millisecond.
        const [a, b, c, d] = [sessionAt(T0 + 3), sessionAt(T0 + 1), sessionAt(T0 + 2), sessionAt(T0 + 1)];
        for (const s of [a!, b!, c!, d!]) await open(s);
        const gone = sessionAt(T0 + 4);
        await open(gone);
        await store.revokeSession({ sessionId: gone.id, now: T0 + 5, retentionMs: RETENTION, reason: "r" });
        const idled = sessionAt(T0, { idleExpiresAt: T0 + 6 });
        await open(idled);
        await open(sessionAt(T0, { subject: "bob" }));
        const now = T0 + 10;
        const ended = await store.revokeSubject({ subject: "alice", now, retentionMs: RETENTION, reason: "everywhere" });
        expect(ended.length).toBe(4);
        const [tie1, tie2] = [b!, d!].sort((x, y) => (x.id < y.id ? -1 : 1));
        expect((await feed()).at(-1)).toEqual(subjectEvent([tie1!, tie2!, c!, a!], now, "everywhere"));
        expect(ended).toEqual([tie1!, tie2!, c!, a!].map((s) => s.id)); // the ids, in the entry's order
        // Nothing left to end: the entry is appended all the same, naming no session.
        expect((await store.revokeSubject({ subject: "alice", now: now + 1, retentionMs: RETENTION, reason: "again" })).length).toBe(0);
        expect((await feed()).at(-1)).toEqual(subjectEvent([], now + 1, "again"));
      });
    });

    describe("retried revocations append again", () => {
      it("revokeToken of a token revoked already: false, and a second entry", async () => {
        expect(await revokeJti("j", T0, "first")).toBe(true);
        expect(await revokeJti("j", T0 + 1, "retry")).toBe(false);
        expect(await feed()).toEqual([tokenEvent("j", T0, "first"), tokenEvent("j", T0 + 1, "retry")]);
      });

      it("revokeSession of a session revoked already: false, and a second entry; another subject's: nothing", async () => {
        const s = sessionAt(T0);
        await open(s);
        const q = { sessionId: s.id, now: T0 + 1, retentionMs: RETENTION, reason: "logout" };
        expect(await store.revokeSession(q)).toBe(true);
        expect(await store.revokeSession({ ...q, now: T0 + 2 })).toBe(false);
        expect(await store.revokeSession({ ...q, now: T0 + 3, subject: "alice" })).toBe(false);
        expect(await store.revokeSession({ ...q, now: T0 + 4, subject: "mallory" })).toBe(false);
        expect(await feed()).toEqual([
          sessionEvent(s, T0 + 1, "logout"),
          sessionEvent(s, T0 + 2, "logout"),
          sessionEvent(s, T0 + 3, "logout"),
        ]);
      });

      it("a refresh with a token of a revoked session: ended (revoked), and the session's entry again", async () => {
        const s = sessionAt(T0);
        await open(s);
        await store.revokeSession({ sessionId: s.id, now: T0 + 1, retentionMs: RETENTION, reason: "logout" });
        const input = rotation(s, s.currentJti, T0 + 2);
        expect(await store.rotateRefresh(input)).toEqual({ outcome: "ended", why: "revoked" });
        expect(await feed()).toEqual([
          sessionEvent(s, T0 + 1, "logout"),
          sessionEvent(s, T0 + 2, "revoked session presented"),
        ]);
      });

      it("an unknown or expired session and an expired token append nothing", async () => {
        const s = sessionAt(T0);
        await open(s);
        expect((await store.rotateRefresh(rotation(s, s.currentJti, s.idleExpiresAt))).outcome).toBe("ended");
        expect(await store.revokeSession({ sessionId: s.id, now: s.idleExpiresAt, retentionMs: RETENTION, reason: "r" }))
          .toBe(false);
        expect(await store.revokeSession({ sessionId: sessionAt(T0).id, now: T0, retentionMs: RETENTION, reason: "r" }))
          .toBe(false);
        expect(await revokeUntil("j", T0, T0)).toBe(false);
        expect(await feed()).toEqual([]);
      });
    });

    describe("trimming", () => {
      it("an append drops the dead head up to the first live entry, and nothing behind it", async () => {
        await revokeUntil("a", T0, T0 + 100);
        await revokeUntil("b", T0 + 1, T0 + 300); // dead at exactly the append's now
        await revokeUntil("c", T0 + 2, T0 + 10_000);
        await revokeUntil("d", T0 + 3, T0 + 150); // dead, but behind a live entry
        const before = await store.revocations(null, 100);
        expect(before.entries.map((e) => e.target)).toEqual(["a", "b", "c", "d"]);
        // Reading changes nothing; only an append at a later now trims.
        expect(await targets()).toEqual(["a", "b", "c", "d"]);
        await revokeUntil("e", T0 + 300, T0 + 20_000);
        expect(await targets()).toEqual(["c", "d", "e"]);

        const [a, b] = before.entries;
        expect(await cursorError(a!.id)).toBe("expired");
        // Through the last entry dropped, nothing is missing.
        expect((await store.revocations(b!.id, 10)).entries.map((e) => e.target)).toEqual(["c", "d", "e"]);
        // A reader that was caught up goes on from its `next`.
        expect((await store.revocations(before.next, 10)).entries.map((e) => e.target)).toEqual(["e"]);

        // Everything dead: all dropped, and the reader caught up after "e" still goes on.
        const caughtUp = (await store.revocations(before.next, 10)).next;
        await revokeUntil("f", T0 + 30_000, T0 + 40_000);
        expect(await targets()).toEqual(["f"]);
        expect(await cursorError(before.next)).toBe("expired");
        expect((await store.revocations(caughtUp, 10)).entries.map((e) => e.target)).toEqual(["f"]);
      });

      it("keeps entries whose until has not passed, whatever their number", async () => {
        for (let i = 0; i < 30; i++) await revokeUntil(`j${i}`, T0 + i, T0 + HOUR);
        await revokeUntil("last", T0 + HOUR - 1, T0 + 2 * HOUR);
        expect(await targets()).toHaveLength(31);
      });
    });

    describe("cursors", () => {
      it("an empty feed: no entries, and a next that reads on once something is appended", async () => {
        const empty = await store.revocations(null, 10);
        expect(empty.entries).toEqual([]);
        // Memory: this feed's epoch, position 0. Redis: no incarnation yet (none is made before the first append).
        expect(empty.next).toMatch(name === "memory" ? /^\d+-0$/ : /^0\.0-0$/);
        expect(await store.revocations(empty.next, 10)).toEqual(empty);
        expect(await cursorError(after(empty.next))).toBe("expired");
        await revokeUntil("j", T0, T0 + 10);
        await revokeUntil("k", T0 + 1, T0 + HOUR);
        // Its reader saw nothing, so it misses nothing: it reads from the start.
        expect((await store.revocations(empty.next, 10)).entries.map((e) => e.target)).toEqual(["j", "k"]);
        // Unless something was dropped since.
        await revokeUntil("l", T0 + 20, T0 + HOUR);
        expect(await cursorError(empty.next)).toBe("expired");
      });

      it("pages by next: in order, limit respected, nothing twice, nothing left out", async () => {
        const jtis = Array.from({ length: 7 }, (_, i) => `jti-${i}`);
        for (const [i, jti] of jtis.entries()) expect(await revokeJti(jti, T0 + i)).toBe(true);
        const all = (await store.revocations(null, 100)).entries;
        expect(all.map((e) => e.target)).toEqual(jtis);
        expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
        expect(await store.revocations(null, 3)).toEqual({ entries: all.slice(0, 3), next: all[2]!.id });
        const pages: RevocationEvent[][] = [];
        let cursor: string | null = null;
        // Bounded, so a cursor that does not advance fails the test instead of hanging it.
        for (let i = 0; i < 5; i++) {
          const page: FeedPage = await store.revocations(cursor, 3);
          if (page.entries.length === 0) {
            expect(page.next).toBe(cursor); // max(cursor, last): the cursor is last
            break;
          }
          expect(page.next).toBe(page.entries.at(-1)!.id);
          pages.push(page.entries);
          cursor = page.next;
        }
        expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
        expect(pages.flat()).toEqual(all);
        expect(await store.revocations(all[4]!.id, 100)).toEqual({ entries: all.slice(5), next: all[6]!.id });
      });

      it("a caught-up reader's next is the newest id ever handed out, even when that entry is gone", async () => {
        await revokeUntil("a", T0, T0 + 10);
        const last = (await store.revocations(null, 10)).next;
        await revokeUntil("b", T0 + 20, T0 + 100); // drops "a"
        const [b] = (await store.revocations(last, 10)).entries;
        expect(b?.target).toBe("b");
        expect(await store.revocations(b!.id, 10)).toEqual({ entries: [], next: b!.id });
        expect((await store.revocations(null, 10)).next).toBe(b!.id);
      });

      it("throws FeedCursorError invalid for a cursor not of the feed's form", async () => {
        await revokeJti("j", T0);
        const forms = ["not-a-cursor", "-1", "+1", "1.5", "1e3", "0x1", " 1", "1 ", "1-", "-", "1-2-3", "", "9".repeat(40)];
        // Near misses of the Redis form: the epoch is `0` or 12 lowercase hex digits; the stream id has its seq.
        forms.push("0.", ".1-0", "0.1", "0.1-", "1.1-0", "ABCDEF012345.1-0", "abcdef01234.1-0", "abcdef012345.1-0-0");
        for (const cursor of forms) {
          expect([cursor, await cursorError(cursor)]).toEqual([cursor, "invalid"]);
        }
      });

      // A memory store starts again at 1 in a new process; a Redis feed made again (after Redis lost it) may hand out
      // the ids of the lost one (they come from the server's clock: test/unit/redis-store.test.ts makes it happen).
      // Either way a cursor of the earlier feed names a position of this one: its epoch tells them apart.
      it("throws FeedCursorError expired for another feed's cursor, even at a position this feed has (a restart, a loss)", async () => {
        const other = await stores.fresh();
        for (const [i, jti] of ["a", "b", "c"].entries()) {
          await revokeJti(jti, T0 + i);
          await other.revokeToken({ subject: "alice", jti, expiresAt: T0 + HOUR, now: T0 + i, reason: "r" });
        }
        const theirs = (await other.revocations(null, 1)).next;
        const ours = (await store.revocations(null, 1)).next; // after "a": "b" and "c" follow
        const theirEpochOurPosition = withEpochOf(ours, theirs);
        expect(theirEpochOurPosition).not.toBe(ours);
        expect(await cursorError(theirs)).toBe("expired");
        expect(await cursorError(theirEpochOurPosition)).toBe("expired");
        expect((await store.revocations(ours, 10)).entries.map((e) => e.target)).toEqual(["b", "c"]);
      });

      it("throws FeedCursorError expired for another store's form or an older version's (a bare stream id)", async () => {
        await revokeJti("a", T0);
        await revokeJti("b", T0 + 1);
        // A memory cursor, bare stream ids (what the Redis feed handed out before its cursors had an epoch), Redis
        // cursors of another incarnation and of none (this feed has one now): each a cursor, but none of this feed's.
        const forms = ["123-4", "0-0", "1767225600000-0", "1767225600000", "0123456789ab.1767225600000-0", "0.5-0"];
        for (const cursor of forms) {
          expect([cursor, await cursorError(cursor)]).toEqual([cursor, "expired"]);
        }
      });

      it("throws FeedCursorError expired for a cursor beyond anything handed out (a store emptied since)", async () => {
        for (const [i, jti] of ["a", "b"].entries()) await revokeJti(jti, T0 + i);
        const { next } = await store.revocations(null, 10);
        expect(await cursorError(next)).toBe("none");
        expect(await cursorError(after(next))).toBe("expired");
        expect(await cursorError(`${next.split("-")[0]}-${"9".repeat(16)}`)).toBe("expired");
        // A fresh store is a store emptied: the old cursor lies beyond everything it handed out.
        store = await stores.fresh();
        expect(await cursorError(next)).toBe("expired");
      });

      it("throws a plain error (a programming error) for a limit that is not a whole number of at least 1", async () => {
        for (const limit of [0, -3, 1.5, Number.NaN]) {
          const err = await store.revocations(null, limit).catch((e: unknown) => e);
          expect(err).toBeInstanceOf(Error);
          expect(err).not.toBeInstanceOf(FeedCursorError);
        }
        expect((await store.revocations(null, 1)).entries).toEqual([]);
      });
    });

    describe("subscribe", () => {
      it("calls a listener after an append; not after it unsubscribed; a listener that throws harms no one", async () => {
        const calls = { kept: 0, dropped: 0 };
        store.subscribe(() => {
          throw new Error("a listener that fails");
        });
        store.subscribe(() => calls.kept++);
        const unsubscribe = store.subscribe(() => calls.dropped++);
        expect(await revokeJti("a", T0)).toBe(true);
        await until(() => calls.kept > 0 && calls.dropped > 0, 10_000, "both listeners to hear of the append");
        unsubscribe();
        unsubscribe(); // twice is harmless
        const [kept, dropped] = [calls.kept, calls.dropped];
        expect(await revokeJti("b", T0 + 1)).toBe(true);
        await until(() => calls.kept > kept, 10_000, "the listener still subscribed to hear of the second append");
        expect(calls.dropped).toBe(dropped);
        // Left subscribed: the store's close (in the cleanup) must stop whatever waits for appends.
      });

      it("hears of every kind of append", async () => {
        let calls = 0;
        const unsubscribe = store.subscribe(() => calls++);
        const s = sessionAt(T0);
        await open(s);
        const appends: Array<() => Promise<unknown>> = [
          () => revokeJti("j", T0),
          () => store.revokeSession({ sessionId: s.id, now: T0 + 1, retentionMs: RETENTION, reason: "r" }),
          () => store.revokeSubject({ subject: "alice", now: T0 + 2, retentionMs: RETENTION, reason: "r" }),
        ];
        for (const append of appends) {
          const before = calls;
          await append();
          await until(() => calls > before, 10_000, "a call after the append");
        }
        unsubscribe();
      });
    });
  });
}
