/** The Redis store's signing keys (KeyStore): one hash `P keys`, kid -> `[order, StoredKey]` JSON, never expiring. */
import type { KeyStore, StoredKey } from "../../domain/store.js";
import type { RedisContext, Script } from "./client.js";

/**
 * ADD_KEY. Touches: KEYS[1] = `P keys` only (declared). ARGV: kid, alg, StoredKey JSON, onlyIfAlgAbsent (1|0).
 * Guarantees: atomically, a kid is added at most once, and with onlyIfAlgAbsent no second key of an algorithm is
 * added, so of several processes starting at once on an empty store exactly one creates the key. Values are
 * `[order, StoredKey]` so listing returns the keys oldest first (keys are never deleted, so HLEN + 1 is a fresh
 * order). Returns every value.
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

const SCRIPTS: Record<string, Script> = { addKey: { numberOfKeys: 1, lua: ADD_KEY } };

export class RedisKeyStore implements KeyStore {
  private readonly key: string;

  constructor(private readonly ctx: RedisContext) {
    this.key = `${ctx.prefix}keys`;
    ctx.define(SCRIPTS);
  }

  async listKeys(): Promise<StoredKey[]> {
    return this.ctx.guard(async () => parseKeys(await this.ctx.redis.hvals(this.key)));
  }

  async addKey(key: StoredKey, onlyIfAlgAbsent: boolean): Promise<StoredKey[]> {
    return this.ctx.guard(async () => {
      const args = [key.kid, key.alg, JSON.stringify(key), onlyIfAlgAbsent ? "1" : "0"];
      return parseKeys((await this.ctx.script("addKey", [this.key], args)) as string[]);
    });
  }
}

function parseKeys(values: string[]): StoredKey[] {
  return values
    .map((v) => JSON.parse(v) as [number, StoredKey])
    .sort((a, b) => a[0] - b[0])
    .map(([, key]) => key);
}
