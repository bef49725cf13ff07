/**
 * The Redis store's statistics (StatsStore), all under the hash tag {stats} (one Cluster slot):
 *   P{stats}:hours      hash: per UTC hour h (ms), fields `<h>:<name>`: the STATS_COUNTERS, and the durations ended in
 *                       it (dn count, ds sum, dm max, b<i> histogram buckets); an hour is read only while
 *                       h + STATS_KEEP_MS is ahead, and its fields are deleted at the first write after that
 *   P{stats}:hourset    zset of the hours the hash holds (member and score h), to find the ones to delete
 *   P{stats}:expiry     zset: each live session -> its expiry (ms; the earlier of idle and absolute), the session as
 *                       its id's 28 bytes (the base64url id decoded: 12 bytes of subject tag, 16 random)
 *   P{stats}:subjects   hash: subject tag (its 12 bytes) -> that subject's live sessions, one entry per subject:
 *                         slots: how many (2 bytes), then each: sessions on it (2), platform length (2), platform
 *                         records, 30 bytes each: the id's 16 random bytes, createdAt (6, ms), expiresAt (6, ms),
 *                         its platform's slot (2)
 *                       (numbers big-endian; a slot nobody is on any more is emptied for the next new platform, and
 *                       dropped if last; STATS_SUBJECT_SESSIONS_MAX records at most, so counts and slots fit 2 bytes)
 *   P{stats}:platforms  hash platform -> live sessions
 * Live sessions = ZCARD :expiry; distinct subjects = HLEN :subjects. A session opened for a subject of its own costs
 * about 250 bytes (bench/run.ts sessionMemory: zset entry and hash entry, each string one allocation class below a
 * text id's), where a zset by text id, a hash id -> "<createdAt>:<expiresAt>:<platform>", a count per subject tag
 * and a zset of the ids by lex (to find a subject's sessions at logout everywhere, whose event now lists them) took
 * 536. The price: an op works on its subject's whole entry (30 bytes a session; a session's record is found by
 * string.find, a match counting only at a record's start), so a Refresh or an eviction costs more the more sessions
 * its subject has (TESSERA_MAX_SESSIONS, at most 10 000: docs/performance.md); a script reads each entry it needs once
 * and writes each it changed once, however many of its ops (or of a subject's sessions, at logout everywhere or a
 * sweep) touch it. Counters and durations are summed in the script and written once each, too. Under one-subject
 * Issue (h2load, 64 in flight: a login and an eviction a call), a part of 64 ops took 840-857 µs of Redis, now
 * 511-547 (SLOWLOG), and Redis 142 against 124-128 µs of CPU a call.
 * The index keys hold the live sessions and the ended ones not swept yet (an expired one is ended at the next write
 * or read), and expire STATS_KEEP_MS after the latest of them, when its duration's hour is no longer kept either.
 * The audit part queues STATS_APPLY on the pipeline of appendAudit (no round trip of its own), one script per
 * OPS_PER_SCRIPT ops, so that a long batch never holds Redis for long.
 * Every key is declared in KEYS, all in the {stats} slot: the hours live in one hash rather than a key each, since a
 * script finds some of them only as it runs (an expired session counts in the hour of its expiry).
 * Lua twin of src/store/memory/stats.ts; test/contract/stats.contract.test.ts and stats.property.test.ts hold both to
 * the same answers.
 */
import {
  DURATION_BUCKETS_MS,
  STATS_COUNTERS,
  STATS_KEEP_MS,
  STATS_SUBJECT_SESSIONS_MAX,
  STATS_SWEEP_BATCH,
  emptyCounts,
  emptyDurations,
  hoursBetween,
  type HourStats,
  type StatsOp,
  type StatsSnapshot,
  type StatsStore,
} from "../../domain/stats.js";
import { partsOf, type RedisContext, type Script, type ScriptBatch } from "./client.js";

/**
 * Common part. KEYS: expiry, subjects, platforms, hours, hourset. ARGV[1] = now, ARGV[2] = keepMs, ARGV[3] = sweep
 * batch, ARGV[4] = the field names an hour may have (space-separated, HOUR_FIELDS).
 */
const STATS_PRELUDE = `
local idx, subs, plats, hours, hourset = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, keep, batch = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local HOUR = ${3_600_000}
local BOUNDS = { ${DURATION_BUCKETS_MS.join(", ")} }
local function fmt(n) return string.format('%.0f', n) end
-- The prefix of the hour's fields in the hours hash, or nil if the hour is no longer kept at now; the caller of
-- hour() records the hour with touch_hour.
local function hour(at)
  local h = math.floor(at / HOUR) * HOUR
  if h + keep <= now then return nil end
  return fmt(h) .. ':', h
end
-- What a script adds to the hours is gathered here and written once, by flush_hours (nothing reads those fields
-- before: STATS_READ flushes first): per field, the sum of its increments and the largest duration; the hours touched.
-- A part of 64 ops used to make several such writes per op, mostly to the same few fields of the current hour.
local added, longest, touched = {}, {}, {}
local function touch_hour(_, h) touched[h] = true end
local function add_to(field, by) added[field] = (added[field] or 0) + by end
local function flush_hours()
  for field, by in pairs(added) do redis.call('HINCRBY', hours, field, fmt(by)) end
  for field, ms in pairs(longest) do
    local m = tonumber(redis.call('HGET', hours, field) or '-1')
    if ms > m then redis.call('HSET', hours, field, fmt(ms)) end
  end
  for h in pairs(touched) do redis.call('ZADD', hourset, h, fmt(h)) end
  added, longest, touched = {}, {}, {}
end
local function hour_names()
  local names = {}
  for name in string.gmatch(ARGV[4], '%S+') do names[#names + 1] = name end
  return names
end
-- Deletes the fields of the hours no longer kept; both keys expire with the newest hour.
local function prune_hours()
  local names = hour_names()
  for _, h in ipairs(redis.call('ZRANGEBYSCORE', hourset, '-inf', fmt(now - keep))) do
    local fields = {}
    for i, name in ipairs(names) do fields[i] = h .. ':' .. name end
    redis.call('HDEL', hours, unpack(fields))
    redis.call('ZREM', hourset, h)
  end
  local newest = redis.call('ZRANGE', hourset, -1, -1, 'WITHSCORES')
  if #newest == 0 then
    redis.call('DEL', hours, hourset)
  else
    local ms = fmt(tonumber(newest[2]) + keep - now)
    redis.call('PEXPIRE', hours, ms)
    redis.call('PEXPIRE', hourset, ms)
  end
end
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
  add_to(k .. 'dn', 1)
  add_to(k .. 'ds', ms)
  local dm = k .. 'dm'
  if ms > (longest[dm] or -1) then longest[dm] = ms end
  add_to(k .. 'b' .. bucket(ms), 1)
  touch_hour(k, h)
end
-- The ops carry ids and tags in hex; the index keeps their bytes.
local BYTE = {}
for i = 0, 255 do BYTE[string.format('%02x', i)] = string.char(i) end
local function bytes(hex) return (string.gsub(hex, '..', BYTE)) end
-- Whole numbers as big-endian bytes, and back from position i of s: ms instants in 6 bytes, counts and lengths in 2.
local function pack48(n)
  local b = {}
  for i = 6, 1, -1 do
    b[i] = n % 256
    n = (n - b[i]) / 256
  end
  return string.char(b[1], b[2], b[3], b[4], b[5], b[6])
end
local function unpack48(s, i)
  local n = 0
  for k = i, i + 5 do n = n * 256 + string.byte(s, k) end
  return n
end
local function pack16(n) return string.char(math.floor(n / 256), n % 256) end
local function unpack16(s, i)
  local a, b = string.byte(s, i, i + 1)
  return a * 256 + b
end
-- A subject's entry (see the header): its platform slots, then its sessions' records, REC bytes each.
local REC, SUBJECT_MAX = 30, ${STATS_SUBJECT_SESSIONS_MAX}
-- The slots ({platform, sessions}) of an entry, and where its records start.
local function parse(v)
  local slots, i = {}, 3
  for k = 1, unpack16(v, 1) do
    local len = unpack16(v, i + 2)
    slots[k] = { string.sub(v, i + 4, i + 3 + len), unpack16(v, i) }
    i = i + 4 + len
  end
  return slots, i
end
local function pack_slots(slots)
  local last = #slots
  while last > 0 and slots[last][2] == 0 do last = last - 1 end
  local out = { pack16(last) }
  for k = 1, last do
    local platform, n = slots[k][1], slots[k][2]
    if n == 0 then platform = '' end
    out[k + 1] = pack16(n) .. pack16(#platform) .. platform
  end
  return table.concat(out)
end
-- Where the record of the id's rest starts (the records start at 'start'), or nil: a match found by string.find
-- counts only at a record's start (rest bytes may also occur inside another record).
local function find(v, start, rest)
  local p = start
  while true do
    p = string.find(v, rest, p, true)
    if not p or (p - start) % REC == 0 then return p end
    p = p + 1
  end
end
-- The subjects' entries as this script left them (false: to delete), written once, by flush_entries: under a burst
-- of logins and evictions for one subject, a part of 64 ops read and wrote its entry (30 bytes a session) 64 times.
local entries, changed = {}, {}
local function entry(tag)
  local v = entries[tag]
  if v == nil then
    v = redis.call('HGET', subs, tag) or false
    entries[tag] = v
  end
  return v or nil
end
local function set_entry(tag, v)
  entries[tag] = v
  changed[tag] = true
end
local function flush_entries()
  for tag in pairs(changed) do
    local v = entries[tag]
    if v then redis.call('HSET', subs, tag, v) else redis.call('HDEL', subs, tag) end
  end
  entries, changed = {}, {}
end
-- Indexes a session in its subject's entry; false if the subject has SUBJECT_MAX sessions indexed already.
local function add_record(id, platform, created, expires)
  local tag = string.sub(id, 1, 12)
  local v = entry(tag) or ''
  local slots, start = {}, 1
  if v ~= '' then slots, start = parse(v) end
  if (#v - start + 1) / REC >= SUBJECT_MAX then return false end
  local s
  for k = 1, #slots do
    if slots[k][2] > 0 and slots[k][1] == platform then s = k break end
  end
  if not s then
    for k = 1, #slots do
      if slots[k][2] == 0 then s = k break end
    end
    s = s or #slots + 1
    slots[s] = { platform, 0 }
  end
  slots[s][2] = slots[s][2] + 1
  local record = string.sub(id, 13) .. pack48(created) .. pack48(expires) .. pack16(s - 1)
  set_entry(tag, pack_slots(slots) .. string.sub(v, start) .. record)
  return true
end
-- Ends sessions of the subject (its tag's bytes), each at its instant or at its expiry if that came first: those of
-- 'targets' (rest -> instant; 'count' of them), or, with 'pick', each for which pick(rest, createdAt) gives an instant.
-- A few targets are found by string.find, more by one walk of the records; one write of the entry either way.
local function finish(tag, targets, count, pick)
  local v = entry(tag)
  if not v then return end
  local slots, start = parse(v)
  local ends = {}
  if not pick and count <= 8 then
    for rest, at in pairs(targets) do
      local p = find(v, start, rest)
      if p then ends[#ends + 1] = { p, at } end
    end
    table.sort(ends, function(x, y) return x[1] < y[1] end)
  else
    for p = start, #v, REC do
      local rest = string.sub(v, p, p + 15)
      local at
      if pick then at = pick(rest, unpack48(v, p + 16)) else at = targets[rest] end
      if at then ends[#ends + 1] = { p, at } end
    end
  end
  if #ends == 0 then return end
  local kept, from = {}, start
  for _, e in ipairs(ends) do
    local p, at = e[1], e[2]
    local id, created, slot = tag .. string.sub(v, p, p + 15), unpack48(v, p + 16), slots[unpack16(v, p + 28) + 1]
    local expiry = tonumber(redis.call('ZSCORE', idx, id))
    if expiry and expiry < at then at = expiry end
    redis.call('ZREM', idx, id)
    slot[2] = slot[2] - 1
    bump(plats, slot[1], -1)
    add_duration(at, at - created)
    if from < p then kept[#kept + 1] = string.sub(v, from, p - 1) end
    from = p + REC
  end
  if from <= #v then kept[#kept + 1] = string.sub(v, from) end
  if #kept == 0 then set_entry(tag, false) else set_entry(tag, pack_slots(slots) .. table.concat(kept)) end
end
-- Ends up to 'limit' sessions expired at now (earliest expiry first, then by id bytes), each at its expiry, one write
-- per subject; returns how many.
local function sweep(limit)
  local dead = redis.call('ZRANGEBYSCORE', idx, '-inf', fmt(now), 'WITHSCORES', 'LIMIT', 0, limit)
  if #dead == 0 then return 0 end
  local tags, due, members = {}, {}, {}
  for k = 1, #dead, 2 do
    local tag = string.sub(dead[k], 1, 12)
    if not due[tag] then
      due[tag] = { {}, 0 }
      tags[#tags + 1] = tag
    end
    due[tag][1][string.sub(dead[k], 13)] = tonumber(dead[k + 1])
    due[tag][2] = due[tag][2] + 1
    members[#members + 1] = dead[k]
  end
  for _, tag in ipairs(tags) do finish(tag, due[tag][1], due[tag][2]) end
  -- A member without a record (never so in a consistent index) goes all the same: every sweep makes progress.
  redis.call('ZREM', idx, unpack(members))
  return #members
end
-- The index keys live until the latest session's duration could no longer be counted: keep after its expiry, as
-- long as the hour it would count in. A session that has ended is dropped by a sweep, never by the keys' expiry: a
-- batch's parts before its last do not sweep, and a sweep stops at its batch, so ended sessions may wait for the
-- next write or read (keys that expired with the latest session lost them, and their durations).
local function expire_index()
  local last = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('DEL', idx, subs, plats)
    return
  end
  local ms = tonumber(last[2]) + keep - now
  if ms < 1 then ms = 1 end
  for _, k in ipairs({ idx, subs, plats }) do redis.call('PEXPIRE', k, fmt(ms)) end
end
`;

/**
 * STATS_APPLY: the Lua twin of MemoryStatsStore.apply. ARGV[5]: the ops as JSON arrays, in order (ids, tags and
 * rests in hex): ['c', at, counter, n] | ['o', id, platform, createdAt, expiresAt, expiry] | ['t', id, expiry]
 * | ['e', id, at] | ['s', tag, at] | ['s', tag, at, [rest, ...]] | ['d', id, at, createdAt, expiry] (closed: domain
 * compactStatsOps). ARGV[3] (the sweep batch) 0: no sweep (a batch's ops but its last part's). Touches the declared keys only. Returns the ops applied.
 */
const STATS_APPLY = `${STATS_PRELUDE}
local ops = cjson.decode(ARGV[5])
for _, o in ipairs(ops) do
  local kind = o[1]
  if kind == 'c' then
    local k, h = hour(o[2])
    if k then
      add_to(k .. o[3], o[4])
      touch_hour(k, h)
    end
  elseif kind == 'o' then
    local id, platform, expiry = bytes(o[2]), o[3], o[6]
    if expiry > now and not redis.call('ZSCORE', idx, id) and add_record(id, platform, o[4], o[5]) then
      redis.call('ZADD', idx, fmt(expiry), id)
      redis.call('HINCRBY', plats, platform, 1)
    end
  elseif kind == 't' then
    local id = bytes(o[2])
    local v = entry(string.sub(id, 1, 12))
    if v then
      local _, start = parse(v)
      local p = find(v, start, string.sub(id, 13))
      if p then
        local expiry, expires = o[3], unpack48(v, p + 22)
        if expires < expiry then expiry = expires end
        redis.call('ZADD', idx, 'XX', fmt(expiry), id)
      end
    end
  elseif kind == 'e' or kind == 'd' then
    local id = bytes(o[2])
    if kind == 'e' or redis.call('ZSCORE', idx, id) then
      finish(string.sub(id, 1, 12), { [string.sub(id, 13)] = o[3] }, 1)
    else
      -- closed, not indexed: only its duration (end at its expiry if that came first)
      local at = math.min(o[3], o[5])
      add_duration(at, at - o[4])
    end
  elseif kind == 's' then
    local at = o[3]
    if o[4] then
      local listed = {}
      for _, rest in ipairs(o[4]) do listed[bytes(rest)] = at end
      finish(bytes(o[2]), listed, #o[4])
    else
      finish(bytes(o[2]), nil, 0, function(_, created) if created <= at then return at end end)
    end
  end
end
if batch > 0 then sweep(batch) end
flush_hours()
flush_entries()
expire_index()
prune_hours()
return #ops
`;

/**
 * STATS_READ. ARGV[5], ARGV[6]: the first and last hour. Ends every session expired at now, then returns
 * [live sessions, [platform, n, ...], distinct subjects, [[field, value, ...] per hour]].
 */
const STATS_READ = `${STATS_PRELUDE}
while sweep(batch) == batch do end
flush_hours()
flush_entries()
expire_index()
prune_hours()
local names, out = hour_names(), {}
for h = tonumber(ARGV[5]), tonumber(ARGV[6]), HOUR do
  local flat = {}
  if h + keep > now then
    local fields = {}
    for i, name in ipairs(names) do fields[i] = fmt(h) .. ':' .. name end
    local values = redis.call('HMGET', hours, unpack(fields))
    for i, name in ipairs(names) do
      if values[i] then
        flat[#flat + 1] = name
        flat[#flat + 1] = values[i]
      end
    end
  end
  out[#out + 1] = flat
end
return { redis.call('ZCARD', idx), redis.call('HGETALL', plats), redis.call('HLEN', subs), out }
`;

const SCRIPTS: Record<string, Script> = {
  statsApply: { numberOfKeys: 5, lua: STATS_APPLY },
  statsRead: { numberOfKeys: 5, lua: STATS_READ },
};

/** An id's (or a tag's) bytes in hex, as the ops carry them to the scripts (indexableSessionId: exactly its bytes). */
const hex = (base64url: string) => Buffer.from(base64url, "base64url").toString("hex");

const CODES = { count: "c", open: "o", touch: "t", end: "e", end_subject: "s", closed: "d" } as const;

/**
 * The ops one STATS_APPLY applies at most. Under one-subject Issue (h2load, 64 in flight; each login evicts a session),
 * a flush as one script held Redis p50 10.9 ms, max 14.7; in parts of 64 ops, p50 0.8 ms, p90 1.0 (SLOWLOG); the
 * Redis CPU of the statistics is the same.
 */
const OPS_PER_SCRIPT = 64;

/** Every field an hour may have (after its `<h>:`): the counters, dn, ds, dm, and one per duration bucket. */
const HOUR_FIELDS = [...STATS_COUNTERS, "dn", "ds", "dm", ...[...DURATION_BUCKETS_MS, Infinity].map((_, i) => `b${i}`)].join(" ");

export class RedisStatsStore implements StatsStore {
  private readonly keys: string[];

  constructor(private readonly ctx: RedisContext) {
    const base = `${ctx.prefix}{stats}:`;
    this.keys = ["expiry", "subjects", "platforms", "hours", "hourset"].map((k) => base + k);
    ctx.define(SCRIPTS);
  }

  /** Queues the ops of a batch of audit events on the audit part's batch (appendAudit). */
  queue(batch: ScriptBatch, ops: readonly StatsOp[], now: number): void {
    const wire = ops.map((o) => {
      switch (o.op) {
        case "count":
          return [CODES.count, o.at, o.counter, o.n];
        case "open":
          return [CODES.open, hex(o.id), o.platform, o.createdAt, o.expiresAt, o.expiry];
        case "touch":
          return [CODES.touch, hex(o.id), o.expiry];
        case "end":
          return [CODES.end, hex(o.id), o.at];
        case "closed":
          return [CODES.closed, hex(o.id), o.at, o.createdAt, o.expiry];
        case "end_subject":
          // The ids all start with the tag: only the rest of each (its 16 random bytes) goes.
          return o.ids === undefined
            ? [CODES.end_subject, hex(o.tag), o.at]
            : [CODES.end_subject, hex(o.tag), o.at, o.ids.map((id) => hex(id).slice(24))];
      }
    });
    // In parts of OPS_PER_SCRIPT, in order, the sweep with the last (as the memory store sweeps after all the ops):
    // one script holds Redis for all of its ops, and every other client's commands wait; between scripts they need not
    // (Redis reads a client's pipeline 16 KiB at a time and serves the others between reads).
    const parts = partsOf(wire, OPS_PER_SCRIPT);
    parts.forEach((part, i) => {
      const sweep = i === parts.length - 1 ? STATS_SWEEP_BATCH : 0;
      batch.script("statsApply", this.keys, [now, STATS_KEEP_MS, sweep, HOUR_FIELDS, JSON.stringify(part)]);
    });
  }

  async readStats(q: { fromHour: number; toHour: number; now: number }): Promise<StatsSnapshot> {
    const list = hoursBetween(q.fromHour, q.toHour);
    if (list.length === 0) return { live: await this.live(q.now), hours: [] };
    return this.ctx.guard(async () => {
      const args = [q.now, STATS_KEEP_MS, STATS_SWEEP_BATCH, HOUR_FIELDS, list[0]!, list[list.length - 1]!];
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
