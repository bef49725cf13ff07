/** TESSERA_REDIS_WAIT_REPLICAS: a revocation is acknowledged only once a replica has it (real primary + replica). */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { decodeJwt } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InactiveReason, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { RedisServer } from "../helpers/redis-server.js";
import { startServer, type StartedServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

describe("revocations wait for replica acknowledgement", () => {
  let primary: RedisServer;
  let replica: RedisServer;
  let replicaClient: Redis;
  let srv: StartedServer;

  beforeAll(async () => {
    primary = await RedisServer.start();
    replica = await RedisServer.start();
    replicaClient = new Redis(replica.url, { maxRetriesPerRequest: 0 });
    replicaClient.on("error", () => {}); // the test kills the replica on purpose
    await replicaClient.replicaof("127.0.0.1", primary.port);
    await until(async () => (await replicaClient.info("replication")).includes("master_link_status:up"), 10_000, "the replica link");
    srv = await startServer({
      TESSERA_REDIS_URL: primary.url,
      TESSERA_REDIS_WAIT_REPLICAS: "1",
      TESSERA_REDIS_WAIT_TIMEOUT: "300ms",
      TESSERA_STORE_TIMEOUT: "2s",
    });
  });
  afterAll(async () => {
    await srv?.close();
    replicaClient.disconnect();
    await replica.stop();
    await primary.stop();
  });

  it("acknowledges once the replica has it; with the replica gone it answers UNAVAILABLE, also on retry", async () => {
    const c = createClient(TokenService, createGrpcTransport({ baseUrl: srv.url }));
    const first = await c.issue({ subject: "durable" });
    const second = await c.issue({ subject: "durable" });

    expect(await c.revoke({ target: { case: "token", value: first.tokens!.accessToken } })).toMatchObject({
      tokenRevoked: true,
    });
    // By the time the call returned, the replica held the revocation.
    const jti = decodeJwt(first.tokens!.accessToken).jti!;
    const onReplica = await replicaClient.keys(`*:j:${jti}`);
    expect(onReplica).toHaveLength(1);

    await replica.kill();
    const started = Date.now();
    const revoke = () =>
      c.revoke({ target: { case: "token", value: second.tokens!.accessToken } }).then(
        () => "acknowledged" as const,
        (e: unknown) => ConnectError.from(e).code,
      );
    expect(await revoke()).toBe(Code.Unavailable);
    expect(Date.now() - started).toBeLessThan(1500);
    // Not acknowledged, but applied on the primary: the token is dead there (fail closed), and a retry waits again.
    const seen = await c.introspect({ token: second.tokens!.accessToken });
    expect(seen.inactiveReason).toBe(InactiveReason.REVOKED);
    expect(await revoke()).toBe(Code.Unavailable);

    // Issue is not a revocation: it does not wait for replicas.
    expect((await c.issue({ subject: "durable" })).sessionId).not.toBe("");
  });

  it("an Issue that evicts a session waits for the replica as a revocation does (the replica gone: UNAVAILABLE, the eviction stands)", async () => {
    // Runs after the test above has killed the replica. One session a subject: the second Issue evicts the first.
    const one = await startServer({
      TESSERA_REDIS_URL: primary.url,
      TESSERA_REDIS_WAIT_REPLICAS: "1",
      TESSERA_REDIS_WAIT_TIMEOUT: "300ms",
      TESSERA_STORE_TIMEOUT: "2s",
      TESSERA_MAX_SESSIONS: "1",
    });
    try {
      const c = createClient(TokenService, createGrpcTransport({ baseUrl: one.url }));
      const first = await c.issue({ subject: "evicting" }); // evicts nothing: does not wait
      const evicting = await c.issue({ subject: "evicting" }).then(
        () => "acknowledged" as const,
        (e: unknown) => ConnectError.from(e).code,
      );
      expect(evicting).toBe(Code.Unavailable);
      expect((await c.introspect({ token: first.tokens!.accessToken })).active).toBe(false);
    } finally {
      await one.close();
    }
  });
});
