/**
 * A pure function of a string with its results for recent inputs kept: for the hot paths' work that the same input
 * asks for call after call (a subject's digest, a JWS header's base64url, a stored session read by Introspect).
 *
 * At most `max` results are kept, the oldest kept going first; an input longer than `maxChars` is computed every
 * time, so what is kept stays under max × maxChars characters of input. A kept result is handed to every caller of the
 * same input: a result that is an object must not be changed (freeze it in `compute`).
 */
export interface Kept<V> {
  (input: string): V;
  /** How many results are kept: never more than `max`. */
  readonly size: number;
}

export function kept<V>(max: number, maxChars: number, compute: (input: string) => V): Kept<V> {
  const results = new Map<string, V>();
  const get = (input: string): V => {
    const known = results.get(input);
    if (known !== undefined) return known;
    const out = compute(input);
    if (input.length <= maxChars) {
      results.set(input, out);
      if (results.size > max) results.delete(results.keys().next().value!);
    }
    return out;
  };
  return Object.defineProperty(get, "size", { get: () => results.size }) as Kept<V>;
}
