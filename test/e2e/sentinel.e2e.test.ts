/**
 * Redis behind Sentinel (a primary, a replica, three sentinels), with an authority process on it
 * (TESSERA_REDIS_SENTINELS) and TESSERA_REDIS_WAIT_REPLICAS=1: the primary is killed under a mixed load of Issue,
 * Introspect, Refresh and Revoke. While the failover lasts calls fail UNAVAILABLE (fail closed), never anything else;
 * afterwards they succeed again without a restart; no revocation acknowledged before, during or after is lost (the
 * replica promoted holds it). The time to recover is printed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tesseraClient, type TesseraClient } from "../helpers/clients.js";
import { expectClosedAndNothingLost, mixedLoad } from "../helpers/mixed-load.js";
import { RedisSentinelSet } from "../helpers/redis-server.js";
import { spawnAuthority, type SpawnedAuthority } from "../helpers/server.js";
import { until } from "../helpers/wait.js";


let set: RedisSentinelSet;
let authority: SpawnedAuthority;
let client: TesseraClient;

beforeAll(async () => {
  set = await RedisSentinelSet.start();
  authority = await spawnAuthority({
    TESSERA_REDIS_SENTINELS: set.seeds,
    TESSERA_REDIS_SENTINEL_MASTER: set.master,
    TESSERA_REDIS_PREFIX: "tessera-test:sentinel:",
    TESSERA_REDIS_WAIT_REPLICAS: "1",
    TESSERA_REDIS_WAIT_TIMEOUT: "300ms",
    TESSERA_STORE_TIMEOUT: "1s",
    TESSERA_LOG_LEVEL: "info",
  });
  client = tesseraClient("grpc-js", authority.url);
}, 60_000);

afterAll(async () => {
  client?.close();
  await authority?.kill("SIGKILL");
  await set?.stop();
});

describe("an authority on Redis behind Sentinel", () => {
  it("says so at start", () => {
    expect(authority.stdout.join("\n")).toMatch(/"store":"redis","mode":"sentinel"/);
  });

  it("follows a failover under load by itself: UNAVAILABLE meanwhile, no acknowledged revocation lost", async () => {
    const load = mixedLoad(client, "sentinel", { subjects: 50 });
    let killedAt = Number.POSITIVE_INFINITY;
    const { revoked, failures, oks } = load;
    try {
      await until(() => revoked.length >= 20, 20_000, "revocations acknowledged before the kill");
      const oldPrimary = set.primary.port;
      killedAt = Date.now();
      await set.primary.kill();
      // The old primary restarts empty (no persistence) and a master until the sentinels make it a replica (they check
      // a returning node every 10 s): it restarts only once every sentinel names the new primary, else a client that
      // asked a stale sentinel would write to it, and lose what it wrote when it resyncs.
      await until(async () => ![undefined, oldPrimary].includes(await set.primaryPort()), 30_000, "every sentinel to name the promoted replica");
      const promotedAt = Date.now();
      // Reads and writes that need no replica succeed on the new primary, with no restart of the authority.
      await until(() => oks.some((o) => o.op === "issue" && o.at > promotedAt), 20_000, "an Issue on the new primary");
      // The old primary comes back; the sentinels make it the new primary's replica, and WAIT 1 is met again.
      await set.primary.start();
      await until(() => oks.some((o) => o.op === "revoke" && o.at > promotedAt), 30_000, "a revocation acknowledged after the failover");
      const firstIssue = oks.find((o) => o.op === "issue" && o.at > killedAt)!.at;
      const firstRevoke = oks.find((o) => o.op === "revoke" && o.at > promotedAt)!.at;
      const afterRecovery = revoked.length;
      await until(() => revoked.length >= afterRecovery + 10, 20_000, "more revocations after recovery");
      console.log(
        `sentinel failover: promoted ${promotedAt - killedAt} ms after the kill; first Issue ${firstIssue - killedAt} ms, ` +
          `first acknowledged revocation ${firstRevoke - killedAt} ms after it (the old primary restarted at ${promotedAt - killedAt} ms); ` +
          `failures: ${JSON.stringify(Object.fromEntries(failures))}; revocations acknowledged: ${revoked.length}`,
      );
    } finally {
      await load.stop();
    }

    await expectClosedAndNothingLost(load, client, authority.stderr, killedAt);
  }, 120_000);
});
