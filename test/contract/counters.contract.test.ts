/**
 * The CounterStore contract (src/domain/store.ts), run against every backend: fixed-window counts per key, blocks,
 * forgetting, and several counts in one read, the same in memory and on Redis (where every process shares them).
 */
import { beforeEach, describe, expect, it } from "vitest";
import type { CounterStore } from "../../src/domain/store.js";
import { until } from "../helpers/wait.js";
import { BACKENDS } from "./backends.js";
import { storesFrom } from "./fixtures.js";

for (const { name, make } of BACKENDS) {
  describe(name, () => {
    let store: CounterStore;
    const stores = storesFrom(make);
    beforeEach(async () => {
      store = (await stores.fresh()).counters;
    });

    describe("counters", () => {
      it("allows `points` per key and window, then refuses with the time left in the window; keys count apart", async () => {
        const c = store.counters("calls", 3, 60_000);
        const first = await Promise.all([c.consume("a"), c.consume("a"), c.consume("a")]);
        expect(first.map((r) => r.allowed)).toEqual([true, true, true]);
        const refused = await c.consume("a");
        expect(refused.allowed).toBe(false);
        expect(refused.retryAfterMs).toBeGreaterThan(50_000);
        expect(refused.retryAfterMs).toBeLessThanOrEqual(60_000);
        expect((await c.consume("b")).allowed).toBe(true);
        expect(await c.get("a")).toMatchObject({ count: 4 });
        expect(await c.get("never")).toBeNull();
      });

      it("families with the same keys count apart", async () => {
        const x = store.counters("x", 1, 60_000);
        const y = store.counters("y", 1, 60_000);
        expect((await x.consume("k")).allowed).toBe(true);
        expect((await y.consume("k")).allowed).toBe(true);
        expect((await x.consume("k")).allowed).toBe(false);
      });

      it("add counts without a limit; block holds a key over its limit for the time given; delete forgets it", async () => {
        const c = store.counters("fail", 2, 60_000);
        expect(await c.add("s")).toBe(1);
        expect(await c.add("s")).toBe(2);
        expect(await c.add("s")).toBe(3);
        await c.block("s", 5_000);
        const held = await c.get("s");
        expect(held!.count).toBeGreaterThan(2);
        expect(held!.retryAfterMs).toBeGreaterThan(3_000);
        expect(held!.retryAfterMs).toBeLessThanOrEqual(5_000);
        expect((await c.consume("s")).allowed).toBe(false);
        expect((await store.countMany([[c, "s"]]))[0]).toBeGreaterThan(2); // the refresh lockout reads a block so
        await c.delete("s");
        expect(await c.get("s")).toBeNull();
        expect((await c.consume("s")).allowed).toBe(true);
      });

      it("a window ends by itself", async () => {
        const c = store.counters("short", 1, 1_000);
        expect((await c.consume("k")).allowed).toBe(true);
        expect((await c.consume("k")).allowed).toBe(false);
        await until(async () => (await c.consume("k")).allowed, 3_000, "the 1 s window to end");
      });

      it("countMany reads counts of several families at once, 0 for nothing counted", async () => {
        const a = store.counters("a", 10, 60_000);
        const b = store.counters("b", 10, 60_000);
        await a.add("k1");
        await a.add("k1");
        await b.add("k2");
        expect(await store.countMany([[a, "k1"], [b, "k2"], [a, "none"], [b, "k1"]])).toEqual([2, 1, 0, 0]);
        expect(await store.countMany([])).toEqual([]);
      });
    });
  });
}
