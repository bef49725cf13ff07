/**
 * A Redis Cluster of three primaries, each with a replica, with an authority process on it
 * (TESSERA_REDIS_CLUSTER_NODES) and TESSERA_REDIS_WAIT_REPLICAS=1: a primary is killed under a mixed load of Issue,
 * Introspect, Refresh and Revoke over many subjects (spread over every primary). While the Cluster fails over, calls
 * fail UNAVAILABLE, never anything else; afterwards they succeed again without a restart; no revocation acknowledged
 * before, during or after is lost. The time to recover is printed. And WAIT goes to the node that holds each write:
 * with one primary's replica down, a revocation of a subject on that primary fails UNAVAILABLE while one of a subject
 * on another primary is acknowledged.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statusOf, tesseraClient, type TesseraClient } from "../helpers/clients.js";
import { expectClosedAndNothingLost, mixedLoad } from "../helpers/mixed-load.js";
import { RedisCluster } from "../helpers/redis-server.js";
import { spawnAuthority, type SpawnedAuthority } from "../helpers/server.js";
import { until } from "../helpers/wait.js";
import { subjectTag } from "../../src/domain/ids.js";
import { Code, codeOf } from "../helpers/clients.js";
import { redisCli } from "../helpers/redis-server.js";

const PREFIX = "tessera-test:cluster-failover:";

let cluster: RedisCluster;
let authority: SpawnedAuthority;
let client: TesseraClient;

beforeAll(async () => {
  cluster = await RedisCluster.start(3, 1);
  authority = await spawnAuthority({
    TESSERA_REDIS_CLUSTER_NODES: cluster.seeds,
    TESSERA_REDIS_PREFIX: PREFIX,
    TESSERA_REDIS_WAIT_REPLICAS: "1",
    TESSERA_REDIS_WAIT_TIMEOUT: "300ms",
    TESSERA_STORE_TIMEOUT: "1s",
  });
  client = tesseraClient("grpc-js", authority.url);
}, 60_000);

afterAll(async () => {
  client?.close();
  await authority?.kill("SIGKILL");
  await cluster?.stop();
});

/** The port of the primary that serves `key`'s slot now. */
async function primaryOf(key: string): Promise<number> {
  const slot = Number((await redisCli(["-p", String(cluster.nodes[0]!.port), "cluster", "keyslot", key])).trim());
  const shards = await redisCli(["-p", String(cluster.nodes[0]!.port), "cluster", "slots"]);
  // redis-cli prints CLUSTER SLOTS flat: start, end, then per node ip, port, id (first node: the primary).
  const lines = shards.trim().split("\n");
  for (let i = 0; i + 4 < lines.length; i++) {
    const [start, end, , port] = [Number(lines[i]), Number(lines[i + 1]), lines[i + 2], Number(lines[i + 3])];
    if (/^\d+$/.test(lines[i]!) && /^\d+$/.test(lines[i + 1]!) && lines[i + 2] === "127.0.0.1" && slot >= start && slot <= end) return port;
  }
  throw new Error(`no primary found for slot ${slot}`);
}

describe("an authority on a Redis Cluster with replicas", () => {
  it("waits for the replica of the node that holds each revocation (and of the feed's node), not of another", async () => {
    const feedPrimary = await primaryOf(`${PREFIX}{feed}`);
    const primaries = await cluster.primaryPorts();
    const lonely = primaries.find((p) => p !== feedPrimary)!; // its replica goes down
    const subjectOn = (pred: (port: number) => boolean) => async () => {
      for (let i = 0; ; i++) if (pred(await primaryOf(`${PREFIX}{${subjectTag(`wait-${i}`)}}:idx`))) return `wait-${i}`;
    };
    const onLonely = await subjectOn((p) => p === lonely)();
    const elsewhere = await subjectOn((p) => p !== lonely)();
    const replicaPort = Number(
      /slave0:ip=[\d.]+,port=(\d+)/.exec(await redisCli(["-p", String(lonely), "info", "replication"]))?.[1],
    );
    const replica = cluster.nodes.find((n) => n.port === replicaPort)!;
    expect(replica).toBeDefined();
    const a = await client.issue({ subject: onLonely, client: { deviceId: "d" } });
    const b = await client.issue({ subject: elsewhere, client: { deviceId: "d" } });
    await replica.kill();
    try {
      expect(await codeOf(client.revoke({ sessionId: a.sessionId }))).toBe(Code.Unavailable);
      expect(await client.revoke({ sessionId: b.sessionId })).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    } finally {
      await replica.start();
    }
    // Once the replica is back, the revocation applied on the primary is acknowledged by a retry.
    await until(async () => /master_link_status:up/.test(await redisCli(["-p", String(replicaPort), "info", "replication"])), 20_000, "the replica back in sync");
    await until(async () => (await client.revoke({ sessionId: a.sessionId }).catch(() => undefined)) !== undefined, 20_000, "the retried revocation acknowledged");
    expect(await statusOf(client, a.tokens.accessToken)).toBe("REVOKED");
  }, 90_000);

  it("follows the loss of a primary under load by itself: UNAVAILABLE meanwhile, no acknowledged revocation lost", async () => {
    const load = mixedLoad(client, "cluster-failover", { subjects: 60 });
    let killedAt = Number.POSITIVE_INFINITY;
    const { revoked, failures, oks } = load;
    try {
      await until(() => revoked.length >= 20, 20_000, "revocations acknowledged before the kill");
      const primaries = await cluster.primaryPorts();
      expect(primaries).toHaveLength(3);
      const victim = cluster.nodes.find((node) => node.port === primaries[0])!;
      killedAt = Date.now();
      await victim.kill();
      // The Cluster promotes the victim's replica once the others deem it failed (cluster-node-timeout 2 s).
      await until(async () => (await cluster.primaryPorts()).filter((p) => p !== victim.port).length === 3, 30_000, "a replica promoted");
      const promotedAt = Date.now();
      await until(() => oks.filter((o) => o.op === "revoke" && o.at > promotedAt).length >= 1 && oks.some((o) => o.op === "issue" && o.at > promotedAt), 30_000, "calls succeeding after the failover");
      // The old primary comes back (as the new primary's replica), and every slot can meet WAIT 1 again.
      await victim.start();
      const afterReturn = revoked.length;
      await until(() => revoked.length >= afterReturn + 20, 30_000, "more revocations once the old primary is back");
      const firstRevoke = oks.find((o) => o.op === "revoke" && o.at > promotedAt)!.at;
      console.log(
        `cluster failover: replica promoted ${promotedAt - killedAt} ms after the kill (calls on the other primaries' slots went on); ` +
          `first revocation acknowledged after the promotion at ${firstRevoke - killedAt} ms; ` +
          `failures: ${JSON.stringify(Object.fromEntries(failures))}; revocations acknowledged: ${revoked.length}`,
      );
    } finally {
      await load.stop();
    }

    await expectClosedAndNothingLost(load, client, authority.stderr, killedAt);
  }, 150_000);
});
