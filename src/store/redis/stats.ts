/**
 * The Redis store's statistics (StatsStore), all under the hash tag {stats} (one Cluster slot):
 *   P{stats}:h:<hour>  hash per UTC hour: the STATS_COUNTERS, and the durations ended in it (dn count, ds sum, dm max,
 *                      b<i> histogram buckets); expires STATS_KEEP_MS after the hour began
 *   P{stats}:live      zset session id -> expiry (the earlier of idle and absolute)
 *   P{stats}:sess      hash session id -> "<createdAt>:<expiresAt>:<platform>"
 *   P{stats}:plat      hash platform -> live sessions       P{stats}:subj  hash subject tag -> live sessions
 *   P{stats}:ids       zset (score 0) of the session ids, by lex: a subject's sessions share their id's tag prefix
 * The index keys hold only live sessions (an expired one is ended at the next write or read) and expire with the
 * latest of them. The audit part queues STATS_APPLY on the pipeline of appendAudit (no round trip of its own).
 * The hourly keys are built inside the scripts from ARGV (their hours are known only there: an expired session counts
 * in the hour of its expiry); they share the {stats} slot with the declared keys, so a Cluster serves them.
 * Lua twin of src/store/memory/stats.ts; test/contract/stats.contract.test.ts holds both to the same answers.
 */
import type { ChainableCommander } from "ioredis";
import {
  DURATION_BUCKETS_MS,
  STATS_COUNTERS,
  STATS_KEEP_MS,
  STATS_SWEEP_BATCH,
  emptyCounts,
  emptyDurations,
  hoursBetween,
  type HourStats,
  type StatsOp,
  type StatsSnapshot,
  type StatsStore,
} from "../../domain/stats.js";
import type { RedisContext, Script } from "./client.js";

/**
 * Common part. KEYS: live, sess, plat, subj, ids. ARGV[1] = now, ARGV[2] = keepMs, ARGV[3] = sweep batch,
 * ARGV[4] = the hourly keys' prefix (`P{stats}:h:`).
 */
const STATS_PRELUDE = `
local live, sess, plat, subj, ids = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, keep, batch, hp = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local HOUR = ${3_600_000}
local BOUNDS = { ${DURATION_BUCKETS_MS.join(", ")} }
local function fmt(n) return string.format('%.0f', n) end
-- The hour's key, or nil if the hour is no longer kept at now; its TTL is set by the caller of hour().
local function hour(at)
  local h = math.floor(at / HOUR) * HOUR
  if h + keep <= now then return nil end
  return hp .. fmt(h), h
end
local function touch_hour(k, h) redis.call('PEXPIRE', k, fmt(h + keep - now)) end
-- Lua twin of domain durationBucket: the first bound the duration does not exceed (0-based).
local function bucket(ms)
  for i = 1, #BOUNDS do if ms <= BOUNDS[i] then return i - 1 end end
  return #BOUNDS
end
local function bump(key, field, by)
  if redis.call('HINCRBY', key, field, by) <= 0 then redis.call('HDEL', key, field) end
end
local function add_duration(at, ms)
  local k, h = hour(at)
  if not k then return end
  if ms < 0 then ms = 0 end
  ms = math.floor(ms)
  redis.call('HINCRBY', k, 'dn', 1)
  redis.call('HINCRBY', k, 'ds', fmt(ms))
  local m = tonumber(redis.call('HGET', k, 'dm') or '-1')
  if ms > m then redis.call('HSET', k, 'dm', fmt(ms)) end
  redis.call('HINCRBY', k, 'b' .. bucket(ms), 1)
  touch_hour(k, h)
end
-- Ends an indexed session at 'at' (at its expiry if that came first).
local function finish(id, at)
  local v = redis.call('HGET', sess, id)
  if not v then return end
  local c1 = string.find(v, ':', 1, true)
  local c2 = string.find(v, ':', c1 + 1, true)
  local created, platform = tonumber(string.sub(v, 1, c1 - 1)), string.sub(v, c2 + 1)
  local expiry = tonumber(redis.call('ZSCORE', live, id))
  if expiry and expiry < at then at = expiry end
  redis.call('ZREM', live, id)
  redis.call('HDEL', sess, id)
  redis.call('ZREM', ids, id)
  bump(plat, platform, -1)
  bump(subj, string.sub(id, 1, 16), -1)
  add_duration(at, at - created)
end
-- Ends up to 'limit' sessions expired at now (earliest expiry first, then id), each at its expiry; returns how many.
local function sweep(limit)
  local dead = redis.call('ZRANGEBYSCORE', live, '-inf', fmt(now), 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #dead, 2 do finish(dead[i], tonumber(dead[i + 1])) end
  return #dead / 2
end
-- The index keys live as long as their latest session.
local function expire_index()
  local last = redis.call('ZRANGE', live, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', live, sess, plat, subj, ids)
    return
  end
  local ms = tonumber(last[2]) - now
  if ms < 1 then ms = 1 end
  for _, k in ipairs({ live, sess, plat, subj, ids }) do redis.call('PEXPIRE', k, fmt(ms)) end
end
`;

/**
 * STATS_APPLY: the Lua twin of MemoryStatsStore.apply. ARGV[5]: the ops as JSON arrays, in order:
 * ['c', at, counter, n] | ['o', id, platform, createdAt, expiresAt, expiry] | ['t', id, expiry] | ['e', id, at]
 * | ['s', tag, at]. Touches the declared keys and the hourly keys of the {stats} slot. Returns the ops applied.
 */
const STATS_APPLY = `${STATS_PRELUDE}
local ops = cjson.decode(ARGV[5])
for _, o in ipairs(ops) do
  local kind = o[1]
  if kind == 'c' then
    local k, h = hour(o[2])
    if k then
      redis.call('HINCRBY', k, o[3], o[4])
      touch_hour(k, h)
    end
  elseif kind == 'o' then
    local id, expiry = o[2], o[6]
    if expiry > now and redis.call('HSETNX', sess, id, fmt(o[4]) .. ':' .. fmt(o[5]) .. ':' .. o[3]) == 1 then
      redis.call('ZADD', live, fmt(expiry), id)
      redis.call('ZADD', ids, 0, id)
      redis.call('HINCRBY', plat, o[3], 1)
      redis.call('HINCRBY', subj, string.sub(id, 1, 16), 1)
    end
  elseif kind == 't' then
    local v = redis.call('HGET', sess, o[2])
    if v then
      local c1 = string.find(v, ':', 1, true)
      local c2 = string.find(v, ':', c1 + 1, true)
      local expires = tonumber(string.sub(v, c1 + 1, c2 - 1))
      local expiry = o[3]
      if expires < expiry then expiry = expires end
      redis.call('ZADD', live, 'XX', fmt(expiry), o[2])
    end
  elseif kind == 'e' then
    finish(o[2], o[3])
  elseif kind == 's' then
    local found = redis.call('ZRANGEBYLEX', ids, '[' .. o[2], '[' .. o[2] .. '\\255')
    for _, id in ipairs(found) do
      local v = redis.call('HGET', sess, id)
      if v and tonumber(string.sub(v, 1, string.find(v, ':', 1, true) - 1)) <= o[3] then finish(id, o[3]) end
    end
  end
end
sweep(batch)
expire_index()
return #ops
`;

/**
 * STATS_READ. ARGV[5], ARGV[6]: the first and last hour. Ends every session expired at now, then returns
 * [live sessions, [platform, n, ...], distinct subjects, [[field, value, ...] per hour]].
 */
const STATS_READ = `${STATS_PRELUDE}
while sweep(batch) == batch do end
expire_index()
local hours = {}
for h = tonumber(ARGV[5]), tonumber(ARGV[6]), HOUR do
  if h + keep > now then hours[#hours + 1] = redis.call('HGETALL', hp .. fmt(h)) else hours[#hours + 1] = {} end
end
return { redis.call('ZCARD', live), redis.call('HGETALL', plat), redis.call('HLEN', subj), hours }
`;

const SCRIPTS: Record<string, Script> = {
  statsApply: { numberOfKeys: 5, lua: STATS_APPLY },
  statsRead: { numberOfKeys: 5, lua: STATS_READ },
};

const CODES = { count: "c", open: "o", touch: "t", end: "e", end_subject: "s" } as const;

export class RedisStatsStore implements StatsStore {
  private readonly keys: string[];
  private readonly hourPrefix: string;

  constructor(private readonly ctx: RedisContext) {
    const base = `${ctx.prefix}{stats}:`;
    this.keys = ["live", "sess", "plat", "subj", "ids"].map((k) => base + k);
    this.hourPrefix = `${base}h:`;
    ctx.define(SCRIPTS);
  }

  /** Queues the ops of a batch of audit events on the audit part's pipeline (appendAudit). */
  queue(pipeline: ChainableCommander, ops: readonly StatsOp[], now: number): void {
    const wire = ops.map((o) => {
      switch (o.op) {
        case "count":
          return [CODES.count, o.at, o.counter, o.n];
        case "open":
          return [CODES.open, o.id, o.platform, o.createdAt, o.expiresAt, o.expiry];
        case "touch":
          return [CODES.touch, o.id, o.expiry];
        case "end":
          return [CODES.end, o.id, o.at];
        case "end_subject":
          return [CODES.end_subject, o.tag, o.at];
      }
    });
    this.ctx.pipelineScript(pipeline, "statsApply", this.keys, [now, STATS_KEEP_MS, STATS_SWEEP_BATCH, this.hourPrefix, JSON.stringify(wire)]);
  }

  async readStats(q: { fromHour: number; toHour: number; now: number }): Promise<StatsSnapshot> {
    const list = hoursBetween(q.fromHour, q.toHour);
    if (list.length === 0) return { live: await this.live(q.now), hours: [] };
    return this.ctx.guard(async () => {
      const args = [q.now, STATS_KEEP_MS, STATS_SWEEP_BATCH, this.hourPrefix, list[0]!, list[list.length - 1]!];
      const [sessions, plat, subjects, hours] = (await this.ctx.script("statsRead", this.keys, args)) as [number, string[], number, string[][]];
      return { live: { sessions, byPlatform: pairs(plat), subjects }, hours: list.map((hour, i) => parseHour(hour, hours[i] ?? [])) };
    });
  }

  private async live(now: number): Promise<StatsSnapshot["live"]> {
    return (await this.readStats({ fromHour: 0, toHour: 0, now })).live;
  }
}

function pairs(flat: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = Number(flat[i + 1]);
  return out;
}

function parseHour(hour: number, flat: string[]): HourStats {
  const f = pairs(flat);
  const counts = emptyCounts();
  for (const c of STATS_COUNTERS) counts[c] = f[c] ?? 0;
  const durations = emptyDurations();
  durations.count = f.dn ?? 0;
  durations.sumMs = f.ds ?? 0;
  durations.maxMs = f.dm ?? 0;
  durations.buckets = durations.buckets.map((_, i) => f[`b${i}`] ?? 0);
  return { hour, counts, durations };
}
