/**
 * What a Redis dump holds, for the keys-at-rest tests: every key under a prefix and every value in it (strings, hash
 * fields and values, list, set and sorted-set members, stream entries), and a search of those for private key
 * material: a JWK with a private member (`d`, or a symmetric `k`), a PEM private key, or any base64 run that Node.js
 * imports as a private key (PKCS#8, SEC1, PKCS#1) or any JSON object it imports as a private JWK.
 */
import { createPrivateKey } from "node:crypto";
import { Redis } from "ioredis";

/** Every key under `prefix` and every string stored in it. */
export async function dumpUnder(url: string, prefix: string): Promise<string[]> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const out: string[] = [];
  try {
    await redis.connect();
    const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 500);
      for (const key of keys) {
        out.push(key);
        const type = await redis.type(key);
        if (type === "string") out.push((await redis.get(key)) ?? "");
        else if (type === "hash") out.push(...Object.entries(await redis.hgetall(key)).flat());
        else if (type === "list") out.push(...(await redis.lrange(key, 0, -1)));
        else if (type === "set") out.push(...(await redis.smembers(key)));
        else if (type === "zset") out.push(...(await redis.zrange(key, 0, -1, "WITHSCORES")));
        else if (type === "stream") for (const [id, fields] of await redis.xrange(key, "-", "+")) out.push(id, ...fields);
        else throw new Error(`${key}: a ${type} the dump does not read`);
      }
      cursor = next;
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
  return out;
}

/** What in the strings is (or holds) a private key; empty when nothing is. */
export function privateKeyMaterial(values: readonly string[]): string[] {
  const found: string[] = [];
  for (const value of values) {
    if (/PRIVATE KEY/.test(value)) found.push(`a PEM private key in ${value.slice(0, 60)}`);
    try {
      walk(JSON.parse(value), found);
    } catch {
      // not JSON
    }
    for (const run of value.match(/[A-Za-z0-9+/_-]{40,}={0,2}/g) ?? []) {
      for (const encoding of ["base64", "base64url"] as const) {
        const der = Buffer.from(run, encoding);
        for (const type of ["pkcs8", "sec1", "pkcs1"] as const) {
          try {
            createPrivateKey({ key: der, format: "der", type });
            found.push(`a ${type} private key: ${run.slice(0, 20)}...`);
          } catch {
            // not one
          }
        }
      }
    }
  }
  return found;
}

function walk(v: unknown, found: string[]): void {
  if (Array.isArray(v)) return v.forEach((x) => walk(x, found));
  if (typeof v === "string") {
    // JSON inside JSON (a key's value is `[order, {...}]`, a stream field may hold JSON).
    if (v.startsWith("{") || v.startsWith("[")) {
      try {
        walk(JSON.parse(v), found);
      } catch {
        // not JSON
      }
    }
    return;
  }
  if (typeof v !== "object" || v === null) return;
  const o = v as Record<string, unknown>;
  if ("d" in o) found.push(`a JWK with "d" (kid ${String(o.kid)})`);
  if ("k" in o) found.push(`a JWK with "k" (kid ${String(o.kid)})`);
  if (typeof o.kty === "string") {
    try {
      createPrivateKey({ key: o as never, format: "jwk" });
      found.push(`a private JWK (kid ${String(o.kid)})`);
    } catch {
      // not a private key
    }
  }
  for (const x of Object.values(o)) walk(x, found);
}
