/**
 * Introspect's one read on a Redis Cluster (RedisContext.mgetInSlot): sent straight to the primary that holds the
 * slot, not through the Cluster client's routing, the reads of one turn in one write to that node; and when the slot
 * has moved to another node since the client last read the slot map (the old node answers MOVED), handed to the
 * Cluster client, which follows the redirection and reads the right values. And a batch of scripts (RedisContext.batch)
 * runs the scripts of one slot in the order queued. On a Cluster of the test's own, since the test moves a slot.
 */
import calculateSlot from "cluster-key-slot";
import type { Cluster } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createRedisClient } from "../../src/store/redis.js";
import { RedisContext } from "../../src/store/redis/client.js";
import { countWrites, RedisCluster, redisCli } from "../helpers/redis-server.js";

let cluster: RedisCluster;
let client: Cluster;
let ctx: RedisContext;

beforeAll(async () => {
  cluster = await RedisCluster.start(3);
  client = createRedisClient({ cluster: cluster.nodes.map((n) => ({ host: "127.0.0.1", port: n.port })) }, { commandTimeoutMs: 2000 }) as Cluster;
  ctx = new RedisContext(client, { prefix: "t:" });
  await ctx.ping();
}, 60_000);

afterAll(async () => {
  client?.disconnect();
  await cluster?.stop();
});

const cli = (port: number, ...args: string[]) => redisCli(["-p", String(port), ...args]);

/** The port of the node that holds a slot, by the Cluster's own account. */
async function ownerOf(slot: number): Promise<number> {
  const slots = JSON.parse(JSON.stringify(await client.cluster("SLOTS"))) as [number, number, [string, number]][];
  const range = slots.find(([from, to]) => slot >= from && slot <= to)!;
  return range[2][1];
}

describe("mgetInSlot on a Redis Cluster", () => {
  it("reads from the slot's primary directly, not through the Cluster client", async () => {
    const keys = ["t:{alice}:j:1", "t:{alice}:s:1", "t:{alice}:risk"];
    await client.set(keys[1]!, "session");
    await client.set(keys[2]!, "risk");
    const owner = await ownerOf(calculateSlot(keys[0]!));
    const mgets = async () => Number(/cmdstat_mget:calls=(\d+)/.exec(await cli(owner, "info", "commandstats"))?.[1] ?? 0);
    const before = await mgets();
    const routed = vi.spyOn(client, "mget");
    try {
      expect(await ctx.mgetInSlot(keys)).toEqual([null, "session", "risk"]);
      expect(routed).not.toHaveBeenCalled();
      expect(await mgets()).toBe(before + 1); // it reached the slot's primary
    } finally {
      routed.mockRestore();
    }
  });

  it("writes the reads of one turn to a node in one write", async () => {
    const keys = (i: number) => [`t:{carol}:j:${i}`, `t:{carol}:s:${i}`, "t:{carol}:risk"];
    await client.set("t:{carol}:s:3", "three");
    await ctx.mgetInSlot(keys(0)); // the slot map is known
    const owner = await ownerOf(calculateSlot(keys(0)[0]!));
    const node = client.nodes("master").find((n) => n.options.port === owner)!;
    const writes = countWrites(node.stream);
    try {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => ctx.mgetInSlot(keys(i))));
      expect(answers[3]).toEqual([null, "three", null]);
      expect(answers.filter((a) => a[1] === null)).toHaveLength(19);
      expect(writes.count).toBe(1);
    } finally {
      writes.restore();
    }
  });

  it("hands the read to the Cluster client when the slot has moved (MOVED), and gets the moved values", async () => {
    const keys = ["t:{bob}:j:1", "t:{bob}:s:1", "t:{bob}:risk"];
    await client.set(keys[1]!, "session-of-bob");
    const slot = calculateSlot(keys[0]!);
    const from = await ownerOf(slot);
    const to = cluster.nodes.map((n) => n.port).find((p) => p !== from)!;
    expect(await ctx.mgetInSlot(keys)).toEqual([null, "session-of-bob", null]); // the client knows the slot map now

    // Move the slot with its key, as redis-cli --cluster reshard does, behind the client's back.
    const fromId = (await cli(from, "cluster", "myid")).trim();
    const toId = (await cli(to, "cluster", "myid")).trim();
    await cli(to, "cluster", "setslot", String(slot), "importing", fromId);
    await cli(from, "cluster", "setslot", String(slot), "migrating", toId);
    await cli(from, "migrate", "127.0.0.1", String(to), "", "0", "5000", "keys", keys[1]!);
    for (const n of cluster.nodes) await cli(n.port, "cluster", "setslot", String(slot), "node", toId);

    const routed = vi.spyOn(client, "mget");
    try {
      expect(await ctx.mgetInSlot(keys)).toEqual([null, "session-of-bob", null]);
      expect(routed).toHaveBeenCalledTimes(1);
    } finally {
      routed.mockRestore();
    }
    expect(await ownerOf(slot)).toBe(to);
  });
});

describe("a batch of scripts on a Redis Cluster", () => {
  // RPUSH of ARGV[1] to KEYS[1]: the list tells the order the scripts ran in.
  beforeAll(() => ctx.define({ pushInOrder: { numberOfKeys: 1, lua: "return redis.call('RPUSH', KEYS[1], ARGV[1])" } }));

  it("runs one slot's scripts in the order queued, even when the first goes out late; another slot's do not wait", async () => {
    const list = `t:{dave}:order:${Date.now()}`;
    const other = `t:{erin}:order:${Date.now()}`;
    expect(calculateSlot(list)).not.toBe(calculateSlot(other));
    // The first script of the batch reaches Redis 100 ms late, as one the Cluster client sends again after a
    // redirection, a failover's retry or a NOSCRIPT does; the scripts sent meanwhile record when they went.
    const sent: string[] = [];
    const real = ctx.script.bind(ctx);
    let first = true;
    const spy = vi.spyOn(ctx, "script").mockImplementation(async (name, keys, args) => {
      sent.push(`${keys[0] === list ? "list" : "other"}:${String(args[0])}`);
      if (first) {
        first = false;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return real(name, keys, args);
    });
    try {
      const batch = ctx.batch();
      batch.script("pushInOrder", [list], ["1"]);
      batch.script("pushInOrder", [list], ["2"]);
      batch.script("pushInOrder", [other], ["x"]);
      batch.script("pushInOrder", [list], ["3"]);
      const results = await batch.exec();
      expect(results).toEqual([
        [null, 1],
        [null, 2],
        [null, 1],
        [null, 3],
      ]);
    } finally {
      spy.mockRestore();
    }
    expect(await client.lrange(list, 0, -1)).toEqual(["1", "2", "3"]);
    // The other slot's script went out at once, before the held-back ones of the first slot.
    expect(sent).toEqual(["list:1", "other:x", "list:2", "list:3"]);
  });
});
