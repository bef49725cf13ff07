/**
 * The production store on Redis. Behaves exactly like the memory store (the reference semantics); every multi-step
 * change is one Lua script (see redis-scripts.ts), every key expires by itself, and every failure to reach Redis is a
 * StoreUnavailableError so callers fail closed.
 *
 * Key layout under the prefix P (t = the subject's tag, ids.subjectTag, a Redis Cluster hash tag; a session id
 * starts with its subject's tag, so a session is found from its id alone):
 *   P{t}:s:<sid>  session (JSON array)     P{t}:g:<sid>  previous pair, for the grace window only
 *   P{t}:idx      zset of the subject's active sessions (score lastUsedAt)
 *   P{t}:j:<jti>  revoked token id
 *   P keys        hash kid -> [order, StoredKey] JSON (never expires)
 *   P feed        revocation stream, capped at ~100 000 entries; stream ids are the cursors
 *   P audit       audit stream (ids `<at ms>-<seq>`), MAXLEN ~ TESSERA_AUDIT_MAX_EVENTS, MINID now - TESSERA_AUDIT_MAX_AGE
 *   P{t}:risk     the subject's risk observations (JSON), expiring TESSERA_RISK_WINDOW after the last update
 */
import { Redis, type ChainableCommander } from "ioredis";
import { StoreUnavailableError, TesseraError } from "../domain/errors.js";
import {
  AUDIT_SCAN_LIMIT,
  RISK_CAPS,
  auditMatches,
  isAuditId,
  riskSignalsBySubject,
  type AuditBounds,
  type AuditEvent,
  type AuditPage,
  type AuditQuery,
  type AuditSeverity,
  type AuditType,
  type RiskObservations,
  type StoredAuditEvent,
} from "../domain/audit.js";
import { sessionTag, subjectTag } from "../domain/ids.js";
import {
  assertSessionIdOf,
  type ClientInfo,
  type IssuedPair,
  type RevocationEvent,
  type RevocationKind,
  type RotateInput,
  type RotateResult,
  type SessionRecord,
  type Store,
  type StoredKey,
  type TokenState,
} from "../domain/store.js";
import { AUDIT_FIELDS, SCRIPTS, type ScriptName, type SessionTuple } from "./redis-scripts.js";

const FEED_MAXLEN = "100000";
const STREAM_ID = /^\d{1,19}(-\d{1,19})?$/;

/** An ioredis client that fails fast: no offline queue, no retries of a command, a timeout on each command. */
export function createRedisClient(url: string, opts: { commandTimeoutMs: number }): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    // Commands made in the same tick go out in one write (measured: one write syscall per command cost a fifth of
    // Introspect's CPU).
    enableAutoPipelining: true,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1000),
    // Reconnect forever, backing off up to one second.
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 10), 1000),
  });
  redis.on("error", ignore);
  return redis;
}

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;
type Cell = string | null;

interface Row {
  status: "active" | "revoked";
  record: SessionRecord;
  /** Creation order among the subject's sessions. */
  order: number;
}

export class RedisStore implements Store {
  readonly kind = "redis" as const;
  private readonly prefix: string;
  private readonly waitReplicas: number;
  private readonly waitTimeoutMs: number;

  /**
   * `waitReplicas` > 0: a revocation is acknowledged only once that many replicas have it (Redis WAIT, up to
   * `waitTimeoutMs`); fewer in time fails the call with UNAVAILABLE (the revocation stays applied on the primary, and
   * a retry waits again).
   */
  constructor(
    private readonly redis: Redis,
    opts: { prefix: string; waitReplicas?: number; waitTimeoutMs?: number },
  ) {
    this.prefix = opts.prefix;
    this.waitReplicas = opts.waitReplicas ?? 0;
    this.waitTimeoutMs = opts.waitTimeoutMs ?? 500;
    // An unreachable server must never crash the process with an unhandled 'error' event.
    redis.on("error", ignore);
    for (const [name, script] of Object.entries(SCRIPTS)) redis.defineCommand(commandName(name), script);
  }

  async listKeys(): Promise<StoredKey[]> {
    return this.guard(async () => parseKeys(await this.redis.hvals(this.keysKey())));
  }

  async addKey(key: StoredKey, onlyIfAlgAbsent: boolean): Promise<StoredKey[]> {
    return this.guard(async () => {
      const args = [key.kid, key.alg, JSON.stringify(key), onlyIfAlgAbsent ? "1" : "0"];
      return parseKeys((await this.script("addKey", [this.keysKey()], args)) as string[]);
    });
  }

  async createSession(
    s: SessionRecord,
    opts: { maxSessions: number; now: number; retentionMs: number },
  ): Promise<{ evicted: string[] }> {
    assertSessionIdOf(s);
    const base = this.sessionBase(s.id)!; // = base(s.subject), by the assertion, without digesting it again
    return this.guard(async () => {
      const c = s.client;
      const args = [
        base, opts.now, opts.maxSessions, opts.retentionMs, s.id,
        s.createdAt, s.lastUsedAt, s.idleExpiresAt, s.expiresAt, s.currentJti,
        JSON.stringify([c.deviceId, c.userAgent, c.ip, c.platform]), s.subject,
      ];
      const evicted = (await this.script("createSession", [`${base}idx`], args)) as string[];
      const reason = "evicted: session limit";
      const subject = s.subject;
      await this.publish(evicted.map((target) => ({ kind: "session", subject, target, at: opts.now, reason })));
      return { evicted };
    });
  }

  async rotateRefresh(input: RotateInput): Promise<RotateResult> {
    return this.guard(async () => {
      const { subject, sessionId, now } = input;
      const base = this.base(subject);
      const args = [
        base, now, sessionId, input.presentedJti, input.nextJti, input.clientFingerprint,
        input.graceMs, input.idleTtlMs, input.retentionMs,
        JSON.stringify([input.presentedJti, input.clientFingerprint, now, input.nextPair]),
      ];
      const [outcome, a, b] = (await this.script("rotate", [`${base}s:${sessionId}`], args)) as string[];
      switch (outcome) {
        case "rotated":
          return { outcome: "rotated", session: parseSession(sessionId, a!)!.record };
        case "replayed":
          return {
            outcome: "replayed",
            pair: (JSON.parse(b!) as [string, string, number, IssuedPair])[3],
            session: parseSession(sessionId, a!)!.record,
          };
        case "reused":
          await this.publish([{ kind: "session", subject, target: sessionId, at: now, reason: "refresh token reuse" }]);
          return { outcome: "reused" };
        default:
          return { outcome: "ended", why: a as "revoked" | "expired" | "missing" };
      }
    });
  }

  async tokenState(q: { subject: string; sessionId: string; jti: string }): Promise<TokenState> {
    return this.guard(async () => {
      // All three keys carry the subject's hash tag, so one MGET answers (in a cluster too).
      const base = this.base(q.subject); // one digest of the subject for all three key names
      const keys = [`${base}j:${q.jti}`, `${base}s:${q.sessionId}`, `${base}risk`];
      const [revoked, raw, risk] = await this.redis.mget(...keys);
      const row = parseSession(q.sessionId, raw ?? null);
      const session = row && {
        status: row.status,
        createdAt: row.record.createdAt,
        idleExpiresAt: row.record.idleExpiresAt,
        expiresAt: row.record.expiresAt,
        currentJti: row.record.currentJti,
      };
      return { jtiRevoked: revoked != null, session, ...(risk != null ? { risk: parseRisk(risk) } : {}) };
    });
  }

  async revokeToken(q: { subject: string; jti: string; expiresAt: number; now: number; reason: string }) {
    if (q.expiresAt <= q.now) return false;
    return this.guard(async () => {
      const set = await this.redis.set(this.jtiKey(q.subject, q.jti), "1", "PX", ttl(q.expiresAt, q.now), "NX");
      if (set === null) return this.replicated(false);
      await this.publish([{ kind: "token", subject: q.subject, target: q.jti, at: q.now, reason: q.reason }]);
      return true;
    });
  }

  async revokeSession(q: { sessionId: string; subject?: string; now: number; retentionMs: number; reason: string }) {
    const base = this.sessionBase(q.sessionId);
    if (base === null) return false;
    return this.guard(async () => {
      const args = [base, q.now, q.sessionId, q.retentionMs, q.subject ?? ""];
      const subject = await this.script("revokeSession", [`${base}s:${q.sessionId}`], args);
      if (typeof subject !== "string") return this.replicated(false);
      await this.publish([{ kind: "session", subject, target: q.sessionId, at: q.now, reason: q.reason }]);
      return true;
    });
  }

  async revokeSubject(q: { subject: string; now: number; retentionMs: number; reason: string }) {
    return this.guard(async () => {
      const args = [this.base(q.subject), q.now, q.retentionMs];
      const n = (await this.script("revokeSubject", [this.idxKey(q.subject)], args)) as number;
      await this.publish([{ kind: "subject", subject: q.subject, target: "", at: q.now, reason: q.reason }]);
      return n;
    });
  }

  async listSessions(subject: string, now: number): Promise<SessionRecord[]> {
    return this.guard(async () => {
      const flat = (await this.script("listSessions", [this.idxKey(subject)], [this.base(subject)])) as Cell[];
      const rows: Row[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const row = parseSession(flat[i]!, flat[i + 1]!);
        if (row && isLive(row, now)) rows.push(row);
      }
      // Most recently used first; ties in creation order, as the memory store's stable sort gives.
      rows.sort((a, b) => b.record.lastUsedAt - a.record.lastUsedAt || a.order - b.order);
      return rows.map((r) => r.record);
    });
  }

  async getSession(sessionId: string, now: number): Promise<SessionRecord | null> {
    const base = this.sessionBase(sessionId);
    if (base === null) return null;
    return this.guard(async () => {
      const row = parseSession(sessionId, await this.redis.get(`${base}s:${sessionId}`));
      return row && isLive(row, now) ? row.record : null;
    });
  }

  async revocations(cursor: string | null, limit: number): Promise<RevocationEvent[]> {
    const count = Math.floor(limit);
    if (count <= 0 || (cursor !== null && !STREAM_ID.test(cursor))) return [];
    return this.guard(async () => {
      let entries: [string, string[]][];
      try {
        entries = await this.redis.xrange(this.feedKey(), cursor === null ? "-" : `(${cursor}`, "+", "COUNT", count);
      } catch (err) {
        // A well-formed cursor Redis still refuses (past the largest id): nothing follows it.
        if (err instanceof Error && err.name === "ReplyError" && /ID/i.test(err.message)) return [];
        throw err;
      }
      return entries.map(([id, fields]) => {
        const f = new Map<string, string>();
        for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
        return {
          id,
          kind: f.get("k") as RevocationKind,
          subject: f.get("s") ?? "",
          target: f.get("t") ?? "",
          at: Number(f.get("a")),
          reason: f.get("r") ?? "",
        };
      });
    });
  }

  async appendAudit(events: readonly AuditEvent[], b: AuditBounds): Promise<{ subject: string; risk: RiskObservations }[]> {
    if (events.length === 0) return [];
    const signals = riskSignalsBySubject(events);
    return this.guard(async () => {
      // One pipeline: the stream append (its own key) and one script per signalled subject (that subject's slot).
      const pipeline = this.redis.pipeline();
      const values = events.flatMap((e) => [
        e.at, e.type, e.severity, e.caller, e.subject, e.sessionId, e.ip, e.userAgent, e.deviceId, e.requestId,
        JSON.stringify(e.detail),
      ]);
      if (values.length !== events.length * AUDIT_FIELDS.length) throw new Error("audit fields out of step");
      pipelineScript(pipeline, "auditAppend", [this.auditKey()], [b.maxEvents, `${b.now - b.maxAgeMs}-0`, ...values]);
      const subjects = [...signals.keys()];
      for (const subject of subjects) {
        const list = signals.get(subject)!.map((s) => [s.at, s.ip, s.deviceId, s.count ?? ""]);
        const args = [b.now, b.riskWindowMs, RISK_CAPS.keys, RISK_CAPS.instants, JSON.stringify(list)];
        pipelineScript(pipeline, "riskUpdate", [this.riskKey(subject)], args);
      }
      const results = (await pipeline.exec()) ?? [];
      for (const [err] of results) if (err) throw err;
      return subjects.map((subject, i) => ({ subject, risk: parseRisk(results[i + 1]![1] as string) }));
    });
  }

  async listAudit(q: AuditQuery): Promise<AuditPage> {
    const limit = Math.floor(q.limit);
    if (!(limit > 0) || (q.cursor && !isAuditId(q.cursor))) return { events: [], next: null };
    return this.guard(async () => {
      const events: StoredAuditEvent[] = [];
      // Ids are never below their event's time, so nothing below `${from}-0` can match.
      const floor = q.from === undefined ? "-" : `${Math.max(0, Math.floor(q.from))}-0`;
      let end = q.cursor ? `(${q.cursor}` : "+";
      let scanned = 0;
      // Chunks start at what the page still needs and double while a selective filter leaves them wanting.
      for (let chunk = Math.max(limit, 64); ; chunk = Math.min(chunk * 2, 2048)) {
        const count = Math.min(AUDIT_SCAN_LIMIT - scanned, Math.max(limit - events.length, chunk));
        let entries: [string, string[]][];
        try {
          entries = await this.redis.xrevrange(this.auditKey(), end, floor, "COUNT", count);
        } catch (err) {
          // A well-formed cursor Redis still refuses (0-0): nothing is older.
          if (err instanceof Error && err.name === "ReplyError" && /ID/i.test(err.message)) return { events, next: null };
          throw err;
        }
        for (const [i, [id, fields]] of entries.entries()) {
          scanned++;
          const e = parseAuditEvent(id, fields);
          if (auditMatches(e, q)) events.push(e);
          // The cursor is the last event examined: the next page starts just below it.
          if (events.length >= limit || scanned >= AUDIT_SCAN_LIMIT) {
            const more = i < entries.length - 1 || entries.length === count;
            return { events, next: more ? id : null };
          }
        }
        if (entries.length < count) return { events, next: null };
        end = `(${entries[entries.length - 1]![0]}`;
      }
    });
  }

  async riskOf(subject: string): Promise<RiskObservations | null> {
    return this.guard(async () => {
      const raw = await this.redis.get(this.riskKey(subject));
      return raw === null ? null : parseRisk(raw);
    });
  }

  async claimRiskAlert(q: { subject: string; now: number; windowMs: number }): Promise<boolean> {
    return this.guard(async () => (await this.script("riskClaimAlert", [this.riskKey(q.subject)], [q.now, q.windowMs])) === 1);
  }

  /** Resolves when Redis answers PING. While the first connection is still being made, waits for it (bounded). */
  async ping(): Promise<void> {
    await this.guard(async () => {
      await this.connected();
      await this.redis.ping();
    });
  }

  /** QUIT, so replies in flight arrive; a server that does not answer within a second (or the command timeout) is cut off. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const cutOff = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.min(this.redis.options.commandTimeout ?? 1000, 1000));
    });
    try {
      await Promise.race([this.redis.quit().then(() => undefined), cutOff]);
    } catch {
      // fall through to disconnect
    } finally {
      clearTimeout(timer);
      this.redis.disconnect();
    }
  }

  /** Waits for the client to be ready, at most one command timeout; a client that gave up is not waited for. */
  private async connected(): Promise<void> {
    const r = this.redis;
    if (r.status === "ready") return;
    if (r.status === "end" || r.status === "close") throw new Error(`redis client is ${r.status}`);
    if (r.status === "wait") r.connect().catch(ignore);
    const waitMs = r.options.commandTimeout ?? 1000;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        r.off("ready", onReady);
        r.off("end", onEnd);
        if (err) reject(err);
        else resolve();
      };
      const onReady = () => done();
      const onEnd = () => done(new Error("redis connection ended"));
      const timer = setTimeout(() => done(new Error(`redis not ready within ${waitMs}ms`)), waitMs);
      r.once("ready", onReady);
      r.once("end", onEnd);
    });
  }

  /**
   * Appends to the feed after the change it reports succeeded, then waits for replicas if configured; a failure
   * fails the call (the change stays).
   */
  private async publish(events: Omit<RevocationEvent, "id">[]): Promise<void> {
    if (events.length === 0) return;
    await Promise.all(
      events.map((e) =>
        this.redis.xadd(this.feedKey(), "MAXLEN", "~", FEED_MAXLEN, "*",
          "k", e.kind, "s", e.subject, "t", e.target, "a", String(e.at), "r", e.reason),
      ),
    );
    await this.replicated(undefined);
  }

  /**
   * With waitReplicas configured: WAIT until that many replicas have every write this connection made so far (so
   * also a revocation an earlier, failed call applied), or fail. Returns `result` unchanged.
   */
  private async replicated<T>(result: T): Promise<T> {
    if (this.waitReplicas > 0) {
      const acked = await this.redis.wait(this.waitReplicas, this.waitTimeoutMs);
      if (acked < this.waitReplicas) {
        throw new StoreUnavailableError(new Error(`revocation reached ${acked} of ${this.waitReplicas} replicas in time`));
      }
    }
    return result;
  }

  private script(name: ScriptName, keys: string[], args: (string | number)[]): Promise<unknown> {
    const call = (this.redis as unknown as Record<string, ScriptCall>)[commandName(name)]!;
    return call.call(this.redis, ...keys, ...args);
  }

  private async guard<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (err instanceof TesseraError) throw err;
      throw new StoreUnavailableError(err);
    }
  }

  /** `P{t}:`, the start of every key of one subject. */
  private base(subject: string): string {
    return `${this.prefix}{${subjectTag(subject)}}:`;
  }
  /** The base of the subject a session id names, or null if the string cannot be one of our session ids. */
  private sessionBase(sessionId: string): string | null {
    const tag = sessionTag(sessionId);
    return tag === null ? null : `${this.prefix}{${tag}}:`;
  }
  private idxKey(subject: string): string {
    return `${this.base(subject)}idx`;
  }
  private riskKey(subject: string): string {
    return `${this.base(subject)}risk`;
  }
  private auditKey(): string {
    return `${this.prefix}audit`;
  }
  private jtiKey(subject: string, jti: string): string {
    return `${this.base(subject)}j:${jti}`;
  }
  private keysKey(): string {
    return `${this.prefix}keys`;
  }
  private feedKey(): string {
    return `${this.prefix}feed`;
  }
}

function ignore(): void {}

/** Queues one of our scripts on a pipeline (ioredis puts the defined commands on pipelines too). */
function pipelineScript(pipeline: ChainableCommander, name: ScriptName, keys: string[], args: (string | number)[]): void {
  (pipeline as unknown as Record<string, (...a: (string | number)[]) => unknown>)[commandName(name)]!(...keys, ...args);
}

function parseAuditEvent(id: string, fields: string[]): StoredAuditEvent {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) f.set(fields[i]!, fields[i + 1]!);
  const get = (k: (typeof AUDIT_FIELDS)[number]) => f.get(k) ?? "";
  let detail: Record<string, string> = {};
  try {
    detail = JSON.parse(get("x") || "{}") as Record<string, string>;
  } catch {
    // a damaged entry keeps its other fields
  }
  return {
    id,
    at: Number(get("a") || id.slice(0, id.indexOf("-"))),
    type: get("t") as AuditType,
    severity: get("v") as AuditSeverity,
    caller: get("c"),
    subject: get("s"),
    sessionId: get("i"),
    ip: get("p"),
    userAgent: get("u"),
    deviceId: get("d"),
    requestId: get("r"),
    detail,
  };
}

/** Risk observations from the scripts' JSON ({ip, dev, rf, ru, rv, al}); Lua's cjson writes an empty list as {}. */
function parseRisk(raw: string): RiskObservations {
  const r = JSON.parse(raw) as Record<string, unknown>;
  const map = (v: unknown) => (v && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, number>) : {});
  const list = (v: unknown) => (Array.isArray(v) ? (v as number[]) : []);
  return {
    ips: map(r.ip),
    devices: map(r.dev),
    refreshes: list(r.rf),
    reuses: list(r.ru),
    revokedPresented: list(r.rv),
    alertedAt: typeof r.al === "number" ? r.al : 0,
  };
}

function commandName(script: string): string {
  return `tessera_${script}`;
}

/** Milliseconds from now to deadline, at least 1 (for PX / PEXPIRE). */
function ttl(deadline: number, now: number): number {
  return Math.max(1, Math.floor(deadline - now));
}

function parseKeys(values: string[]): StoredKey[] {
  return values
    .map((v) => JSON.parse(v) as [number, StoredKey])
    .sort((a, b) => a[0] - b[0])
    .map(([, key]) => key);
}

/** A session from its stored JSON (see SessionTuple); null if there is none. */
function parseSession(id: string, raw: Cell): Row | null {
  if (raw === null) return null;
  const [st, createdAt, lastUsedAt, idleExpiresAt, expiresAt, order, currentJti, subject, cl] = JSON.parse(raw) as SessionTuple;
  const [deviceId, userAgent, ip, platform] = cl ?? ["", "", "", ""];
  const client: ClientInfo = { deviceId, userAgent, ip, platform };
  return {
    status: st === "a" ? "active" : "revoked",
    order,
    record: { id, subject, client, createdAt, lastUsedAt, idleExpiresAt, expiresAt, currentJti },
  };
}

function isLive(row: Row, now: number): boolean {
  return row.status === "active" && now < Math.min(row.record.idleExpiresAt, row.record.expiresAt);
}
