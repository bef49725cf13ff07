/**
 * The Redis store's sessions and revocations (SessionStore). Every change is one Lua script on one subject's slot (all
 * its keys share the subject's hash tag; a script builds them from `base` = `P{t}:`), so it is atomic and Redis
 * Cluster can run it; time comes from ARGV, never from the server. Every revocation is then appended to the feed
 * part, and so is a revocation found already made (a retry after the append failed), so that the retry makes it good.
 *
 * The rules the scripts apply are domain/sessions.ts's (liveness, rotation, grace window, eviction order), mirrored
 * in Lua: each Lua twin below names its TypeScript function, and each function there names its twin here.
 *
 * A session `P{t}:s:<sid>` is a string holding a JSON array (SessionTuple); a string is about half the memory of a
 * hash once the client info passes the 64-byte listpack limit, which a real user agent does. A tombstone (a revoked
 * session) drops the client info. `P{t}:g:<sid>` holds, for the grace window only, the GraceTuple of the last
 * rotation. `P{t}:idx` is a zset of the subject's active sessions, score lastUsedAt; for a subject with LIVES_FROM
 * sessions or more, `P{t}:x` holds the same members, score the instant each stops being live (domain liveUntil), so
 * that opening a session counts the live ones and finds the least recently used without reading them all.
 * `P{t}:j:<jti>` marks a revoked access token until it expires.
 */
import type { RiskObservations } from "../../domain/audit.js";
import { BoundedMap, kept } from "../../domain/kept.js";
import { isLive, listingOrder, tokenSession, type SessionRow, type TokenSessionRow } from "../../domain/sessions.js";
import {
  assertSessionIdOf,
  type ClientInfo,
  type IssuedPair,
  type RotateInput,
  type RotateResult,
  type SessionRecord,
  type SessionStore,
  type TokenState,
} from "../../domain/store.js";
import { parseRisk } from "./audit.js";
import { commandTimeoutOf, riskKeyOf, ttl, type RedisContext, type Script } from "./client.js";
import type { FeedEntry, RedisRevocationFeed } from "./feed.js";

/** A stored session. Lua names its positions in SESSION_PRELUDE (STATUS = 1 ... CLIENT = 9); keep both in step. */
type SessionTuple = [
  status: "a" | "r",
  createdAt: number,
  lastUsedAt: number,
  idleExpiresAt: number,
  expiresAt: number,
  /** 1. Versions before 2026-12-01 broke eviction ties by creation order, kept here; they still read it. */
  order: number,
  currentJti: string,
  /** So that a session is found, and answered for, from its id alone (the id carries the subject's tag). */
  subject: string,
  client?: [deviceId: string, userAgent: string, ip: string, platform: string],
];

/** The last rotation, for the grace window (domain GraceEntry + the pair). Lua: G_JTI = 1 ... G_PAIR = 4. */
type GraceTuple = [jti: string, fingerprint: string, at: number, pair: IssuedPair];

/**
 * Common head of the scripts: KEYS[1] = the subject's index `P{t}:idx`, KEYS[2] = its lives `P{t}:x` (when it is kept,
 * it holds the index's members); ARGV[1] = base, ARGV[2] = now. Names the tuple positions and holds the Lua twins of
 * domain/sessions.ts liveUntil / isLive, and the helpers every script shares. Every key a script touches is declared in
 * KEYS, all in the subject's slot: the session it names (and its grace key) after the two indexes, then, for the
 * scripts that read other members, the `s:` keys of the members it was told of (RedisSessionStore.overMembers); such a
 * script first checks that every member it will read is declared and otherwise returns {'undeclared', members}
 * untouched (CREATE_SESSIONS: past the sessions it opened before), for the caller to run it again with those. A member
 * such a script revokes keeps its `g:` key until it expires by itself (the end of its grace window): a revoked
 * session's grace entry is never read (ROTATE answers 'ended' first), and so the members' `g:` keys need not be
 * declared.
 */
const SESSION_PRELUDE = `
local STATUS, CREATED_AT, LAST_USED_AT, IDLE_EXPIRES_AT, EXPIRES_AT, ORDER, CURRENT_JTI, SUBJECT, CLIENT =
  1, 2, 3, 4, 5, 6, 7, 8, 9
local G_JTI, G_FINGERPRINT, G_AT, G_PAIR = 1, 2, 3, 4
local base = ARGV[1]
local now = tonumber(ARGV[2])
local idx, lives = KEYS[1], KEYS[2]
-- The members whose \`s:\` key is declared (from KEYS[first] on), as a set.
local function declared_set(first)
  local declared, skip = {}, #base + 3
  for i = first, #KEYS do declared[string.sub(KEYS[i], skip)] = true end
  return declared
end
-- The index's members if every one's \`s:\` key is declared (in the set declared_set made); else nil and the members.
local function declared_members(declared)
  local members = redis.call('ZRANGE', idx, 0, -1)
  for _, m in ipairs(members) do
    if not declared[m] then return nil, members end
  end
  return members
end
-- PX / PEXPIRE argument for a deadline: milliseconds from now, at least 1 (twin of client.ts ttl).
local function ttl(deadline)
  local d = math.floor(deadline - now)
  if d < 1 then return 1 end
  return d
end
-- A session as a table (positions as in SessionTuple) and as stored; nil if there is none.
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
-- Twin of domain/sessions.ts liveUntil.
local function live_until(s)
  return math.min(s[IDLE_EXPIRES_AT], s[EXPIRES_AT])
end
-- Twin of domain/sessions.ts isLive.
local function is_live(s)
  return s[STATUS] == 'a' and now < live_until(s)
end
-- A session into the index (last used) and, when it is kept, the index of lives (live until); both kept at least
-- until it stops being live (they are always given the same expiry, so one's tells both's).
local function index(sid, s)
  redis.call('ZADD', idx, s[LAST_USED_AT], sid)
  if redis.call('EXISTS', lives) == 1 then redis.call('ZADD', lives, live_until(s), sid) end
  local keep = ttl(live_until(s))
  local left = redis.call('PTTL', idx)
  if left == -1 or left < keep then
    redis.call('PEXPIRE', idx, keep)
    redis.call('PEXPIRE', lives, keep)
  end
end
local function unindex(sid)
  redis.call('ZREM', idx, sid)
  redis.call('ZREM', lives, sid)
end
-- Revokes one session: kept as revoked for retention, without its client info; out of the indexes, and its grace
-- entry gone when the script declared its key ('gkey'; else it expires by itself, unread).
local function tombstone(sid, s, retention, gkey)
  s[STATUS] = 'r'
  s[CLIENT] = nil
  save(sid, s, now + retention)
  if gkey then redis.call('DEL', gkey) end
  unindex(sid)
end
-- Walks the index, dropping members that are gone or revoked; calls visit(sid, s) for each active one.
local function each_active(visit)
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    local s = read_session(m)
    if not s or s[STATUS] ~= 'a' then unindex(m) else visit(m, s) end
  end
end
`;

/** How long after a session stopped being live CREATE_SESSIONS drops it from the indexes (far above any clock skew). */
const FORGET_MS = 5 * 60_000;
/**
 * From how many indexed sessions a subject's `P{t}:x` is kept (RedisStoreOptions.livesFrom): below, reading them all
 * costs less than the key (about 220 bytes for a subject with one session), and most subjects have a few devices.
 */
const LIVES_FROM = 8;
/** How many ARGV each session of a CREATE_SESSIONS batch takes. */
const SESSION_ARGS = 11;

/**
 * CREATE_SESSIONS: opens one or more sessions of one subject, in order, each as if it came alone (the
 * sessions of a batch are each other's members: a later one may evict an earlier one). KEYS: `P{t}:idx`, `P{t}:x`, then
 * the `s:` and `g:` key of each new session, then `s:` of the index members the caller knows of (read, and written
 * when evicted). ARGV: base, now (the first session's), livesFrom (LIVES_FROM), the count, then SESSION_ARGS per
 * session: now, maxSessions, retentionMs, sid, createdAt, lastUsedAt, idleExpiresAt, expiresAt, jti, client JSON,
 * subject. Guarantees, per session and atomically for it: the session is stored and indexed, and the subject keeps at
 * most maxSessions live sessions: the excess is tombstoned in eviction order, which is the index's own order (twin of
 * domain/sessions.ts evictionOrder: last use, then id), so the first live members of the index are the ones to go (a
 * member found gone or revoked on the way leaves the index and counts no more). With `P{t}:x` kept, the live ones are
 * counted from it, and only the members evicted are read; members that stopped being live FORGET_MS ago, by `x` and by
 * the session itself, leave both indexes (every process judges them ended, clocks apart by less than that). Without it
 * (fewer than LIVES_FROM sessions, or an `x` that does not hold the index's members, as one written before it existed)
 * every member is read, and `x` is made from them once there are LIVES_FROM. A session that would read a member not
 * declared changes nothing, and neither do the ones after it. Returns {'ok', per session the ids evicted (first
 * evicted first), the index's members after}, or {'undeclared', members, per session opened before it the ids
 * evicted}.
 */
const CREATE_SESSIONS = `${SESSION_PRELUDE}
local FORGET_MS, LIVES_FROM, count = ${FORGET_MS}, tonumber(ARGV[3]), tonumber(ARGV[4])
local declared = declared_set(3)
-- One session, its SESSION_ARGS from ARGV[at] on: the ids it evicted, or nil and the members to declare (and then
-- nothing written).
local function create_one(at)
  now = tonumber(ARGV[at])
  local max, retention, sid = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), ARGV[at + 3]
  local s = {}
  s[STATUS], s[CREATED_AT], s[LAST_USED_AT] = 'a', tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5])
  -- ORDER is always 1 now: versions before 2026-12-01 broke eviction ties by it, and still read it.
  s[IDLE_EXPIRES_AT], s[EXPIRES_AT], s[ORDER] = tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7]), 1
  s[CURRENT_JTI], s[SUBJECT], s[CLIENT] = ARGV[at + 8], ARGV[at + 10], cjson.decode(ARGV[at + 9])
  -- Read-only until every member to read is known to be declared.
  local undeclared, reads, gone = {}, {}, {}
  local function read(m)
    if not declared[m] then
      undeclared[#undeclared + 1] = m
      return nil
    end
    if reads[m] == nil then reads[m] = read_session(m) or false end
    return reads[m] or nil
  end
  -- How many sessions are live, and until when each indexed one is: from \`P{t}:x\` when it is kept (and holds the
  -- index's members), else from the sessions themselves, all read (a subject with few, or an index of lives to make).
  local held = redis.call('ZCARD', idx)
  local kept = redis.call('EXISTS', lives) == 1 and redis.call('ZCARD', lives) == held
  local live, until_of = 0, nil
  if kept then
    live = redis.call('ZCOUNT', lives, '(' .. now, '+inf')
    until_of = function(m) return tonumber(redis.call('ZSCORE', lives, m)) end
  else
    local members, found = declared_members(declared)
    if not members then return nil, found end
    local untils = {}
    for _, m in ipairs(members) do
      local o = read(m)
      if o and o[STATUS] == 'a' then
        untils[m] = live_until(o)
        if untils[m] > now then live = live + 1 end
      else
        gone[#gone + 1] = m
      end
    end
    untils[sid] = live_until(s)
    until_of = function(m) return untils[m] end
  end
  local need = live + 1 - max
  -- The first \`need\` live members in the index's order, paged (at most 256 a page).
  local candidates, from, size = {}, 0, math.min(need + 1, 256)
  while #candidates < need do
    local page = redis.call('ZRANGE', idx, from, from + size - 1)
    if #page == 0 then break end
    from, size = from + size, math.min(size * 2, 256)
    for _, m in ipairs(page) do
      if #candidates >= need then break end
      local until_ = until_of(m)
      if until_ ~= nil and until_ > now then
        local o = read(m)
        if o and o[STATUS] == 'a' then
          candidates[#candidates + 1] = { id = m, s = o }
        elseif declared[m] then
          gone[#gone + 1] = m
          need = need - 1
        end
      end
    end
  end
  if #undeclared > 0 then return nil, undeclared end
  for _, m in ipairs(gone) do unindex(m) end
  if kept and held > live then
    -- Ended FORGET_MS ago by \`x\`, and by the session itself (a process of an older version rotates a session without
    -- moving its \`x\` entry: then the entry is set right instead). Members not declared wait for another call.
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', lives, '-inf', now - FORGET_MS)) do
      if declared[m] then
        local o = read_session(m)
        if o and o[STATUS] == 'a' and live_until(o) > now - FORGET_MS then
          redis.call('ZADD', lives, live_until(o), m)
        else
          unindex(m)
        end
      end
    end
  end
  local evicted = {}
  for i = 1, math.min(need, #candidates) do
    tombstone(candidates[i].id, candidates[i].s, retention, nil)
    evicted[#evicted + 1] = candidates[i].id
  end
  redis.call('DEL', base .. 'g:' .. sid)
  save(sid, s, live_until(s))
  index(sid, s)
  if not kept then
    -- Made (again) from what was read once the subject has LIVES_FROM sessions indexed; else not kept.
    local members = redis.call('ZRANGE', idx, 0, -1)
    redis.call('DEL', lives)
    if #members >= LIVES_FROM then
      for _, m in ipairs(members) do redis.call('ZADD', lives, until_of(m), m) end
      redis.call('PEXPIRE', lives, redis.call('PTTL', idx))
    end
  end
  return evicted
end
local done = {}
for i = 1, count do
  local evicted, undeclared = create_one(5 + (i - 1) * ${SESSION_ARGS})
  if not evicted then return { 'undeclared', undeclared, done } end
  done[i] = evicted
end
return { 'ok', done, redis.call('ZRANGE', idx, 0, -1) }
`;

/**
 * ROTATE: the Lua twin of domain/sessions.ts judgeRotation, graceReplays and rotated, step for step. KEYS: `P{t}:idx`,
 * `P{t}:x`, `P{t}:s:<sid>`, `P{t}:g:<sid>`. ARGV: base, now, sid, presentedJti, nextJti, fingerprint, graceMs,
 * idleTtlMs, retentionMs, grace entry JSON (GraceTuple). Guarantees: of concurrent refreshes of one token exactly one
 * rotates; the others replay its pair (same client, inside the grace window) or find reuse, which tombstones the
 * session. Nothing changes for an ended session. Returns {'ended', why} | {'reused'} | {'rotated', session} |
 * {'replayed', session, grace entry}. (The caller appends to the feed for 'reused', and again for {'ended',
 * 'revoked'}.)
 */
const ROTATE = `${SESSION_PRELUDE}
local sid, presented, fp = ARGV[3], ARGV[4], ARGV[6]
local grace, idle, retention = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local gkey = KEYS[4]
local s, raw = read_session(sid)
if not s then return { 'ended', 'missing' } end
if s[STATUS] ~= 'a' then return { 'ended', 'revoked' } end
if now >= live_until(s) then return { 'ended', 'expired' } end
if presented == s[CURRENT_JTI] then
  -- Twin of domain/sessions.ts rotated.
  s[LAST_USED_AT], s[IDLE_EXPIRES_AT], s[CURRENT_JTI] = now, math.min(now + idle, s[EXPIRES_AT]), ARGV[5]
  raw = save(sid, s, s[IDLE_EXPIRES_AT])
  redis.call('DEL', gkey)
  -- Twin of domain/sessions.ts graceKeptUntil.
  if grace > 0 then redis.call('SET', gkey, ARGV[10], 'PX', ttl(math.min(now + grace, s[IDLE_EXPIRES_AT]))) end
  index(sid, s)
  return { 'rotated', raw }
end
local g = redis.call('GET', gkey)
if g then
  local prev = cjson.decode(g)
  -- Twin of domain/sessions.ts graceReplays.
  if grace > 0 and presented == prev[G_JTI] and now - prev[G_AT] < grace and fp == prev[G_FINGERPRINT] then
    return { 'replayed', raw, g }
  end
end
tombstone(sid, s, retention, gkey)
return { 'reused' }
`;

/**
 * REVOKE_SESSION. KEYS: `P{t}:idx`, `P{t}:x`, `P{t}:s:<sid>`, `P{t}:g:<sid>`. ARGV: base, now, sid, retentionMs,
 * subject ('' for any). Guarantees: atomically, a live session (of that subject) is tombstoned, and only once. Returns
 * {subject, 1} if this call revoked it, {subject, 0} if it was revoked already (its tombstone still kept), else 0.
 */
const REVOKE_SESSION = `${SESSION_PRELUDE}
local s = read_session(ARGV[3])
if not s or (ARGV[5] ~= '' and s[SUBJECT] ~= ARGV[5]) then return 0 end
if is_live(s) then
  tombstone(ARGV[3], s, tonumber(ARGV[4]), KEYS[4])
  return { s[SUBJECT], 1 }
end
if s[STATUS] == 'r' then return { s[SUBJECT], 0 } end
return 0
`;

/**
 * REVOKE_SUBJECT. KEYS: `P{t}:idx`, `P{t}:x`, then `s:` of every index member. ARGV: base, now, retentionMs.
 * Guarantees: every session live at `now` is tombstoned in one atomic step, so every token issued so far is dead and
 * a session opened afterwards (even in the same millisecond) lives. Returns {'ok', the ids revoked, in index order
 * (least recently used first, then by id; the memory store lists them alike)}, or {'undeclared', members}.
 */
const REVOKE_SUBJECT = `${SESSION_PRELUDE}
local ok, members = declared_members(declared_set(3))
if not ok then return { 'undeclared', members } end
local retention, ended = tonumber(ARGV[3]), {}
each_active(function(m, s)
  if is_live(s) then
    tombstone(m, s, retention, nil)
    ended[#ended + 1] = m
  end
end)
return { 'ok', ended }
`;

/**
 * LIST_SESSIONS. Read only. KEYS: `P{t}:idx`, `P{t}:x`, then `s:` of every index member. ARGV: base, now.
 * Guarantees: one consistent snapshot of the subject's sessions; liveness and order are judged in TypeScript
 * (domain/sessions.ts isLive, listingOrder). Returns {'ok', {sid, session or nil, ...} for every index member}, or
 * {'undeclared', members}.
 */
const LIST_SESSIONS = `${SESSION_PRELUDE}
local members, found = declared_members(declared_set(3))
if not members then return { 'undeclared', found } end
local out = {}
for _, m in ipairs(members) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('GET', base .. 's:' .. m)
end
return { 'ok', out }
`;

const SCRIPTS: Record<string, Script> = {
  createSessions: { numberOfKeys: "varies", lua: CREATE_SESSIONS },
  rotate: { numberOfKeys: 4, lua: ROTATE },
  revokeSession: { numberOfKeys: 4, lua: REVOKE_SESSION },
  revokeSubject: { numberOfKeys: "varies", lua: REVOKE_SUBJECT },
  listSessions: { numberOfKeys: "varies", lua: LIST_SESSIONS },
};

type Cell = string | null;

/** How many subjects' index members overMembers remembers (the least recently used are forgotten first). */
const MEMBER_HINTS = 10_000;
/** A script that meets members it was not told of this many times in a row fails (another process keeps adding). */
const MEMBER_ATTEMPTS = 5;
/** At most this many sessions in one CREATE_SESSIONS (a bounded script, as the audit's and the feed's). */
const SESSIONS_PER_SCRIPT = 64;
/** At most this many CREATE_SESSIONS of one subject in flight from this process (schedule). */
const SCRIPTS_IN_FLIGHT = 2;
/**
 * A subject's openings: those waiting, the sessions of the scripts in flight (declared by every other script of the
 * subject: overMembers), how many those scripts are, and whether a send is scheduled.
 */
interface OpeningLine {
  queue: PendingOpening[];
  inFlight: Set<string>;
  running: number;
  scheduled: boolean;
}

/** A session waiting for its subject's next CREATE_SESSIONS. */
interface PendingOpening {
  s: SessionRecord;
  opts: { maxSessions: number; now: number; retentionMs: number };
  /** performance.now() when it was queued. */
  queuedAt: number;
  resolve(evicted: string[]): void;
  reject(err: unknown): void;
}

export class RedisSessionStore implements SessionStore {
  /** Per subject base: its index's members as last seen, so a script walking them declares their keys at once. */
  private readonly members = new BoundedMap<string, readonly string[]>(MEMBER_HINTS);
  /** The client's command timeout (createRedisClient): how long an opening may wait to be sent (schedule). */
  private readonly commandTimeoutMs: number | undefined;
  /** Per subject base: the openings waiting for a CREATE_SESSIONS, and how many of its scripts run (schedule). */
  private readonly openings = new Map<string, OpeningLine>();

  constructor(
    private readonly ctx: RedisContext,
    private readonly feed: RedisRevocationFeed,
    private readonly livesFrom = LIVES_FROM,
  ) {
    ctx.define(SCRIPTS);
    this.commandTimeoutMs = commandTimeoutOf(ctx.redis);
  }

  /**
   * Runs a script that walks the subject's index, with the keys and arguments `request` gives and then the `s:` key of
   * every member not among those keys: the members last seen, plus the sessions this process is opening for the
   * subject (`inFlight`: Redis may run their script first). If the index holds others, the script names them (having
   * changed nothing, or for CREATE_SESSIONS what it did before meeting one: `cutShort` hears of it, and `request`
   * then asks for the rest), and it runs again with those. Returns the script's reply after its 'ok'.
   */
  private async overMembers(
    name: string,
    base: string,
    request: () => [keys: string[], args: (string | number)[]],
    cutShort?: (reply: unknown[]) => void,
  ): Promise<unknown[]> {
    let members = [...(this.members.get(base) ?? []), ...(this.openings.get(base)?.inFlight ?? [])];
    for (let attempt = 1; ; attempt++) {
      const [keys, args] = request();
      const given = new Set(keys);
      for (const m of members) if (!given.has(`${base}s:${m}`)) keys.push(`${base}s:${m}`);
      const reply = (await this.ctx.script(name, keys, args)) as [string, ...unknown[]];
      if (reply[0] === "ok") return reply.slice(1);
      if (attempt >= MEMBER_ATTEMPTS) throw new Error(`${name}: the subject's sessions kept changing`);
      cutShort?.(reply);
      members = [...new Set([...members, ...(reply[1] as string[])])];
    }
  }

  /** Remembers a subject's index members (bounded: the least recently set go first). */
  private seen(base: string, members: readonly string[]): void {
    this.members.delete(base);
    this.members.set(base, members);
  }

  /**
   * Opens a session: queued with the other openings of its subject, which go to Redis together (schedule), and
   * resolves with what opening it evicted once its batch's script ran. Those evictions go to the feed with the turn's
   * append (waited for only when revocations wait for replicas).
   */
  async createSession(
    s: SessionRecord,
    opts: { maxSessions: number; now: number; retentionMs: number },
  ): Promise<{ evicted: string[] }> {
    assertSessionIdOf(s);
    const base = this.ctx.sessionBase(s.id)!; // = base(s.subject), by the assertion, without digesting it again
    return this.ctx.guard(async () => {
      const evicted = await new Promise<string[]>((resolve, reject) => {
        let line = this.openings.get(base);
        if (line === undefined) this.openings.set(base, (line = { queue: [], inFlight: new Set(), running: 0, scheduled: false }));
        line.queue.push({ s, opts, queuedAt: performance.now(), resolve, reject });
        this.schedule(base, line);
      });
      // The evictions join this turn's append to the feed, which Issue waits for only when revocations wait for
      // replicas (an eviction is then acknowledged as a revocation is). Otherwise waiting adds nothing: an append that
      // fails puts its entries in the feed's backlog, which this process appends again until they land (a retried
      // Issue opens another session, it does not evict these again), and a failure would only report as failed an
      // Issue whose session was opened. One-subject Issue (h2load, 64 in flight, every call evicts), three
      // alternated pairs: 4 600, 4 777, 4 783 against 4 019, 4 576, 3 917 calls/s, and less CPU a call.
      const now = opts.now;
      const entries = evicted.map((target) => sessionEntry(s.subject, target, now, opts.retentionMs, EVICTED));
      const appended = this.feed.publish(now, entries, `${base}idx`);
      if (this.ctx.waitsForReplicas) await appended;
      else appended.catch(() => undefined);
      return { evicted };
    });
  }

  /**
   * Sends a subject's queued openings at the end of the turn (so that the openings its I/O callbacks make go
   * together), at most SESSIONS_PER_SCRIPT a CREATE_SESSIONS script and SCRIPTS_IN_FLIGHT scripts at once; openings
   * that come meanwhile wait for a script to finish. Each script declares the sessions of the others in flight
   * (`inFlight`: Redis may run those first), where each opening used to declare every other one: under one-subject
   * Issue with 64 in flight, a 5 KB script a call. Two in flight, not one, so that Redis runs one while this process
   * answers the other's calls.
   */
  private schedule(base: string, line: OpeningLine): void {
    if (line.scheduled || line.running >= SCRIPTS_IN_FLIGHT || line.queue.length === 0) return;
    line.scheduled = true;
    setImmediate(() => {
      line.scheduled = false;
      // An opening that waited as long as a command may take is refused, not sent: its caller has been answered
      // UNAVAILABLE or given up (so Redis stalling cannot queue openings to be made long after anyone waits for them),
      // as a script of its own would have timed out. The oldest wait first.
      const timeout = this.commandTimeoutMs;
      const now = performance.now();
      while (timeout !== undefined && line.queue.length > 0 && now - line.queue[0]!.queuedAt >= timeout) {
        line.queue.shift()!.reject(new Error("createSessions: waited for the subject's earlier openings past the store timeout"));
      }
      while (line.running < SCRIPTS_IN_FLIGHT && line.queue.length > 0) {
        const batch = line.queue.splice(0, SESSIONS_PER_SCRIPT);
        for (const o of batch) line.inFlight.add(o.s.id);
        line.running++;
        void this.openBatch(base, batch)
          .catch((err: unknown) => {
            for (const o of batch) o.reject(err);
          })
          .finally(() => {
            for (const o of batch) line.inFlight.delete(o.s.id);
            line.running--;
            if (line.running === 0 && line.queue.length === 0 && this.openings.get(base) === line) this.openings.delete(base);
            else this.schedule(base, line);
          });
      }
    });
  }

  /**
   * One CREATE_SESSIONS for `batch` (overMembers); the sessions it opened before meeting a member it was not told of
   * resolve, and the rest run again with those declared.
   */
  private async openBatch(base: string, batch: PendingOpening[]): Promise<void> {
    let rest = batch;
    const settle = (done: string[][]) => {
      for (let i = 0; i < done.length; i++) rest[i]!.resolve(done[i]!);
      rest = rest.slice(done.length);
    };
    const request = (): [string[], (string | number)[]] => {
      const keys = [`${base}idx`, `${base}x`];
      const args: (string | number)[] = [base, rest[0]!.opts.now, this.livesFrom, rest.length];
      for (const { s, opts } of rest) {
        const c = s.client;
        keys.push(`${base}s:${s.id}`, `${base}g:${s.id}`);
        args.push(
          opts.now, opts.maxSessions, opts.retentionMs, s.id, s.createdAt, s.lastUsedAt, s.idleExpiresAt, s.expiresAt,
          s.currentJti, JSON.stringify([c.deviceId, c.userAgent, c.ip, c.platform]), s.subject,
        );
      }
      return [keys, args];
    };
    const [done, members] = (await this.overMembers("createSessions", base, request, (reply) => settle(reply[2] as string[][]))) as [
      string[][],
      string[],
    ];
    settle(done);
    this.seen(base, members);
  }

  async rotateRefresh(input: RotateInput): Promise<RotateResult> {
    return this.ctx.guard(async () => {
      const { subject, sessionId, now } = input;
      const base = this.ctx.base(subject);
      const grace: GraceTuple = [input.presentedJti, input.clientFingerprint, now, input.nextPair];
      const args = [
        base, now, sessionId, input.presentedJti, input.nextJti, input.clientFingerprint,
        input.graceMs, input.idleTtlMs, input.retentionMs, JSON.stringify(grace),
      ];
      const keys = [`${base}idx`, `${base}x`, `${base}s:${sessionId}`, `${base}g:${sessionId}`];
      const [outcome, a, b] = (await this.ctx.script("rotate", keys, args)) as string[];
      switch (outcome) {
        case "rotated":
          return { outcome: "rotated", session: parseSession(sessionId, a!)!.record };
        case "replayed":
          return {
            outcome: "replayed",
            pair: (JSON.parse(b!) as GraceTuple)[3],
            session: parseSession(sessionId, a!)!.record,
          };
        case "reused":
          await this.feed.publish(now, [sessionEntry(subject, sessionId, now, input.retentionMs, REUSED)], `${base}idx`);
          return { outcome: "reused" };
        default: {
          const why = a as "revoked" | "expired" | "missing";
          // A revoked session presented again: its entry again, in case the revocation's append was lost.
          if (why === "revoked") {
            await this.feed.publish(now, [sessionEntry(subject, sessionId, now, input.retentionMs, REVOKED_PRESENTED)], `${base}idx`);
          }
          return { outcome: "ended", why };
        }
      }
    });
  }

  async tokenState(q: { subject: string; sessionId: string; jti: string }): Promise<TokenState> {
    // The session id carries its subject's tag (ids.newSessionId): the key names come from it, with no digest of the
    // subject. A session of another subject is no session of this token (tokenSession checks), so a token whose sid
    // and sub disagree is never active. All three keys share the tag's slot: one MGET answers, in a cluster too. The
    // risk key is the audit part's; reading it here keeps Introspect at one command.
    const base = this.ctx.sessionBase(q.sessionId);
    if (base === null) return { jtiRevoked: false, session: null };
    return this.ctx.guard(async () => {
      const [revoked, raw, risk] = await this.ctx.mgetInSlot([`${base}j:${q.jti}`, `${base}s:${q.sessionId}`, riskKeyOf(base)]);
      const state: TokenState = { jtiRevoked: revoked != null, session: raw == null ? null : tokenSession(readTokenRow(raw), q.subject) };
      if (risk != null) state.risk = readRisk(risk);
      return state;
    });
  }

  async revokeToken(q: { subject: string; jti: string; expiresAt: number; now: number; reason: string }) {
    if (q.expiresAt <= q.now) return false;
    return this.ctx.guard(async () => {
      const key = `${this.ctx.base(q.subject)}j:${q.jti}`;
      const set = await this.ctx.redis.set(key, "1", "PX", ttl(q.expiresAt, q.now), "NX");
      // Revoked already (set is null): appended again all the same, in case the first call's append was lost.
      await this.feed.publish(q.now, [
        { kind: "token", subject: q.subject, target: q.jti, sessions: [], at: q.now, until: q.expiresAt, reason: q.reason },
      ], key);
      return set !== null;
    });
  }

  async revokeSession(q: { sessionId: string; subject?: string; now: number; retentionMs: number; reason: string }) {
    const base = this.ctx.sessionBase(q.sessionId);
    if (base === null) return false;
    return this.ctx.guard(async () => {
      const args = [base, q.now, q.sessionId, q.retentionMs, q.subject ?? ""];
      const keys = [`${base}idx`, `${base}x`, `${base}s:${q.sessionId}`, `${base}g:${q.sessionId}`];
      const found = (await this.ctx.script("revokeSession", keys, args)) as [string, 0 | 1] | 0;
      if (found === 0) return this.ctx.replicated(false, `${base}idx`);
      // Revoked now or already (a retry may follow a lost append): appended either way.
      const [subject, revokedNow] = found;
      await this.feed.publish(q.now, [sessionEntry(subject, q.sessionId, q.now, q.retentionMs, q.reason)], `${base}idx`);
      return revokedNow === 1;
    });
  }

  async revokeSubject(q: { subject: string; now: number; retentionMs: number; reason: string }) {
    return this.ctx.guard(async () => {
      const base = this.ctx.base(q.subject);
      const [ended] = (await this.overMembers("revokeSubject", base, () => [[`${base}idx`, `${base}x`], [base, q.now, q.retentionMs]])) as [string[]];
      this.seen(base, []);
      const until = q.now + q.retentionMs;
      await this.feed.publish(q.now, [
        { kind: "subject", subject: q.subject, target: "", sessions: ended, at: q.now, until, reason: q.reason },
      ], `${base}idx`);
      return ended;
    });
  }

  async listSessions(subject: string, now: number): Promise<SessionRecord[]> {
    return this.ctx.guard(async () => {
      const base = this.ctx.base(subject);
      const [flat] = (await this.overMembers("listSessions", base, () => [[`${base}idx`, `${base}x`], [base, now]])) as [Cell[]];
      const members: string[] = [];
      for (let i = 0; i < flat.length; i += 2) members.push(flat[i]!);
      this.seen(base, members);
      const rows: SessionRow[] = [];
      for (let i = 0; i + 1 < flat.length; i += 2) {
        const row = parseSession(flat[i]!, flat[i + 1]!);
        if (row && isLive(row.status, row.record, now)) rows.push(row);
      }
      return rows.sort(listingOrder).map((r) => r.record);
    });
  }

  async getSession(sessionId: string, now: number): Promise<SessionRecord | null> {
    const base = this.ctx.sessionBase(sessionId);
    if (base === null) return null;
    return this.ctx.guard(async () => {
      const row = parseSession(sessionId, await this.ctx.redis.get(`${base}s:${sessionId}`));
      return row && isLive(row.status, row.record, now) ? row.record : null;
    });
  }
}

const EVICTED = "evicted: session limit";
const REUSED = "refresh token reuse";
/** The reason of the entry appended again when a refresh presents a token of a revoked session (memory: the same). */
const REVOKED_PRESENTED = "revoked session presented";

/** A feed entry for one session, remembered for `retentionMs`. */
function sessionEntry(subject: string, target: string, now: number, retentionMs: number, reason: string): FeedEntry {
  return { kind: "session", subject, target, sessions: [], at: now, until: now + retentionMs, reason };
}

/**
 * What tokenState reads of a stored session (what tokenSession needs of it) and of a subject's risk observations, kept
 * for recent values (domain/kept.ts): Introspect reads the same session and observations call after call, and parsing
 * their JSON was about 4 % of its CPU (profile, h2load, one token). Frozen: the same object goes to every call that
 * reads the same value. Bounded: at most 2048 x 1 KiB and 1024 x 2 KiB of JSON (longer values are parsed each time).
 */
const readTokenRow = kept(
  2048,
  1024,
  (raw): TokenSessionRow => {
    const { status, record } = parseSession("", raw)!;
    const { subject, idleExpiresAt, expiresAt, currentJti } = record;
    return Object.freeze({ status, record: Object.freeze({ subject, idleExpiresAt, expiresAt, currentJti }) });
  },
  // Placed by the row's first 128 characters (kept.ts ProbedMap): its status, four times, order number and current
  // jti come first (SessionTuple) and fill about 90, so two versions of a session, or two sessions, differ in them.
  (raw) => raw.slice(0, 128),
);
const readRisk = kept(1024, 2048, (raw) => {
  const r = parseRisk(raw);
  for (const part of [r.ips, r.devices, r.refreshes, r.reuses, r.revokedPresented]) Object.freeze(part);
  return Object.freeze(r);
});

/** A session from its stored JSON (see SessionTuple); null if there is none. */
function parseSession(id: string, raw: Cell): SessionRow | null {
  if (raw === null) return null;
  const [st, createdAt, lastUsedAt, idleExpiresAt, expiresAt, , currentJti, subject, cl] = JSON.parse(raw) as SessionTuple;
  const [deviceId, userAgent, ip, platform] = cl ?? ["", "", "", ""];
  const client: ClientInfo = { deviceId, userAgent, ip, platform };
  return {
    status: st === "a" ? "active" : "revoked",
    record: { id, subject, client, createdAt, lastUsedAt, idleExpiresAt, expiresAt, currentJti },
  };
}
