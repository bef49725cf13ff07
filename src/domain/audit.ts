/**
 * The security audit trail's vocabulary: event types and their severities, the shape of an event, how a query
 * selects events, and the suspicious-activity risk score as pure functions of what the store kept per subject.
 * An event never holds a token, a key or any other secret: identifiers (subject, session id, jti, kid) only.
 */
import { digest } from "./ids.js";

export const AUDIT_SEVERITIES = ["info", "notice", "warning", "critical"] as const;
export type AuditSeverity = (typeof AUDIT_SEVERITIES)[number];

/** Every event type, with its severity. The README's "Security audit" table mirrors this. */
export const AUDIT_TYPES = {
  /** Issue opened a session and signed its first pair. */
  token_issued: "info",
  /** Refresh rotated a session's refresh token (or replayed the pair inside the grace window). */
  token_refreshed: "info",
  /** A rotated-out refresh token came back: the session was revoked. */
  refresh_reuse_detected: "critical",
  /** Refresh refused: a bad or expired refresh token, or a session that has ended by itself. */
  refresh_failed: "notice",
  /** Revoke of an access token. */
  token_revoked: "notice",
  /** Revoke of a session (by id, or by presenting its refresh token). */
  session_revoked: "notice",
  /** Revoke of a subject: logout everywhere. */
  subject_revoked: "notice",
  /** A session revoked to keep its subject within the session limit. */
  session_evicted: "notice",
  /** A revoked token (or a token of a revoked session or subject) came to Introspect or Refresh. */
  revoked_token_presented: "warning",
  /** A call refused by caller authentication (UNAUTHENTICATED) or authorization (PERMISSION_DENIED). */
  caller_denied: "warning",
  /** A call refused by a rate limit (RESOURCE_EXHAUSTED). */
  rate_limited: "notice",
  /** A subject's risk score reached the threshold (at most once per risk window). */
  suspicious_activity: "warning",
  /** A new signing key was created by RotateKeys or by the rotation schedule (detail.scheduled). */
  keys_rotated: "notice",
  /** A signing key was revoked by RevokeKey: every token it signed is inactive. */
  key_revoked: "warning",
} as const satisfies Record<string, AuditSeverity>;

export type AuditType = keyof typeof AUDIT_TYPES;
export const AUDIT_TYPE_NAMES = Object.keys(AUDIT_TYPES) as AuditType[];

/** Who caused an event: built at the edge from the authenticated caller and the request's client info. */
export interface AuditContext {
  /** The caller's configured name ("anonymous" in open mode); empty when the caller is unknown. */
  caller: string;
  /** The end user's IP address and client, as the calling service reported them (empty if the request has none). */
  ip: string;
  userAgent: string;
  deviceId: string;
  /** The request id of the call (the log lines of the call carry the same). */
  requestId: string;
}

/** For events nobody's call caused, and for callers of the domain that have no request (tests, tools). */
export const NO_CONTEXT: AuditContext = Object.freeze({ caller: "", ip: "", userAgent: "", deviceId: "", requestId: "" });

export interface AuditEvent extends AuditContext {
  type: AuditType;
  severity: AuditSeverity;
  /** When it happened, ms since the epoch (the authority's clock). */
  at: number;
  /** Empty when not known (e.g. a refresh token that did not verify). */
  subject: string;
  sessionId: string;
  /** Type-specific facts (reason, rpc, jti, counts); small, never secret. */
  detail: Record<string, string>;
  /**
   * subject_revoked: the ids of the sessions it ended (up to TESSERA_MAX_SESSIONS), for the usage statistics
   * (domain/stats.ts). In this process only, on the way to the store's appendAudit: neither logged nor kept in the
   * stored trail (detail.sessions counts them; the revocation feed's entry lists them).
   */
  endedSessions?: readonly string[];
}

/** An event as the store keeps it: `id` orders events (newer is greater) and is the paging cursor. */
export interface StoredAuditEvent extends AuditEvent {
  id: string;
}

/** What to list. Every filter that is set must match; the newest matching events come first. */
export interface AuditQuery {
  subject?: string;
  sessionId?: string;
  /** Any of these types (empty or absent: every type). */
  types?: readonly AuditType[];
  /** This severity or a higher one. */
  minSeverity?: AuditSeverity;
  /** Inclusive bounds on `at`. */
  from?: number;
  to?: number;
  /** Events after (older than) this cursor; absent or null: from the newest. */
  cursor?: string | null;
  limit: number;
}

export interface AuditPage {
  events: StoredAuditEvent[];
  /** Cursor of the next (older) page; null when nothing older can match. */
  next: string | null;
}

/** How the store bounds the trail: by count (approximately, in Redis) and by age (from `now`, the caller's clock). */
export interface AuditBounds {
  now: number;
  maxEvents: number;
  maxAgeMs: number;
  /** Risk observations older than this are forgotten; the per-subject risk state expires after it. */
  riskWindowMs: number;
}

/**
 * At most this many stored events are examined for one page, so a selective filter cannot make one call walk the
 * whole trail: a page may then hold fewer than `limit` events and still have a `next` cursor.
 */
export const AUDIT_SCAN_LIMIT = 5_000;

export function severityRank(s: AuditSeverity): number {
  return AUDIT_SEVERITIES.indexOf(s);
}

/** Whether an event passes the query's filters (not its cursor or limit). Both stores use this. */
export function auditMatches(e: AuditEvent, q: AuditQuery): boolean {
  return (
    (!q.subject || e.subject === q.subject) &&
    (!q.sessionId || e.sessionId === q.sessionId) &&
    (!q.types || q.types.length === 0 || q.types.includes(e.type)) &&
    (!q.minSeverity || severityRank(e.severity) >= severityRank(q.minSeverity)) &&
    (q.from === undefined || e.at >= q.from) &&
    (q.to === undefined || e.at <= q.to)
  );
}

/**
 * Stream-style event ids, `<ms>-<seq>`: ms is the event's time, raised to the newest id's ms if the event is older
 * (events of several processes arrive out of order), so ids only grow and age trimming by id follows event time.
 * The memory store uses this. Lua twin: the id loop of AUDIT_APPEND in src/store/redis/audit.ts.
 */
export function nextAuditId(last: string | null, at: number): string {
  const [lastMs, lastSeq] = last === null ? [-1, 0] : last.split("-").map(Number) as [number, number];
  return at > lastMs ? `${at}-0` : `${lastMs}-${lastSeq + 1}`;
}

const AUDIT_ID = /^\d{1,19}-\d{1,19}$/;

/** Whether a string is an audit id (a store cursor), `<ms>-<seq>`. */
export function isAuditId(s: string): boolean {
  return AUDIT_ID.test(s);
}

/** Compares two audit ids (`<ms>-<seq>`): negative if a is older. */
export function compareAuditIds(a: string, b: string): number {
  const [am, as] = a.split("-").map(Number) as [number, number];
  const [bm, bs] = b.split("-").map(Number) as [number, number];
  return am - bm || as - bs;
}

// ---------------------------------------------------------------------------------------------------------------
// Suspicious activity

/**
 * What the store keeps per subject for the risk score: recent observations (instants, ms), each dropped once it is
 * older than the risk window, and each collection capped (RISK_CAPS) so one subject's state stays small.
 */
export interface RiskObservations {
  /** IP address (its riskTag) -> last seen. */
  ips: Record<string, number>;
  /** Device id (its riskTag) -> last seen. */
  devices: Record<string, number>;
  /** Instants of refreshes. */
  refreshes: number[];
  /** Instants of refresh-token reuse detections. */
  reuses: number[];
  /** Instants a revoked token was presented. */
  revokedPresented: number[];
  /** Last suspicious_activity raised for the subject; 0: never (within the window). */
  alertedAt: number;
}

/** What one audit event tells the risk score, if anything. */
export interface RiskSignal {
  subject: string;
  at: number;
  ip: string;
  deviceId: string;
  /** A counted occurrence, besides the IP and device seen. */
  count?: "refresh" | "reuse" | "revoked_presented";
}

export const RISK_CAPS = { keys: 32, instants: 64 } as const;

/**
 * The scoring rules. A subject may use a couple of addresses and devices (home, phone) and refresh now and then
 * without scoring anything; beyond that each extra one adds points. The score is capped at `max`.
 */
export const RISK_RULES = {
  freeIps: 2,
  perIp: 10,
  freeDevices: 2,
  perDevice: 10,
  freeRefreshes: 10,
  perRefresh: 5,
  perReuse: 40,
  perRevokedPresented: 15,
  max: 100,
} as const;

/** The signal counts inside the window, which the score is made of. */
export interface RiskFacts {
  distinctIps: number;
  distinctDevices: number;
  refreshes: number;
  reuses: number;
  revokedPresented: number;
}

export interface RiskAssessment extends RiskFacts {
  score: number;
}

const SIGNAL_COUNTS: Partial<Record<AuditType, RiskSignal["count"] | null>> = {
  token_issued: null,
  token_refreshed: "refresh",
  refresh_reuse_detected: "reuse",
  revoked_token_presented: "revoked_presented",
};

/**
 * How an IP address or device id is kept in the risk observations: only told apart from the others, so 48 bits of
 * its digest (8 characters) do, whatever its length (a device id is often a 36-character UUID); "" stays "".
 */
export function riskTag(value: string): string {
  return value === "" ? "" : digest(value).slice(0, 8);
}

/** The risk signal an event carries: Issue, Refresh, reuse and revoked presentations of a known subject. */
export function riskSignal(e: AuditEvent): RiskSignal | null {
  const count = SIGNAL_COUNTS[e.type];
  if (count === undefined || e.subject === "") return null;
  const signal: RiskSignal = { subject: e.subject, at: e.at, ip: riskTag(e.ip), deviceId: riskTag(e.deviceId) };
  if (count) signal.count = count;
  return signal;
}

/** The risk signals of a batch of events, by subject, each subject's in event order. */
export function riskSignalsBySubject(events: readonly AuditEvent[]): Map<string, RiskSignal[]> {
  const out = new Map<string, RiskSignal[]>();
  for (const e of events) {
    const s = riskSignal(e);
    if (s === null) continue;
    const list = out.get(s.subject);
    if (list === undefined) out.set(s.subject, [s]);
    else list.push(s);
  }
  return out;
}

export function emptyRisk(): RiskObservations {
  return { ips: {}, devices: {}, refreshes: [], reuses: [], revokedPresented: [], alertedAt: 0 };
}

/**
 * The observations after adding `signals` at `now`: entries outside the window (at or before now - windowMs) are
 * dropped, then each collection is cut to its cap, oldest first (ties: smaller key first). The memory store uses
 * this. Lua twin: RISK_UPDATE in src/store/redis/audit.ts (Redis merges inside the script, so the read, merge and
 * write are one atomic step); change both or neither, the audit contract holds them to the same answers.
 */
export function mergeRisk(
  prev: RiskObservations | null,
  signals: readonly RiskSignal[],
  now: number,
  windowMs: number,
): RiskObservations {
  const since = now - windowMs;
  const base = prev ?? emptyRisk();
  const ips = { ...base.ips };
  const devices = { ...base.devices };
  const lists = { refresh: [...base.refreshes], reuse: [...base.reuses], revoked_presented: [...base.revokedPresented] };
  for (const s of signals) {
    if (s.ip !== "") ips[s.ip] = Math.max(ips[s.ip] ?? 0, s.at);
    if (s.deviceId !== "") devices[s.deviceId] = Math.max(devices[s.deviceId] ?? 0, s.at);
    if (s.count) lists[s.count].push(s.at);
  }
  const keep = (t: number) => t > since;
  return {
    ips: capKeys(ips, keep),
    devices: capKeys(devices, keep),
    refreshes: capInstants(lists.refresh, keep),
    reuses: capInstants(lists.reuse, keep),
    revokedPresented: capInstants(lists.revoked_presented, keep),
    alertedAt: alertedWithin(base, now, windowMs) ? base.alertedAt : 0,
  };
}

function capKeys(m: Record<string, number>, keep: (t: number) => boolean): Record<string, number> {
  const entries = Object.entries(m)
    .filter(([, t]) => keep(t))
    .sort(([ak, at], [bk, bt]) => at - bt || (ak < bk ? -1 : ak > bk ? 1 : 0));
  return Object.fromEntries(entries.slice(Math.max(0, entries.length - RISK_CAPS.keys)));
}

function capInstants(list: number[], keep: (t: number) => boolean): number[] {
  const kept = list.filter(keep).sort((a, b) => a - b);
  return kept.slice(Math.max(0, kept.length - RISK_CAPS.instants));
}

/**
 * The counts inside the window (at or before now - windowMs is outside). Nothing recorded: all zero. Counted in loops,
 * not filtered into arrays: Introspect scores the subject's observations on every call.
 */
export function riskFacts(obs: RiskObservations | null | undefined, now: number, windowMs: number): RiskFacts {
  if (!obs) return { distinctIps: 0, distinctDevices: 0, refreshes: 0, reuses: 0, revokedPresented: 0 };
  const since = now - windowMs;
  return {
    distinctIps: liveValues(obs.ips, since),
    distinctDevices: liveValues(obs.devices, since),
    refreshes: liveInstants(obs.refreshes, since),
    reuses: liveInstants(obs.reuses, since),
    revokedPresented: liveInstants(obs.revokedPresented, since),
  };
}

function liveValues(m: Record<string, number>, since: number): number {
  let n = 0;
  for (const k of Object.keys(m)) if (m[k]! > since) n++;
  return n;
}

function liveInstants(list: readonly number[], since: number): number {
  let n = 0;
  for (const t of list) if (t > since) n++;
  return n;
}

/** The risk score, 0 to RISK_RULES.max, from the counts. */
export function riskScore(f: RiskFacts): number {
  const r = RISK_RULES;
  const beyond = (n: number, free: number) => Math.max(0, n - free);
  const raw =
    beyond(f.distinctIps, r.freeIps) * r.perIp +
    beyond(f.distinctDevices, r.freeDevices) * r.perDevice +
    beyond(f.refreshes, r.freeRefreshes) * r.perRefresh +
    f.reuses * r.perReuse +
    f.revokedPresented * r.perRevokedPresented;
  return Math.min(r.max, raw);
}

export function assessRisk(obs: RiskObservations | null | undefined, now: number, windowMs: number): RiskAssessment {
  const f = riskFacts(obs, now, windowMs);
  // Member by member: a spread and then a member is V8's slow path (tokens.ts ownMembers).
  const { distinctIps, distinctDevices, refreshes, reuses, revokedPresented } = f;
  return { distinctIps, distinctDevices, refreshes, reuses, revokedPresented, score: riskScore(f) };
}

/**
 * Whether the observations call for a suspicious_activity event now: the score reached the threshold and none was
 * raised for the subject within the window. (The store's claimRiskAlert then makes "at most once" hold across
 * processes.)
 */
export function shouldAlert(obs: RiskObservations, score: number, threshold: number, now: number, windowMs: number): boolean {
  return score >= threshold && !alertedWithin(obs, now, windowMs);
}

/**
 * The alert window: whether a suspicious_activity event was raised for the subject within the window (after
 * now - windowMs). shouldAlert, mergeRisk (which forgets an older mark) and the memory store's claimRiskAlert use it.
 * Lua twin: `alerted_within` in RISK_PRELUDE (src/store/redis/audit.ts), used by RISK_UPDATE and RISK_CLAIM_ALERT.
 */
export function alertedWithin(obs: Pick<RiskObservations, "alertedAt">, now: number, windowMs: number): boolean {
  return obs.alertedAt > 0 && obs.alertedAt > now - windowMs;
}
