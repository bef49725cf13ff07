/**
 * The pipeline's bookkeeping of calls in flight (src/api/pipeline.ts InFlight): the count, ending every call at
 * shutdown, waiting for the last one, whatever order calls finish in.
 */
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { InFlight, Pipeline, type Call, type CallSignal, type Entry } from "../../src/api/pipeline.js";
import { createLogger } from "../../src/observability/logger.js";

function call(): Call {
  const signal: CallSignal = { aborted: false, reason: undefined, addEventListener() {}, removeEventListener() {} };
  return { method: TokenService.method.introspect, header: { get: () => null }, values: createContextValues(), message: undefined, signal };
}

/** A handler that settles when told to. */
function pending() {
  let resolve!: (v: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  return { resolve, handler: () => promise };
}

describe("Pipeline calls in flight", () => {
  it("counts calls as they start and finish in any order, and idle() waits for the last", async () => {
    const pipeline = new Pipeline({ logger: createLogger("silent") });
    const calls = [pending(), pending(), pending(), pending()];
    const results = calls.map((c) => pipeline.run(call(), c.handler));
    expect(pipeline.inFlight).toBe(4);
    let idle = false;
    void pipeline.idle().then(() => (idle = true));
    // Middle, last, first: every removal keeps the rest reachable.
    for (const [i, left] of [[1, 3], [3, 2], [0, 1]] as const) {
      calls[i]!.resolve(`r${i}`);
      await expect(results[i]).resolves.toBe(`r${i}`);
      expect(pipeline.inFlight).toBe(left);
      expect(idle).toBe(false);
    }
    calls[2]!.resolve("r2");
    await expect(results[2]).resolves.toBe("r2");
    await expect.poll(() => idle).toBe(true);
    expect(pipeline.inFlight).toBe(0);
  });

  it("cancelAll ends exactly the calls still in flight, once each; their later outcomes are dropped", async () => {
    const pipeline = new Pipeline({ logger: createLogger("silent") });
    const calls = Array.from({ length: 5 }, pending);
    const results = calls.map((c) => pipeline.run(call(), c.handler));
    calls[2]!.resolve("done before");
    await expect(results[2]).resolves.toBe("done before");
    pipeline.cancelAll(new ConnectError("shutting down", Code.Unavailable));
    for (const i of [0, 1, 3, 4]) await expect(results[i]).rejects.toMatchObject({ code: Code.Unavailable, rawMessage: "shutting down" });
    expect(pipeline.inFlight).toBe(0);
    calls[0]!.resolve("too late"); // settles nothing any more
    pipeline.cancelAll(new ConnectError("again", Code.Unavailable)); // nothing left to end
    expect(pipeline.inFlight).toBe(0);
    // New calls are tracked as before.
    const next = pending();
    const result = pipeline.run(call(), next.handler);
    expect(pipeline.inFlight).toBe(1);
    next.resolve("after");
    await expect(result).resolves.toBe("after");
    expect(pipeline.inFlight).toBe(0);
  });
});

describe("InFlight", () => {
  it("holds exactly the entries added and not yet deleted, through a long random sequence", () => {
    const list = new InFlight();
    const live = new Map<Entry, () => void>();
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let step = 0; step < 2000; step++) {
      if (live.size === 0 || random() < 0.55) {
        const end = () => {};
        live.set(list.add(end), end);
      } else {
        const entries = [...live.keys()];
        const entry = entries[Math.floor(random() * entries.length)]!;
        list.delete(entry);
        list.delete(entry); // twice: the second does nothing
        live.delete(entry);
      }
      expect(list.size).toBe(live.size);
    }
    expect(new Set(list.ends())).toEqual(new Set(live.values()));
    expect(list.ends()).toHaveLength(live.size);
    for (const entry of live.keys()) list.delete(entry);
    expect(list.ends()).toEqual([]);
    expect(list.size).toBe(0);
  });
});
