/**
 * The Redis store's signing keys (KeyStore): one hash `P keys`: kid -> `[order, StoredKey]` JSON (its private part
 * sealed under the key-encryption key when one is set); `~seq` -> the last order handed out; `!<kid>` -> when that key
 * was revoked (kept apart, so no script re-encodes a key's JSON).
 * Never expiring; keys no token can need any more are dropped when a rotation adds a key.
 */
import type { StoredPrivateKey } from "../../domain/key-encryption.js";
import { samePrivateKey, type KeyStore, type StoredKey } from "../../domain/store.js";
import type { RedisContext, Script } from "./client.js";
import type { RedisRevocationFeed } from "./feed.js";

/**
 * ADD_KEY. Touches: KEYS[1] = `P keys` only (declared). ARGV: kid, StoredKey JSON, expected newest kid ('' for none),
 * then the kids to drop.
 * Guarantees: atomically, the key is added only if the last key added (the greatest order) is the expected one, so of
 * several processes rotating at once exactly one adds; the dropped keys go with their revocation marks. Returns
 * {added (1|0), every value}.
 */
const ADD_KEY = `
local newest, top = '', -1
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f = all[i]
  if string.sub(f, 1, 1) ~= '~' and string.sub(f, 1, 1) ~= '!' then
    local order = tonumber(string.match(all[i + 1], '^%[(%d+),'))
    if order and order > top then top, newest = order, f end
  end
end
local added = 0
if newest == ARGV[3] and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i], '!' .. ARGV[i]) end
  local seq = redis.call('HINCRBY', KEYS[1], '~seq', 1)
  if seq <= top then
    seq = top + 1
    redis.call('HSET', KEYS[1], '~seq', seq)
  end
  redis.call('HSET', KEYS[1], ARGV[1], '[' .. seq .. ',' .. ARGV[2] .. ']')
  added = 1
end
return { added, redis.call('HGETALL', KEYS[1]) }
`;

/**
 * REVOKE_KEY. Touches: KEYS[1] = `P keys` only (declared). ARGV: kid, at.
 * Guarantees: a kept key gets its revocation mark once. Returns 1 (marked now), 0 (marked before), -1 (no such key).
 */
const REVOKE_KEY = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
return redis.call('HSETNX', KEYS[1], '!' .. ARGV[1], ARGV[2])
`;

/**
 * REPLACE_KEY. Touches: KEYS[1] = `P keys` only (declared). ARGV: kid, the value read (`[order, StoredKey]` JSON), the
 * value to put in its place.
 * Guarantees: a compare-and-set of one key's value: replaced only if it is still exactly the one read, so of several
 * processes replacing a key's private part at once none undoes another's work (the TypeScript builds the new value from
 * the one read, so the order and every other field stay; the revocation mark is a field of its own). Returns 1 or 0.
 */
const REPLACE_KEY = `
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`;

const SCRIPTS: Record<string, Script> = {
  addKey: { numberOfKeys: 1, lua: ADD_KEY },
  revokeKey: { numberOfKeys: 1, lua: REVOKE_KEY },
  replaceKey: { numberOfKeys: 1, lua: REPLACE_KEY },
};

export class RedisKeyStore implements KeyStore {
  private readonly key: string;

  constructor(
    private readonly ctx: RedisContext,
    private readonly feed: RedisRevocationFeed,
  ) {
    this.key = `${ctx.prefix}keys`;
    ctx.define(SCRIPTS);
  }

  async listKeys(): Promise<StoredKey[]> {
    return this.ctx.guard(async () => parseKeys(await this.ctx.redis.hgetall(this.key)));
  }

  async addKey(key: StoredKey, opts: { expectNewest: string | null; drop?: readonly string[] }) {
    return this.ctx.guard(async () => {
      const args = [key.kid, JSON.stringify(key), opts.expectNewest ?? "", ...(opts.drop ?? [])];
      const [added, flat] = (await this.ctx.script("addKey", [this.key], args)) as [number, string[]];
      const fields: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
      return { added: added === 1, keys: parseKeys(fields) };
    });
  }

  async revokeKey(q: { kid: string; at: number; until: number; reason: string }): Promise<boolean> {
    return this.ctx.guard(async () => {
      const marked = (await this.ctx.script("revokeKey", [this.key], [q.kid, q.at])) as number;
      if (marked === -1) return false;
      await this.feed.publish(q.at, [{ kind: "key", subject: "", target: q.kid, sessions: [], at: q.at, until: q.until, reason: q.reason }], this.key);
      return marked === 1;
    });
  }

  async replacePrivateKey(q: { kid: string; from: StoredPrivateKey; to: StoredPrivateKey }): Promise<boolean> {
    if (q.kid.startsWith("~") || q.kid.startsWith("!")) return false; // bookkeeping fields, never a key
    return this.ctx.guard(async () => {
      const read = await this.ctx.redis.hget(this.key, q.kid);
      if (read === null) return false;
      const [order, key] = JSON.parse(read) as [number, StoredKey];
      if (!samePrivateKey(key.privateJwk, q.from)) return false;
      const next = JSON.stringify([order, { ...key, privateJwk: q.to }]);
      return ((await this.ctx.script("replaceKey", [this.key], [q.kid, read, next])) as number) === 1;
    });
  }
}

/** The keys in the order added, each with its revocation mark. */
function parseKeys(fields: Record<string, string>): StoredKey[] {
  const keys: [number, StoredKey][] = [];
  for (const [field, value] of Object.entries(fields)) {
    if (field.startsWith("~") || field.startsWith("!")) continue;
    const [order, key] = JSON.parse(value) as [number, StoredKey];
    const revokedAt = fields[`!${field}`];
    keys.push([order, revokedAt === undefined ? key : { ...key, revokedAt: Number(revokedAt) }]);
  }
  return keys.sort((a, b) => a[0] - b[0]).map(([, key]) => key);
}
