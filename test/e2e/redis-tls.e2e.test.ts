/**
 * Redis over TLS with a password, in all three Redis modes: one Redis (`rediss://:password@...` with
 * TESSERA_REDIS_TLS_CA), a Redis Cluster (TESSERA_REDIS_CLUSTER_NODES with TESSERA_REDIS_PASSWORD, TESSERA_REDIS_TLS=true
 * and TESSERA_REDIS_TLS_CA), and Redis behind Sentinel (TESSERA_REDIS_SENTINELS and TESSERA_REDIS_SENTINEL_MASTER with
 * TESSERA_REDIS_PASSWORD for the data nodes, TESSERA_REDIS_SENTINEL_PASSWORD for the sentinels, TESSERA_REDIS_TLS=true
 * and TESSERA_REDIS_TLS_CA). The servers, sentinels included, listen on TLS ports only (`--port 0`, `port 0`), so an
 * authority that works reached them over TLS, checked against the test CA, and authenticated.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makePki, type TestPki } from "../helpers/certs.js";
import { statusOf, tesseraClient } from "../helpers/clients.js";
import { freePort, redisCli, sentinelsReady } from "../helpers/redis-server.js";
import { spawnAuthority } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const PASSWORD = "s3cret-redis-password";
/** The sentinels' own password (requirepass), not the data nodes'. */
const SENTINEL_PASSWORD = "s3cret-sentinel-password";
let pki: TestPki;
let dir: string;
const servers: ChildProcess[] = [];

/** redis-cli over TLS with the test CA and the password. */
const cli = (port: number, ...args: string[]) => redisCli(["--tls", "--cacert", pki.caPath, "-a", PASSWORD, "--no-auth-warning", "-p", String(port), ...args]);

/** redis-cli over TLS with the test CA and the sentinels' password. */
const sentinelCli = (port: number, ...args: string[]) =>
  redisCli(["--tls", "--cacert", pki.caPath, "-a", SENTINEL_PASSWORD, "--no-auth-warning", "-p", String(port), ...args]);

/** A redis-server on a TLS port only, with the test server certificate and a password. */
async function tlsRedis(extra: string[] = []): Promise<number> {
  const port = await freePort();
  const args = [
    "--port", "0", "--tls-port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
    "--dir", await mkdtemp(join(dir, "node-")),
    "--tls-cert-file", pki.peer.certPath, "--tls-key-file", pki.peer.keyPath, "--tls-ca-cert-file", pki.caPath,
    "--tls-auth-clients", "no", "--requirepass", PASSWORD, "--masterauth", PASSWORD, ...extra,
  ];
  servers.push(spawn(process.env.REDIS_SERVER_BIN ?? "redis-server", args, { stdio: "ignore" }));
  await until(async () => (await cli(port, "ping").catch(() => "")).includes("PONG"), 10_000, `redis-server on TLS port ${port}`);
  return port;
}

beforeAll(async () => {
  pki = await makePki();
  dir = await mkdtemp(join(tmpdir(), "tessera-redis-tls-"));
});

afterAll(async () => {
  for (const s of servers) s.kill("SIGKILL");
  await pki?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * Issues, checks, revokes and checks again through an authority on `env`; none of `secrets` may reach its output.
 * Returns what the authority wrote to stdout.
 */
async function lifecycle(env: Record<string, string>, secrets: string[] = [PASSWORD]): Promise<string> {
  const authority = await spawnAuthority({ ...env, TESSERA_LOG_LEVEL: "info" });
  const client = tesseraClient("connect-h1", authority.url);
  try {
    // Subjects enough to land on every primary of a Cluster.
    for (let i = 0; i < 12; i++) {
      const issued = await client.issue({ subject: `tls-user-${i}`, client: { deviceId: "d" } });
      expect(await statusOf(client, issued.tokens.accessToken)).toBe("ACTIVE");
      expect(await client.revoke({ sessionId: issued.sessionId })).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
      expect(await statusOf(client, issued.tokens.accessToken)).toBe("REVOKED");
    }
    // The passwords never reach the log, not even in the effective configuration.
    const output = [...authority.stdout, ...authority.stderr].join("\n");
    for (const secret of secrets) expect(output).not.toContain(secret);
    return authority.stdout.join("\n");
  } finally {
    client.close();
    await authority.kill("SIGKILL");
  }
}

describe("Redis over TLS with a password", () => {
  it("one Redis: rediss:// with the password in the URL, checked against TESSERA_REDIS_TLS_CA", async () => {
    const port = await tlsRedis();
    await lifecycle({ TESSERA_REDIS_URL: `rediss://:${PASSWORD}@127.0.0.1:${port}`, TESSERA_REDIS_TLS_CA: pki.caPath });
  }, 60_000);

  it("a Redis Cluster: TESSERA_REDIS_PASSWORD, TESSERA_REDIS_TLS and TESSERA_REDIS_TLS_CA", async () => {
    const ports: number[] = [];
    for (let i = 0; i < 3; i++) {
      const bus = String(await freePort()); // the default, the port + 10000, may be past 65535
      ports.push(await tlsRedis(["--cluster-enabled", "yes", "--cluster-port", bus, "--tls-cluster", "yes", "--cluster-node-timeout", "2000"]));
    }
    await redisCli(["--tls", "--cacert", pki.caPath, "-a", PASSWORD, "--no-auth-warning", "--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"]);
    await until(async () => {
      const infos = await Promise.all(ports.map((p) => cli(p, "cluster", "info")));
      return infos.every((i) => /cluster_state:ok/.test(i) && /cluster_known_nodes:3\b/.test(i));
    }, 20_000, "the TLS cluster to settle");
    await lifecycle({
      TESSERA_REDIS_CLUSTER_NODES: ports.map((p) => `127.0.0.1:${p}`).join(","),
      TESSERA_REDIS_PASSWORD: PASSWORD,
      TESSERA_REDIS_TLS: "true",
      TESSERA_REDIS_TLS_CA: pki.caPath,
    });
    // The keys landed on more than one node.
    const counts = await Promise.all(ports.map(async (p) => Number((await cli(p, "dbsize")).trim())));
    expect(counts.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
  }, 90_000);

  it("Redis behind Sentinel over TLS with passwords", async () => {
    const master = "tessera-tls-primary";
    const primary = await tlsRedis();
    const replica = await tlsRedis(["--replicaof", "127.0.0.1", String(primary), "--tls-replication", "yes"]);
    await until(async () => /master_link_status:up/.test(await cli(replica, "info", "replication").catch(() => "")), 20_000, "the TLS replica to sync");

    // Three sentinels on TLS ports only, with a password of their own; they reach the data nodes (and each other) over
    // TLS (`tls-replication yes`) with the data nodes' password.
    const sentinels: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const sentinelDir = await mkdtemp(join(dir, "sentinel-"));
      const conf = join(sentinelDir, "sentinel.conf");
      await writeFile(
        conf,
        [
          "port 0",
          `tls-port ${port}`,
          "bind 127.0.0.1",
          `dir ${sentinelDir}`,
          `tls-cert-file ${pki.peer.certPath}`,
          `tls-key-file ${pki.peer.keyPath}`,
          `tls-ca-cert-file ${pki.caPath}`,
          "tls-auth-clients no",
          "tls-replication yes",
          `requirepass ${SENTINEL_PASSWORD}`,
          `sentinel sentinel-pass ${SENTINEL_PASSWORD}`,
          `sentinel monitor ${master} 127.0.0.1 ${primary} 2`,
          `sentinel auth-pass ${master} ${PASSWORD}`,
          `sentinel down-after-milliseconds ${master} 1000`,
          `sentinel failover-timeout ${master} 5000`,
          "",
        ].join("\n"),
      );
      servers.push(spawn(process.env.REDIS_SERVER_BIN ?? "redis-server", [conf, "--sentinel"], { stdio: "ignore" }));
      sentinels.push(port);
    }
    await sentinelsReady(sentinels, master, sentinelCli);

    const stdout = await lifecycle(
      {
        TESSERA_REDIS_SENTINELS: sentinels.map((p) => `127.0.0.1:${p}`).join(","),
        TESSERA_REDIS_SENTINEL_MASTER: master,
        TESSERA_REDIS_PASSWORD: PASSWORD,
        TESSERA_REDIS_SENTINEL_PASSWORD: SENTINEL_PASSWORD,
        TESSERA_REDIS_TLS: "true",
        TESSERA_REDIS_TLS_CA: pki.caPath,
      },
      [PASSWORD, SENTINEL_PASSWORD],
    );
    expect(stdout).toMatch(/"store":"redis","mode":"sentinel"/);
    // The keys landed on the primary the sentinels name.
    expect(Number((await cli(primary, "dbsize")).trim())).toBeGreaterThan(0);
  }, 90_000);
});
