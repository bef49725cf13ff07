/**
 * The sidecar's copy of the revocation feed: which jtis and which sessions are revoked, each until its entry's
 * `expires_at` (plus the clock skew tokens are accepted with), then forgotten, so memory holds only what can still
 * matter. It answers `tokenState` the way the authority's store does, for the shared Introspector
 * (src/domain/introspect.ts): a revoked jti or session reads as revoked; anything else as a live session, because a
 * session that ends by itself never ends before its access tokens do (the authority caps them at its end).
 */
import type { SessionReader, TokenState } from "../domain/store.js";

export type FeedKind = "token" | "session" | "subject" | "key";

/** One feed entry as the sidecar keeps it. */
export interface FeedEntry {
  kind: FeedKind;
  subject: string;
  /** token: the jti; session: the session id; key: the kid; subject: empty. */
  target: string;
  /** subject: the sessions the logout ended. */
  sessionIds: readonly string[];
  /** ms: until when it matters. */
  expiresAt: number;
}

const LIVE = Object.freeze({ status: "active" as const, idleExpiresAt: Infinity, expiresAt: Infinity, currentJti: "" });
const REVOKED = Object.freeze({ ...LIVE, status: "revoked" as const });

export class RevocationIndex implements Pick<SessionReader, "tokenState"> {
  /** `${subject}\u0000${jti}` -> until (jtis are only unique per subject, as the authority keys them). */
  private readonly jtis = new Map<string, number>();
  /** session id -> until (the id carries its subject's tag; the subject is checked by the verifier already). */
  private readonly sessions = new Map<string, number>();
  /** kid -> until: a revoked signing key (its tokens are refused by the verifier, src/domain/tokens.ts isRevoked). */
  private readonly kids = new Map<string, number>();
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(
    private readonly now: () => number,
    /** Kept this much past an entry's expiry: tokens are accepted that long past their exp. */
    private readonly skewMs: number,
    sweepEveryMs = 1_000,
  ) {
    this.sweepTimer = setInterval(() => this.sweep(), sweepEveryMs);
    this.sweepTimer.unref();
  }

  /** Takes in entries from the feed (a snapshot or a change; order does not matter, revocations never undo). */
  apply(entries: Iterable<FeedEntry>): void {
    const now = this.now();
    for (const e of entries) {
      const until = e.expiresAt + this.skewMs;
      if (until <= now) continue;
      switch (e.kind) {
        case "token":
          keep(this.jtis, jtiKey(e.subject, e.target), until);
          break;
        case "session":
          keep(this.sessions, e.target, until);
          break;
        case "subject":
          for (const id of e.sessionIds) keep(this.sessions, id, until);
          break;
        case "key":
          keep(this.kids, e.target, until);
          break;
      }
    }
  }

  async tokenState(q: { subject: string; sessionId: string; jti: string }): Promise<TokenState> {
    return this.stateOf(q);
  }

  /** tokenState without the promise (the sidecar's Introspect is synchronous after the signature check). */
  stateOf(q: { subject: string; sessionId: string; jti: string }): TokenState {
    const now = this.now();
    const jtiRevoked = live(this.jtis.get(jtiKey(q.subject, q.jti)), now);
    const sessionRevoked = live(this.sessions.get(q.sessionId), now);
    return { jtiRevoked, session: sessionRevoked ? REVOKED : LIVE };
  }

  /** Whether the feed says this signing key was revoked. */
  keyRevoked(kid: string): boolean {
    return live(this.kids.get(kid), this.now());
  }

  /** Entries held now. */
  get size(): { jtis: number; sessions: number; keys: number } {
    return { jtis: this.jtis.size, sessions: this.sessions.size, keys: this.kids.size };
  }

  /** Forgets what no longer matters (also done every second by itself). */
  sweep(): void {
    const now = this.now();
    for (const map of [this.jtis, this.sessions, this.kids]) for (const [k, until] of map) if (until <= now) map.delete(k);
  }

  close(): void {
    clearInterval(this.sweepTimer);
  }
}

function jtiKey(subject: string, jti: string): string {
  return `${subject}\u0000${jti}`;
}

function keep(map: Map<string, number>, key: string, until: number): void {
  const had = map.get(key);
  if (had === undefined || had < until) map.set(key, until);
}

function live(until: number | undefined, now: number): boolean {
  return until !== undefined && until > now;
}
