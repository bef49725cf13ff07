/**
 * domain/kept.ts: a pure function of a string with its recent results kept, bounded in count and input length; and
 * BoundedMap, the oldest-out-first Map under it, and ProbedMap, the same placed by a part of each key.
 */
import { describe, expect, it } from "vitest";
import { BoundedMap, kept, ProbedMap } from "../../src/domain/kept.js";

describe("kept", () => {
  it("computes an input once while it is kept, and hands every caller the same result", () => {
    const seen: string[] = [];
    const f = kept(4, 100, (input) => {
      seen.push(input);
      return { length: input.length };
    });
    const a = f("abc");
    expect(f("abc")).toBe(a);
    expect(a).toEqual({ length: 3 });
    expect(seen).toEqual(["abc"]);
    expect(f.size).toBe(1);
  });

  it("keeps at most `max` results, forgetting the oldest kept first, and still answers the forgotten ones", () => {
    const seen: string[] = [];
    const f = kept(3, 100, (input) => {
      seen.push(input);
      return input.toUpperCase();
    });
    for (const x of ["a", "b", "c", "d"]) expect(f(x)).toBe(x.toUpperCase());
    expect(f.size).toBe(3);
    expect(f("b")).toBe("B"); // kept
    expect(f("a")).toBe("A"); // forgotten: computed again
    expect(seen).toEqual(["a", "b", "c", "d", "a"]);
    expect(f.size).toBe(3);
  });

  it("computes inputs longer than `maxChars` every time, without keeping them", () => {
    let calls = 0;
    const f = kept(8, 5, (input) => {
      calls++;
      return input.length;
    });
    expect(f("123456")).toBe(6);
    expect(f("123456")).toBe(6);
    expect(calls).toBe(2);
    expect(f.size).toBe(0);
    expect(f("12345")).toBe(5);
    expect(f("12345")).toBe(5);
    expect(calls).toBe(3);
  });

  it("keeps nothing when computing throws, and throws again for the same input", () => {
    let calls = 0;
    const f = kept(8, 100, (input) => {
      calls++;
      return JSON.parse(input) as unknown;
    });
    expect(() => f("{")).toThrow(SyntaxError);
    expect(() => f("{")).toThrow(SyntaxError);
    expect(calls).toBe(2);
    expect(f.size).toBe(0);
  });
});

describe("BoundedMap", () => {
  const contents = <V>(m: BoundedMap<string, V>, keys: string[]) => keys.filter((k) => m.get(k) !== undefined);

  it("holds at most `max` entries, the one set longest ago going first", () => {
    const m = new BoundedMap<string, number>(3);
    for (const [i, k] of ["a", "b", "c", "d", "e"].entries()) m.set(k, i);
    expect(m.size).toBe(3);
    expect(contents(m, ["a", "b", "c", "d", "e"])).toEqual(["c", "d", "e"]);
    expect(m.get("e")).toBe(4);
  });

  it("a key set again keeps its place and takes the new value; deleted and set, it is the newest", () => {
    const m = new BoundedMap<string, number>(3);
    for (const k of ["a", "b", "c"]) m.set(k, 0);
    m.set("a", 1); // still the oldest
    m.set("d", 0);
    expect(contents(m, ["a", "b", "c", "d"])).toEqual(["b", "c", "d"]);
    m.delete("b");
    expect(m.size).toBe(2);
    m.set("b", 2); // the newest now
    m.set("e", 0);
    expect(contents(m, ["a", "b", "c", "d", "e"])).toEqual(["b", "d", "e"]);
    expect(m.get("b")).toBe(2);
  });

  it("keeps nothing with a bound of 0", () => {
    const m = new BoundedMap<string, number>(0);
    m.set("a", 1);
    expect(m.size).toBe(0);
    expect(m.get("a")).toBeUndefined();
  });

  it("keeps its order queue within a multiple of the bound, whether keys churn or stay", () => {
    const churn = new BoundedMap<string, number>(100);
    for (let i = 0; i < 50_000; i++) churn.set(`k${i}`, i); // one eviction a set
    expect(churn.size).toBe(100);
    expect(churn.queued).toBeLessThanOrEqual(2 * 100 + 64 + 1);
    const moving = new BoundedMap<string, number>(100);
    for (let i = 0; i < 50_000; i++) {
      const k = `k${i % 3}`; // three keys made the newest over and over: no eviction, only skipped places
      moving.delete(k);
      moving.set(k, i);
    }
    expect(moving.size).toBe(3);
    expect(moving.queued).toBeLessThanOrEqual(2 * 3 + 64 + 1);
  });

  it("answers as a Map evicting its first key does, over random sets, deletes and reads", () => {
    let seed = 7;
    const random = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (const max of [1, 2, 5, 40]) {
      const m = new BoundedMap<string, number>(max);
      const model = new Map<string, number>();
      for (let i = 0; i < 20_000; i++) {
        const key = `k${random(3 * max + 2)}`;
        const op = random(10);
        if (op < 6) {
          m.set(key, i);
          if (model.has(key)) model.set(key, i);
          else {
            model.set(key, i);
            if (model.size > max) model.delete(model.keys().next().value!);
          }
        } else if (op < 8) {
          m.delete(key);
          model.delete(key);
        } else {
          expect(m.get(key)).toBe(model.get(key));
        }
        expect(m.size).toBe(model.size);
      }
      for (const key of model.keys()) expect(m.get(key)).toBe(model.get(key));
    }
  });
});

describe("ProbedMap", () => {
  const tail = (key: string) => key.slice(-2);

  it("answers only for the very key that was set, whatever shares its probe", () => {
    const m = new ProbedMap<number>(8, tail);
    m.set("first-xy", 1);
    expect(m.get("first-xy")).toBe(1);
    expect(m.get(["first", "xy"].join("-"))).toBe(1); // an equal string made apart: the same key
    expect(m.get("other-xy")).toBeUndefined(); // same probe, another key: a miss, never the other's value
    expect(m.get("first-xz")).toBeUndefined();
  });

  it("two keys with one probe share a place: the later set wins, the earlier is a miss", () => {
    const m = new ProbedMap<number>(8, tail);
    m.set("a-xy", 1);
    m.set("b-xy", 2);
    expect(m.size).toBe(1);
    expect(m.get("b-xy")).toBe(2);
    expect(m.get("a-xy")).toBeUndefined();
  });

  it("holds at most `max` keys, the one set longest ago going first", () => {
    const m = new ProbedMap<number>(2, tail);
    for (const [i, k] of ["k-01", "k-02", "k-03"].entries()) m.set(k, i);
    expect(m.size).toBe(2);
    expect(["k-01", "k-02", "k-03"].map((k) => m.get(k))).toEqual([undefined, 1, 2]);
  });

  it("serves kept() with a probe: one computation per input, never another input's result", () => {
    const seen: string[] = [];
    const f = kept(
      8,
      100,
      (input) => {
        seen.push(input);
        return input.toUpperCase();
      },
      tail,
    );
    expect(f("one-zz")).toBe("ONE-ZZ");
    expect(f("one-zz")).toBe("ONE-ZZ");
    expect(f("two-zz")).toBe("TWO-ZZ"); // shares the probe: computed, and now in the place
    expect(f("one-zz")).toBe("ONE-ZZ");
    expect(seen).toEqual(["one-zz", "two-zz", "one-zz"]);
    expect(f.size).toBe(1);
  });
});
