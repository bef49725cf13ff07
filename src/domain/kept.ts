/**
 * A pure function of a string with its results for recent inputs kept: for the hot paths' work that the same input
 * asks for call after call (a subject's digest, a JWS header's base64url, a stored session read by Introspect).
 *
 * At most `max` results are kept, the oldest kept going first; an input longer than `maxChars` is computed every
 * time, so what is kept stays under max × maxChars characters of input. A kept result is handed to every caller of the
 * same input: a result that is an object must not be changed (freeze it in `compute`).
 *
 * `probe`: for long inputs, a short part of each that tells them apart (ProbedMap).
 *
 * Also BoundedMap, the bounded, oldest-out-first Map under it, which the verified-token cache and the Redis store's
 * member hints use too, and ProbedMap, the same for long string keys.
 */
export interface Kept<V> {
  (input: string): V;
  /** How many results are kept: never more than `max`. */
  readonly size: number;
}

export function kept<V>(max: number, maxChars: number, compute: (input: string) => V, probe?: (input: string) => string): Kept<V> {
  const results: Pick<BoundedMap<string, V>, "get" | "set" | "size"> = probe ? new ProbedMap<V>(max, probe) : new BoundedMap<string, V>(max);
  const get = (input: string): V => {
    const known = results.get(input);
    if (known !== undefined) return known;
    const out = compute(input);
    if (input.length <= maxChars) results.set(input, out);
    return out;
  };
  return Object.defineProperty(get, "size", { get: () => results.size }) as Kept<V>;
}

/**
 * A Map of at most `max` entries: setting a key it does not hold makes that key the newest, and past the bound the
 * oldest goes. A key it holds keeps its place when set again, as in a Map; delete it first to make it the newest.
 *
 * A Map's own order would tell the oldest key (`keys().next()`), but V8 leaves a deleted entry's slot in its table
 * until the table is rebuilt, and that call walks past every entry deleted since. A set with its eviction took 7.2 µs
 * at 10 000 entries and 39 µs at 100 000 that way, 0.6 and 0.9 µs here (`node` loops of 200 000; reads cost the
 * same). So the order is a queue of its own, each place stamped; a place whose stamp is no longer its key's is
 * skipped. The queue (places already passed included) is rebuilt from the Map once it is longer than twice the
 * entries and 64: it stays within a constant multiple of the bound whatever the keys do, at O(1) a set over time.
 */
export class BoundedMap<K, V> {
  private readonly entries = new Map<K, { value: V; stamp: number }>();
  private queue: K[] = [];
  private stamps: number[] = [];
  private head = 0;
  private nextStamp = 0;

  constructor(private readonly max: number) {}

  get size(): number {
    return this.entries.size;
  }

  /** The order queue's length: places passed, to be skipped and live (for tests of its bound). */
  get queued(): number {
    return this.queue.length;
  }

  get(key: K): V | undefined {
    return this.entries.get(key)?.value;
  }

  set(key: K, value: V): void {
    const held = this.entries.get(key);
    if (held !== undefined) {
      held.value = value;
      return;
    }
    const stamp = this.nextStamp++;
    this.entries.set(key, { value, stamp });
    this.queue.push(key);
    this.stamps.push(stamp);
    while (this.entries.size > this.max) {
      const oldest = this.queue[this.head]!;
      const placed = this.stamps[this.head]!;
      this.head++;
      if (this.entries.get(oldest)?.stamp === placed) this.entries.delete(oldest);
    }
    if (this.queue.length > 2 * this.entries.size + 64) this.rebuild();
  }

  /** Forgets `key`; its place in the queue is skipped when reached. */
  delete(key: K): void {
    this.entries.delete(key);
  }

  /** The queue anew from the Map, whose iteration order is the stamps' (a key is added to it exactly when stamped). */
  private rebuild(): void {
    this.queue = [];
    this.stamps = [];
    this.head = 0;
    for (const [key, { stamp }] of this.entries) {
      this.queue.push(key);
      this.stamps.push(stamp);
    }
  }
}

/**
 * A BoundedMap for long string keys, placed by a short part of each key that tells keys apart (`probe`), and the whole
 * key compared on a hit. A Map hashes a string it has not hashed before in full, every character, and the hot paths'
 * keys arrive as fresh strings on every call (decoded from a request, read from Redis): a Map lookup cost about 1.5 ns
 * a character (`node` loops of 500 000, keys fresh from a TextDecoder), 0.88 µs for a 600-character token, 0.11 µs
 * by its last 32 characters with the comparison. Two keys with the same probe share one place, the later set wins and
 * the other is a miss: the probe decides how well the map caches, never what it answers.
 */
export class ProbedMap<V> {
  private readonly map: BoundedMap<string, { key: string; value: V }>;

  constructor(
    max: number,
    private readonly probe: (key: string) => string,
  ) {
    this.map = new BoundedMap(max);
  }

  get size(): number {
    return this.map.size;
  }

  get(key: string): V | undefined {
    const held = this.map.get(this.probe(key));
    return held !== undefined && held.key === key ? held.value : undefined;
  }

  set(key: string, value: V): void {
    this.map.set(this.probe(key), { key, value });
  }
}
