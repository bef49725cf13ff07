/**
 * The Lua scripts of the Redis store. Each multi-step change is one script, so it is atomic; all keys a script
 * touches share the subject's hash tag (a script builds them from `base` = `<prefix>{<tag>}:`), so Redis Cluster
 * can run it. Time comes from ARGV, never from the server: the caller's clock decides.
 *
 * A session `<base>s:<sid>` is a string holding a JSON array (see `SessionTuple`); a string is about half the memory
 * of a hash once the client info passes the 64-byte listpack limit, which a real user agent does. A tombstone (a
 * revoked session) drops the client info. `<base>g:<sid>` holds, for the grace window only, the JSON array
 * [rotated-out jti, client fingerprint, rotation instant, pair]. `<base>idx` is a zset of the subject's active
 * sessions, score lastUsedAt.
 */

/** [status, createdAt, lastUsedAt, idleExpiresAt, expiresAt, creation order, currentJti, subject, client?]. */
export type SessionTuple = [
  status: "a" | "r",
  createdAt: number,
  lastUsedAt: number,
  idleExpiresAt: number,
  expiresAt: number,
  /** Creation order among the subject's sessions: breaks ties the way insertion order does in the memory store. */
  order: number,
  currentJti: string,
  /** So that a session is found, and answered for, from its id alone (the id carries the subject's tag). */
  subject: string,
  client?: [deviceId: string, userAgent: string, ip: string, platform: string],
];

/** Common head of the writing scripts: ARGV[1] = base, ARGV[2] = now. */
const PRELUDE = `
local base = ARGV[1]
local now = tonumber(ARGV[2])
local idx = base .. 'idx'
-- PX / PEXPIRE argument for a deadline: milliseconds from now, at least 1.
local function ttl(deadline)
  local d = math.floor(deadline - now)
  if d < 1 then return 1 end
  return d
end
-- A session as a table (indexes as in SessionTuple) and as stored; nil if there is none.
local function read_session(sid)
  local raw = redis.call('GET', base .. 's:' .. sid)
  if not raw then return nil, nil end
  return cjson.decode(raw), raw
end
local function save(sid, s, deadline)
  local raw = cjson.encode(s)
  redis.call('SET', base .. 's:' .. sid, raw, 'PX', ttl(deadline))
  return raw
end
local function live_until(s)
  return math.min(s[4], s[5])
end
-- Revokes one session: kept as revoked for retention, without its client info.
local function tombstone(sid, s, retention)
  s[1] = 'r'
  s[9] = nil
  save(sid, s, now + retention)
  redis.call('DEL', base .. 'g:' .. sid)
  redis.call('ZREM', idx, sid)
end
-- Walks the index, dropping members that are gone or revoked; calls visit(sid, s) for each active one.
local function each_active(visit)
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local s = read_session(m)
    if not s or s[1] ~= 'a' then redis.call('ZREM', idx, m) else visit(m, s) end
  end
end
`;

/** KEYS: idx. ARGV: base, now, maxSessions, retentionMs, sid, createdAt, lastUsedAt, idleExpiresAt, expiresAt, jti,
 * client JSON, subject. Returns the evicted ids, least recently used first. */
const CREATE_SESSION = `${PRELUDE}
local max, retention, sid = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local s = { 'a', tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), 1, ARGV[10], ARGV[12],
  cjson.decode(ARGV[11]) }
local live, latest = {}, live_until(s)
each_active(function(m, o)
  if o[6] >= s[6] then s[6] = o[6] + 1 end
  if live_until(o) > latest then latest = live_until(o) end
  if now < live_until(o) then live[#live + 1] = { id = m, s = o } end
end)
local evicted = {}
local excess = #live + 1 - max
if excess > 0 then
  table.sort(live, function(a, b)
    for _, i in ipairs({ 3, 2, 6 }) do
      if a.s[i] ~= b.s[i] then return a.s[i] < b.s[i] end
    end
    return a.id < b.id
  end)
  for i = 1, math.min(excess, #live) do
    tombstone(live[i].id, live[i].s, retention)
    evicted[#evicted + 1] = live[i].id
  end
end
redis.call('DEL', base .. 'g:' .. sid)
save(sid, s, live_until(s))
redis.call('ZADD', idx, ARGV[7], sid)
redis.call('PEXPIRE', idx, ttl(latest))
return evicted
`;

/**
 * KEYS: session. ARGV: base, now, sid, presentedJti, nextJti, fingerprint, graceMs, idleTtlMs, retentionMs,
 * grace entry JSON. Returns {'ended', why} | {'reused'} | {'rotated', session} | {'replayed', session, grace entry}.
 */
const ROTATE = `${PRELUDE}
local sid, presented, fp = ARGV[3], ARGV[4], ARGV[6]
local grace, idle, retention = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local gkey = base .. 'g:' .. sid
local s, raw = read_session(sid)
if not s then return { 'ended', 'missing' } end
if s[1] ~= 'a' then return { 'ended', 'revoked' } end
if now >= live_until(s) then return { 'ended', 'expired' } end
if presented == s[7] then
  s[3], s[4], s[7] = now, math.min(now + idle, s[5]), ARGV[5]
  raw = save(sid, s, s[4])
  redis.call('DEL', gkey)
  if grace > 0 then redis.call('SET', gkey, ARGV[10], 'PX', ttl(math.min(now + grace, s[4]))) end
  redis.call('ZADD', idx, ARGV[2], sid)
  local left = redis.call('PTTL', idx)
  if left == -1 or left < ttl(s[4]) then redis.call('PEXPIRE', idx, ttl(s[4])) end
  return { 'rotated', raw }
end
local g = redis.call('GET', gkey)
if g then
  local prev = cjson.decode(g)
  if presented == prev[1] and now - prev[3] < grace and fp == prev[2] then return { 'replayed', raw, g } end
end
tombstone(sid, s, retention)
return { 'reused' }
`;

/**
 * KEYS: session. ARGV: base, now, sid, retentionMs, subject ('' for any). Returns the session's subject if a live
 * session (of that subject) was revoked, else 0.
 */
const REVOKE_SESSION = `${PRELUDE}
local s = read_session(ARGV[3])
if not s or s[1] ~= 'a' or now >= live_until(s) or (ARGV[5] ~= '' and s[8] ~= ARGV[5]) then return 0 end
tombstone(ARGV[3], s, tonumber(ARGV[4]))
return s[8]
`;

/** KEYS: idx. ARGV: base, now, retentionMs. Revokes every live session; returns how many. */
const REVOKE_SUBJECT = `${PRELUDE}
local retention, n = tonumber(ARGV[3]), 0
each_active(function(m, s)
  if now < live_until(s) then
    tombstone(m, s, retention)
    n = n + 1
  end
end)
return n
`;

/** KEYS: idx. ARGV: base. Read only. Returns {sid, session or nil, ...} for every index member. */
const LIST_SESSIONS = `
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('GET', ARGV[1] .. 's:' .. m)
end
return out
`;

/**
 * KEYS: keys hash. ARGV: kid, alg, StoredKey JSON, onlyIfAlgAbsent (1|0). Values are `[order, StoredKey]` JSON so
 * that listing can return the keys oldest first (keys are never deleted, so HLEN + 1 is a fresh order).
 * Returns every value.
 */
const ADD_KEY = `
local blocked = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if not blocked and ARGV[4] == '1' then
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
    local ok, entry = pcall(cjson.decode, v)
    if ok and type(entry) == 'table' and type(entry[2]) == 'table' and entry[2].alg == ARGV[2] then
      blocked = true
      break
    end
  end
end
if not blocked then
  redis.call('HSET', KEYS[1], ARGV[1], '[' .. (redis.call('HLEN', KEYS[1]) + 1) .. ',' .. ARGV[3] .. ']')
end
return redis.call('HVALS', KEYS[1])
`;

/** Stream field names of an audit event, in the order appendAudit passes the values. */
export const AUDIT_FIELDS = ["a", "t", "v", "c", "s", "i", "p", "u", "d", "r", "x"] as const;

/**
 * KEYS: audit stream. ARGV: maxEvents, minId, then per event the values of AUDIT_FIELDS (a = at first).
 * Ids are `<ms>-<seq>` with ms = the event's time, raised to the stream's last id if older (see domain nextAuditId);
 * `a` is stored only in that case ('' when the id's ms is the event's time, 14 bytes less an entry),
 * so ids only grow and MINID trimming follows event time by the caller's clock. Trims by count approximately
 * (MAXLEN ~, whole stream nodes) and by age exactly (nothing older than maxAge is ever served). Returns the count
 * appended.
 */
const AUDIT_APPEND = `
local key, maxlen, minid = KEYS[1], ARGV[1], ARGV[2]
local names = { ${AUDIT_FIELDS.map((f) => `'${f}'`).join(", ")} }
local n = #names
local ms, seq = -1, 0
if redis.call('EXISTS', key) == 1 then
  local info = redis.call('XINFO', 'STREAM', key)
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      local dash = string.find(info[i + 1], '-', 1, true)
      ms, seq = tonumber(string.sub(info[i + 1], 1, dash - 1)), tonumber(string.sub(info[i + 1], dash + 1))
    end
  end
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

/** The Lua side of domain mergeRisk: same pruning (at or before now - window goes), same caps, same tie order. */
const RISK_PRELUDE = `
local now, win = tonumber(ARGV[1]), tonumber(ARGV[2])
local since = now - win
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
 * KEYS: the subject's risk key. ARGV: now, windowMs, keys cap, instants cap, signals JSON [[at, ip, device, count]]
 * (count '' | 'refresh' | 'reuse' | 'revoked_presented'). Stores the merged observations for windowMs and returns
 * them as JSON ({ip, dev, rf, ru, rv, al}, each left out when empty).
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
if al <= since then al = 0 end
local raw = encode({ ip = capmap(r.ip), dev = capmap(r.dev), rf = caplist(r.rf), ru = caplist(r.ru),
  rv = caplist(r.rv), al = al })
redis.call('SET', KEYS[1], raw, 'PX', win)
return raw
`;

/** KEYS: the subject's risk key. ARGV: now, windowMs. 1 if this call marked the alert, 0 if one was within the window. */
const RISK_CLAIM_ALERT = `${RISK_PRELUDE}
local r = read()
if r.al > 0 and r.al > since then return 0 end
r.al = now
local left = redis.call('PTTL', KEYS[1])
if left < win then left = win end
redis.call('SET', KEYS[1], encode(r), 'PX', left)
return 1
`;

export const SCRIPTS = {
  createSession: { numberOfKeys: 1, lua: CREATE_SESSION },
  rotate: { numberOfKeys: 1, lua: ROTATE },
  revokeSession: { numberOfKeys: 1, lua: REVOKE_SESSION },
  revokeSubject: { numberOfKeys: 1, lua: REVOKE_SUBJECT },
  listSessions: { numberOfKeys: 1, lua: LIST_SESSIONS },
  addKey: { numberOfKeys: 1, lua: ADD_KEY },
  auditAppend: { numberOfKeys: 1, lua: AUDIT_APPEND },
  riskUpdate: { numberOfKeys: 1, lua: RISK_UPDATE },
  riskClaimAlert: { numberOfKeys: 1, lua: RISK_CLAIM_ALERT },
} as const;

export type ScriptName = keyof typeof SCRIPTS;
