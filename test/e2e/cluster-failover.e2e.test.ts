/**
 * A Redis Cluster of three primaries, each with a replica, with an authority process on it
 * (TESSERA_REDIS_CLUSTER_NODES) and TESSERA_REDIS_WAIT_REPLICAS=1: a primary is killed under a mixed load of Issue,
 * Introspect, Refresh and Revoke over many subjects (spread over every primary). While the Cluster fails over, calls
 * fail UNAVAILABLE, never anything else; afterwards they succeed again without a restart; no revocation acknowledged
 * before, during or after is lost. The time to recover is printed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, statusOf, tesseraClient, type TesseraClient } from "../helpers/clients.js";
import { RedisCluster } from "../helpers/redis-server.js";
import { spawnAuthority, type SpawnedAuthority } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const PHONE = { deviceId: "phone-cf", userAgent: "tessera-e2e/1.0" };

let cluster: RedisCluster;
let authority: SpawnedAuthority;
let client: TesseraClient;

beforeAll(async () => {
  cluster = await RedisCluster.start(3, 1);
  authority = await spawnAuthority({
    TESSERA_REDIS_CLUSTER_NODES: cluster.seeds,
    TESSERA_REDIS_PREFIX: "tessera-test:cluster-failover:",
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

describe("an authority on a Redis Cluster with replicas", () => {
  it("follows the loss of a primary under load by itself: UNAVAILABLE meanwhile, no acknowledged revocation lost", async () => {
    const revoked: string[] = [];
    const failures = new Map<string, number>();
    const oks: { op: string; at: number }[] = [];
    let stop = false;
    let n = 0;
    const step = async <T>(op: string, call: () => Promise<T>): Promise<T> => {
      const result = await call();
      oks.push({ op, at: Date.now() });
      return result;
    };
    const worker = async (w: number) => {
      while (!stop) {
        try {
          const issued = await step("issue", () => client.issue({ subject: `cluster-failover-${w}-${n++ % 60}`, client: PHONE }));
          await step("introspect", () => client.introspect(issued.tokens.accessToken));
          const next = await step("refresh", () => client.refresh(issued.tokens.refreshToken, PHONE));
          const r = await step("revoke", () => client.revoke({ sessionId: issued.sessionId }));
          if (r.sessionsRevoked === 1) revoked.push(next.tokens.accessToken);
        } catch (err) {
          const code = Code[ConnectError.from(err).code];
          failures.set(code, (failures.get(code) ?? 0) + 1);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    try {
      await until(() => revoked.length >= 20, 20_000, "revocations acknowledged before the kill");
      const primaries = await cluster.primaryPorts();
      expect(primaries).toHaveLength(3);
      const victim = cluster.nodes.find((node) => node.port === primaries[0])!;
      const killedAt = Date.now();
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
      stop = true;
      await Promise.all(workers);
    }

    expect([...failures.keys()].filter((c) => c !== "Unavailable")).toEqual([]);
    expect(failures.get("Unavailable") ?? 0).toBeGreaterThan(0);
    const states = await Promise.all(revoked.map((t) => statusOf(client, t)));
    expect(states.filter((s) => s !== "REVOKED")).toEqual([]);
    expect(authority.stderr.join("\n")).not.toMatch(/uncaught|unhandled/i);
  }, 150_000);
});
