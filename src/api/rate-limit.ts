/**
 * Rate limits and refresh lockout (rate-limiter-flexible, fixed windows):
 *
 * - per caller and method, for every call of Tessera's own services (`admitCaller`, a step of the call pipeline);
 * - per subject for Issue and for Refresh (each counted apart), per client IP for Issue (`issue`, `refresh`);
 * - lockout: repeated failed refreshes of one session (or of one subject, across its sessions) lock it out of Refresh
 *   for a while (`refresh`). Only failures after the refresh token's signature checked out count, so a forged token
 *   cannot lock anybody out; a successful refresh clears its session's count.
 *
 * A refused call is RESOURCE_EXHAUSTED with a google.rpc.RetryInfo. The counters are the store's (CounterStore,
 * src/store/counters.ts): with Redis every process on the same Redis and prefix shares them; otherwise they live in
 * this process's memory. Fail closed: counters that cannot be reached refuse the call with UNAVAILABLE. There is deliberately no in-memory
 * "insurance" limiter: it would let every process admit the full limit on its own and forget every lockout while
 * Redis is away. Limiter keys never hold a token or an API key: caller names, hashed subjects, IPs and session ids.
 */
import type { RateLimit, RefreshLockout } from "../config/config.js";
import type { AuditSink } from "../domain/audit-trail.js";
import { TesseraError } from "../domain/errors.js";
import type { CounterStore, Counters } from "../domain/store.js";
import { digest } from "../domain/ids.js";
import { rateLimited } from "./errors.js";
import type { AdmitCaller } from "./pipeline.js";

/** Which limit refused a call. */
export type LimitKind = "caller" | "subject" | "ip" | "session_lockout" | "subject_lockout";

export interface LimitsDeps {
  caller?: RateLimit | undefined;
  subject?: RateLimit | undefined;
  ip?: RateLimit | undefined;
  lockout?: RefreshLockout | undefined;
  /** Where the counts live: the store's counters (shared by every process on a Redis store). */
  counters: CounterStore;
  /**
   * Told of every refused call, for the audit trail: which limit, and whose: `<caller>/<service>/<method>`, the subject, the
   * client IP (an IPv6 /64) or the session id. Never a token or an API key.
   */
  onLimited?: ((what: LimitKind, key: string) => void) | undefined;
}

/** The subject and session a validly signed refresh token names. */
export interface RefreshHolder {
  subject: string;
  sessionId: string;
}

/** What the token service asks before Issue and around Refresh. */
export interface RequestLimits {
  /** Before an Issue: the subject's and the client IP's budgets. Throws RESOURCE_EXHAUSTED (or UNAVAILABLE). */
  issue(subject: string, ip: string): Promise<void>;
  /**
   * Runs one Refresh. `attempt` must call `admit` once the token names its holder and before touching the session
   * (Authority.refresh's `admit` option): admit refuses a locked-out session or subject and takes the subject's
   * budget. An UNAUTHENTICATED failure after admit counts towards the lockout; a success clears the session's count.
   */
  refresh<T>(attempt: (admit: (holder: RefreshHolder) => Promise<void>) => Promise<T>): Promise<T>;
}

/** No limits at all (tests of other layers). */
export const NO_LIMITS: RequestLimits = {
  issue: async () => {},
  refresh: (attempt) => attempt(async () => {}),
};

const MESSAGES: Record<LimitKind, string> = {
  caller: "rate limit exceeded for this caller and method",
  subject: "rate limit exceeded for this subject",
  ip: "rate limit exceeded for this client IP",
  session_lockout: "too many failed refreshes: try again later",
  subject_lockout: "too many failed refreshes: try again later",
};

/** A lockout counter: `points` failures within the window, then blocked (points + 1) for the lock time. */
interface Counter {
  counts: Counters;
  points: number;
  kind: LimitKind;
}

export class Limits implements RequestLimits {
  /** Per caller and method: the pipeline's step after caller authentication; undefined when unlimited. */
  readonly admitCaller: AdmitCaller | undefined;
  private readonly subjectLimiter: Counters | undefined;
  private readonly ipLimiter: Counters | undefined;
  private readonly sessionFailures: Counter | undefined;
  private readonly subjectFailures: Counter | undefined;
  private readonly lockMs: number;
  private readonly onLimited: (what: LimitKind, key: string) => void;
  private readonly counters: CounterStore;

  constructor(deps: LimitsDeps) {
    const store = deps.counters;
    const limiter = (name: string, limit: RateLimit | undefined) => limit && store.counters(name, limit.points, limit.windowMs);
    const counter = (name: string, kind: LimitKind, points: number, lockout: RefreshLockout): Counter | undefined =>
      points > 0 ? { counts: store.counters(name, points, lockout.windowMs), points, kind } : undefined;

    this.counters = store;
    this.onLimited = deps.onLimited ?? (() => {});
    this.subjectLimiter = limiter("subject", deps.subject);
    this.ipLimiter = limiter("ip", deps.ip);
    const lockout = deps.lockout;
    this.sessionFailures = lockout && counter("fail:session", "session_lockout", lockout.after, lockout);
    this.subjectFailures = lockout && counter("fail:subject", "subject_lockout", lockout.subjectAfter, lockout);
    this.lockMs = lockout?.lockMs ?? 0;

    const callerLimiter = limiter("caller", deps.caller);
    this.admitCaller =
      callerLimiter &&
      (async (caller, call) => {
        const rpc = `${call.method.parent.typeName}/${call.method.name}`;
        await this.take(callerLimiter, `${caller.name}:${rpc}`, "caller", `${caller.name}/${rpc}`);
      });
  }

  async issue(subject: string, ip: string): Promise<void> {
    await Promise.all([
      this.subjectLimiter && this.take(this.subjectLimiter, `issue:${digest(subject)}`, "subject", subject),
      this.ipLimiter && ip !== "" && this.take(this.ipLimiter, ipKey(ip), "ip", ipKey(ip)),
    ]);
  }

  async refresh<T>(attempt: (admit: (holder: RefreshHolder) => Promise<void>) => Promise<T>): Promise<T> {
    let admitted: { holder: RefreshHolder; subjectKey: string; sessionFailures: number } | undefined;
    const admit = async (holder: RefreshHolder) => {
      const subjectKey = digest(holder.subject); // once: the counters and the subject budget all key by it
      const [sessionFailures, subjectFailures] = await this.failureCounts(holder.sessionId, subjectKey);
      await this.refuseIfLocked(this.sessionFailures, sessionFailures, holder.sessionId, holder.sessionId);
      await this.refuseIfLocked(this.subjectFailures, subjectFailures, subjectKey, holder.subject);
      if (this.subjectLimiter) await this.take(this.subjectLimiter, `refresh:${subjectKey}`, "subject", holder.subject);
      admitted = { holder, subjectKey, sessionFailures };
    };
    let result: T;
    try {
      result = await attempt(admit);
    } catch (err) {
      if (admitted !== undefined && err instanceof TesseraError && err.code === "unauthenticated") {
        await this.failed(admitted.holder.sessionId, admitted.subjectKey);
      }
      throw err;
    }
    if (admitted !== undefined && admitted.sessionFailures > 0 && this.sessionFailures) {
      // Best effort: the refresh has happened; a count left behind expires with its window.
      await this.sessionFailures.counts.delete(admitted.holder.sessionId).catch(() => {});
    }
    return result;
  }

  /**
   * Failures counted so far for the session and the subject, in one round trip (the hot path of every Refresh); the
   * counter's own read, which also tells the lock's remaining time, is only needed once a lock is on.
   */
  private async failureCounts(sessionKey: string, subjectKey: string): Promise<[number, number]> {
    const wanted: Array<readonly [Counters, string]> = [];
    if (this.sessionFailures) wanted.push([this.sessionFailures.counts, sessionKey]);
    if (this.subjectFailures) wanted.push([this.subjectFailures.counts, subjectKey]);
    const counts = await this.counters.countMany(wanted);
    let i = 0;
    return [this.sessionFailures ? counts[i++]! : 0, this.subjectFailures ? counts[i++]! : 0];
  }

  /** Refuses with RetryInfo (the lock's remaining time) if the count is past the counter's limit. */
  private async refuseIfLocked(c: Counter | undefined, count: number, key: string, who: string): Promise<void> {
    if (c === undefined || count <= c.points) return;
    const res = await c.counts.get(key);
    this.refuse(c.kind, who, res?.retryAfterMs ?? this.lockMs);
  }

  /** Counts one failed refresh against its session and subject, locking whichever reaches its threshold. */
  private async failed(sessionId: string, subjectKey: string): Promise<void> {
    const count = async (c: Counter | undefined, key: string) => {
      if (c === undefined) return;
      if ((await c.counts.add(key)) >= c.points) await c.counts.block(key, this.lockMs);
    };
    await Promise.all([count(this.sessionFailures, sessionId), count(this.subjectFailures, subjectKey)]);
  }

  private async take(limiter: Counters, key: string, what: LimitKind, who: string): Promise<void> {
    const res = await limiter.consume(key);
    if (!res.allowed) this.refuse(what, who, res.retryAfterMs);
  }

  private refuse(what: LimitKind, who: string, retryAfterMs: number): never {
    this.onLimited(what, who);
    throw rateLimited(MESSAGES[what], retryAfterMs, new Error(`${what} limit: ${who}`));
  }
}

/**
 * Records each refused call in the audit trail (LimitsDeps.onLimited): a `rate_limited` event naming whom the limit
 * counted (the subject, or the session for a session lockout) and which limit it was; the caller and IP limits put
 * their key in the detail. The limiter knows what was limited and for whom, not the whole request.
 */
export function auditLimited(audit: AuditSink): (what: LimitKind, key: string) => void {
  return (what, key) =>
    audit.record({
      type: "rate_limited",
      ...(what === "subject" || what === "subject_lockout" ? { subject: key } : {}),
      ...(what === "session_lockout" ? { sessionId: key } : {}),
      detail: { limit: what, ...(what === "caller" || what === "ip" ? { key } : {}) },
    });
}

/** The key an IP is counted under: an IPv4 address as it is, an IPv6 address by its /64 (one subscriber's network). */
export function ipKey(ip: string): string {
  const addr = ip.split("%", 1)[0]!.toLowerCase();
  if (!addr.includes(":")) return addr;
  let host: string;
  try {
    host = new URL(`http://[${addr}]/`).hostname.slice(1, -1); // canonical: lowercase, compressed, no dotted quad
  } catch {
    return addr;
  }
  const [head = "", tail] = host.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  if (groups.slice(0, 5).every((g) => g === "0") && groups[5] === "ffff") {
    const n = (parseInt(groups[6]!, 16) << 16) | parseInt(groups[7]!, 16); // IPv4-mapped: count as the IPv4 address
    return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
  }
  return `${groups.slice(0, 4).join(":")}::/64`;
}
