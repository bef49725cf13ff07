/** domain/kept.ts: a pure function of a string with its recent results kept, bounded in count and input length. */
import { describe, expect, it } from "vitest";
import { kept } from "../../src/domain/kept.js";

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
