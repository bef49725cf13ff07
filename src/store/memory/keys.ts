/** The memory store's signing keys (KeyStore): a list in the order added; revoking appends to the feed part. */
import type { StoredPrivateKey } from "../../domain/key-encryption.js";
import { samePrivateKey, type KeyStore, type StoredKey } from "../../domain/store.js";
import type { MemoryRevocationFeed } from "./feed.js";

export class MemoryKeyStore implements KeyStore {
  private keys: StoredKey[] = [];

  constructor(private readonly feed: MemoryRevocationFeed) {}

  async listKeys(): Promise<StoredKey[]> {
    return this.keys.map((k) => ({ ...k }));
  }

  async addKey(key: StoredKey, opts: { expectNewest: string | null; drop?: readonly string[] }) {
    const newest = this.keys.at(-1)?.kid ?? null;
    const added = newest === opts.expectNewest && !this.keys.some((k) => k.kid === key.kid);
    if (added) {
      const drop = new Set(opts.drop ?? []);
      this.keys = [...this.keys.filter((k) => !drop.has(k.kid)), { ...key }];
    }
    return { added, keys: await this.listKeys() };
  }

  async revokeKey(q: { kid: string; at: number; until: number; reason: string }): Promise<boolean> {
    const key = this.keys.find((k) => k.kid === q.kid);
    if (!key) return false;
    const fresh = key.revokedAt === undefined;
    if (fresh) key.revokedAt = q.at;
    this.feed.append({ kind: "key", subject: "", target: q.kid, sessions: [], at: q.at, until: q.until, reason: q.reason }, q.at);
    return fresh;
  }

  async replacePrivateKey(q: { kid: string; from: StoredPrivateKey; to: StoredPrivateKey }): Promise<boolean> {
    const i = this.keys.findIndex((k) => k.kid === q.kid);
    const key = this.keys[i];
    if (!key || !samePrivateKey(key.privateJwk, q.from)) return false;
    this.keys[i] = { ...key, privateJwk: q.to };
    return true;
  }
}
