/** The memory store's signing keys (KeyStore): a list in the order added. */
import type { KeyStore, StoredKey } from "../../domain/store.js";

export class MemoryKeyStore implements KeyStore {
  private keys: StoredKey[] = [];

  async listKeys(): Promise<StoredKey[]> {
    return [...this.keys];
  }

  async addKey(key: StoredKey, onlyIfAlgAbsent: boolean): Promise<StoredKey[]> {
    const blocked = onlyIfAlgAbsent && this.keys.some((k) => k.alg === key.alg);
    if (!blocked && !this.keys.some((k) => k.kid === key.kid)) this.keys.push(key);
    return [...this.keys];
  }
}
