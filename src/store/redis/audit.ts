/**
 * The Redis store's audit trail and risk observations (AuditStore): the stream `P audit` and one `P{t}:risk` string
 * per subject. A batch is one pipelined write (on a Cluster, one per node): the stream append, one risk script per
 * signalled subject, and the statistics script (stats.ts) when the batch changes a statistic.
 */
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
} from "../../domain/audit.js";
import { statsOps } from "../../domain/stats.js";
import type { AuditStore } from "../../domain/store.js";
import { isStreamIdRefusal, LUA_LAST_GENERATED_ID, partsOf, type RedisContext, type Script } from "./client.js";
import type { RedisStatsStore } from "./stats.js";

/**
 * The events one AUDIT_APPEND appends at most. Under one-subject Issue (h2load, 64 in flight), a flush as one script
 * held Redis p50 3.0 ms, max 4.7; in parts of 128 events, p50 0.8 ms, max 1.7 (SLOWLOG).
 */
const EVENTS_PER_SCRIPT = 128;

/** Stream field names of an audit event, in the order appendAudit passes the values. */
const AUDIT_FIELDS = ["a", "t", "v", "c", "s", "i", "p", "u", "d", "r", "x"] as const;

/**
 * AUDIT_APPEND. Touches: KEYS[1] = `P audit` only (declared). ARGV: maxEvents, minId, then per event the values of
 * AUDIT_FIELDS (a = at first).
 * Guarantees: the batch is appended in order with ids that only grow: `<ms>-<seq>` with ms = the event's time,
 * raised to the stream's last id if older (the Lua twin of domain nextAuditId, which the memory store uses); `a` is
 * stored only in that case ('' when the id's ms is the event's time, 14 bytes less an entry), so MINID trimming
 * follows event time by the caller's clock. Trims by count approximately (MAXLEN ~, whole stream nodes) and by age
 * exactly (nothing older than maxAge is ever served). Returns the count appended.
 */
const AUDIT_APPEND = `${LUA_LAST_GENERATED_ID}
local key, maxlen, minid = KEYS[1], ARGV[1], ARGV[2]
local names = { ${AUDIT_FIELDS.map((f) => `'${f}'`).join(", ")} }
local n = #names
local ms, seq = -1, 0
local last = last_generated_id(key)
if last then
  local dash = string.find(last, '-', 1, true)
  ms, seq = tonumber(string.sub(last, 1, dash - 1)), tonumber(string.sub(last, dash + 1))
end
local added = 0
for i = 3, #ARGV, n do
  local at = tonumber(ARGV[i])
  if at > ms then ms, seq = at, 0 else seq = seq + 1 end
  local args = { 'XADD', key, 'MAXLEN', '~', maxlen, string.format('%d-%d', ms, seq) }
  for j = 1, n do
    args[#args + 1] = names[j]
    args[#args + 1] = ARGV[i + j - 1]
  end
  if at == ms then args[8] = '' end
  redis.call(unpack(args))
  added = added + 1
end
redis.call('XTRIM', key, 'MINID', minid)
return added
`;

/**
 * Common head of the risk scripts: KEYS[1] = the subject's risk key; ARGV[1] = now, ARGV[2] = windowMs. The stored
 * JSON is {ip, dev, rf, ru, rv, al} (parseRisk reads it).
 */
const RISK_PRELUDE = `
local now, win = tonumber(ARGV[1]), tonumber(ARGV[2])
local since = now - win
-- Lua twin of domain alertedWithin (src/domain/audit.ts): an alert was raised after now - window.
local function alerted_within(al) return al > 0 and al > since end
local function tbl(v) if type(v) == 'table' then return v end return {} end
local function read()
  local raw = redis.call('GET', KEYS[1])
  local r = raw and cjson.decode(raw) or {}
  return { ip = tbl(r.ip), dev = tbl(r.dev), rf = tbl(r.rf), ru = tbl(r.ru), rv = tbl(r.rv), al = tonumber(r.al) or 0 }
end
-- As stored: only what is there (an empty collection or al = 0 is left out), since one login's observations are
-- kept for every subject that logs in; read() fills in the rest.
local function encode(r)
  local out = {}
  for _, k in ipairs({ 'ip', 'dev', 'rf', 'ru', 'rv' }) do
    if next(r[k]) ~= nil then out[k] = r[k] end
  end
  if r.al > 0 then out.al = r.al end
  return cjson.encode(out)
end
`;

/**
 * RISK_UPDATE: the Lua twin of domain mergeRisk (src/domain/audit.ts): same pruning (at or before now - window
 * goes), same caps, same tie order; change both or neither. Touches: KEYS[1] = `P{t}:risk` only (declared).
 * ARGV: now, windowMs, keys cap, instants cap, signals JSON [[at, ip, device, count]] (count '' | 'refresh' | 'reuse'
 * | 'revoked_presented').
 * Guarantees: the read, merge and write are one atomic step (concurrent batches of several processes lose no
 * signal); the observations expire windowMs after this update. Returns them as JSON.
 */
const RISK_UPDATE = `${RISK_PRELUDE}
local capk, capi = tonumber(ARGV[3]), tonumber(ARGV[4])
local r = read()
local lists = { refresh = r.rf, reuse = r.ru, revoked_presented = r.rv }
for _, s in ipairs(cjson.decode(ARGV[5])) do
  local at, ip, dev, count = s[1], s[2], s[3], s[4]
  if ip ~= '' then r.ip[ip] = math.max(r.ip[ip] or 0, at) end
  if dev ~= '' then r.dev[dev] = math.max(r.dev[dev] or 0, at) end
  if count ~= '' then table.insert(lists[count], at) end
end
local function capmap(m)
  local e = {}
  for k, t in pairs(m) do if t > since then e[#e + 1] = { k, t } end end
  table.sort(e, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    return a[1] < b[1]
  end)
  local out = {}
  for i = math.max(1, #e - capk + 1), #e do out[e[i][1]] = e[i][2] end
  return out
end
local function caplist(l)
  local kept = {}
  for _, t in ipairs(l) do if t > since then kept[#kept + 1] = t end end
  table.sort(kept)
  local out = {}
  for i = math.max(1, #kept - capi + 1), #kept do out[#out + 1] = kept[i] end
  return out
end
local al = r.al
if not alerted_within(al) then al = 0 end
local raw = encode({ ip = capmap(r.ip), dev = capmap(r.dev), rf = caplist(r.rf), ru = caplist(r.ru),
  rv = caplist(r.rv), al = al })
redis.call('SET', KEYS[1], raw, 'PX', win)
return raw
`;

/**
 * RISK_CLAIM_ALERT. Touches: KEYS[1] = `P{t}:risk` only (declared). ARGV: now, windowMs.
 * Guarantees: of concurrent claims within one window exactly one gets 1 (alert window: alerted_within, the twin of
 * domain alertedWithin); the mark keeps the key alive at least windowMs. Returns 1 if this call marked, else 0.
 */
const RISK_CLAIM_ALERT = `${RISK_PRELUDE}
local r = read()
if alerted_within(r.al) then return 0 end
r.al = now
local left = redis.call('PTTL', KEYS[1])
if left < win then left = win end
redis.call('SET', KEYS[1], encode(r), 'PX', left)
return 1
`;

const SCRIPTS: Record<string, Script> = {
  auditAppend: { numberOfKeys: 1, lua: AUDIT_APPEND },
  riskUpdate: { numberOfKeys: 1, lua: RISK_UPDATE },
  riskClaimAlert: { numberOfKeys: 1, lua: RISK_CLAIM_ALERT },
};

export class RedisAuditStore implements AuditStore {
  private readonly key: string;

  /** `stats`: its script goes on the same pipeline as the append (domain/stats.ts statsOps), last. */
  constructor(
    private readonly ctx: RedisContext,
    private readonly stats?: RedisStatsStore,
  ) {
    this.key = `${ctx.prefix}audit`;
    ctx.define(SCRIPTS);
  }

  async appendAudit(events: readonly AuditEvent[], b: AuditBounds): Promise<{ subject: string; risk: RiskObservations }[]> {
    if (events.length === 0) return [];
    const signals = riskSignalsBySubject(events);
    return this.ctx.guard(async () => {
      // One batch: the stream append (its own key), one script per signalled subject (that subject's slot) and the
      // statistics scripts (the {stats} slot): one pipeline on one Redis, one write per node on a Cluster.
      const batch = this.ctx.batch();
      // In parts of EVENTS_PER_SCRIPT, in order (each part's ids follow the last part's): one script holds Redis for
      // all of its appends.
      const parts = partsOf(events, EVENTS_PER_SCRIPT);
      for (const part of parts) {
        const args: (string | number)[] = [b.maxEvents, `${b.now - b.maxAgeMs}-0`];
        for (const e of part) {
          args.push(e.at, e.type, e.severity, e.caller, e.subject, e.sessionId, e.ip, e.userAgent, e.deviceId, e.requestId);
          args.push(JSON.stringify(e.detail));
        }
        if (args.length !== 2 + part.length * AUDIT_FIELDS.length) throw new Error("audit fields out of step");
        batch.script("auditAppend", [this.key], args);
      }
      const subjects = [...signals.keys()];
      for (const subject of subjects) {
        const list = signals.get(subject)!.map((s) => [s.at, s.ip, s.deviceId, s.count ?? ""]);
        const args = [b.now, b.riskWindowMs, RISK_CAPS.keys, RISK_CAPS.instants, JSON.stringify(list)];
        batch.script("riskUpdate", [this.ctx.riskKey(subject)], args);
      }
      const ops = this.stats ? statsOps(events, b.now) : [];
      if (ops.length > 0) this.stats!.queue(batch, ops, b.now);
      const results = await batch.exec();
      for (const [err] of results) if (err) throw err;
      return subjects.map((subject, i) => ({ subject, risk: parseRisk(results[parts.length + i]![1] as string) }));
    });
  }

  async listAudit(q: AuditQuery): Promise<AuditPage> {
    const limit = Math.floor(q.limit);
    if (!(limit > 0) || (q.cursor && !isAuditId(q.cursor))) return { events: [], next: null };
    return this.ctx.guard(async () => {
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
          entries = await this.ctx.redis.xrevrange(this.key, end, floor, "COUNT", count);
        } catch (err) {
          // A well-formed cursor Redis still refuses (0-0): nothing is older.
          if (isStreamIdRefusal(err)) return { events, next: null };
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
    return this.ctx.guard(async () => {
      const raw = await this.ctx.redis.get(this.ctx.riskKey(subject));
      return raw === null ? null : parseRisk(raw);
    });
  }

  async claimRiskAlert(q: { subject: string; now: number; windowMs: number }): Promise<boolean> {
    return this.ctx.guard(
      async () => (await this.ctx.script("riskClaimAlert", [this.ctx.riskKey(q.subject)], [q.now, q.windowMs])) === 1,
    );
  }
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

/**
 * Risk observations from the scripts' JSON ({ip, dev, rf, ru, rv, al}); Lua's cjson writes an empty list as {}.
 * The session part's tokenState reads the risk key in its MGET and parses it with this.
 */
export function parseRisk(raw: string): RiskObservations {
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
