import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { ConfigError, VARIABLES, isLoopback, loadConfig } from "../../src/config/config.js";
import { configTable, withConfigTable } from "../../src/config/docs.js";
import { CLI_VARIABLES } from "../../src/cli/variables.js";
import { SIDECAR_VARIABLES } from "../../src/sidecar/config.js";
import { formatDuration, parseDuration } from "../../src/config/duration.js";
import { variablesOf } from "../../src/config/variable.js";

describe("durations", () => {
  it.each([
    ["15m", 900_000],
    ["7d", 604_800_000],
    ["1h30m", 5_400_000],
    ["250ms", 250],
    ["0s", 0],
    ["2h5s", 7_205_000],
  ])("%s = %d ms", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
    expect(parseDuration(formatDuration(ms))).toBe(ms);
  });

  it.each(["", "15", "m", "15 m", "-5s", "1.5h", "banana", "5s!", "s5"])("rejects %j", (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe("config", () => {
  it("has working defaults: loopback, memory store, ES256", () => {
    const c = loadConfig({});
    expect(c.server.listen).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(c.server.tls).toBeUndefined();
    expect(c.store.redisUrl).toBeUndefined();
    expect(c.tokens.signingAlg).toBe("ES256");
    expect(c.tokens.refreshTokenMac).toBe(true);
    expect(c.sessions.accessTtlMs).toBe(15 * 60_000);
    expect(c.sessions.refreshTtlMs).toBe(7 * 86_400_000);
    expect(c.sessions.refreshGraceMs).toBe(10_000);
    expect(c.logLevel).toBe("info");
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.sessions) && Object.isFrozen(c.sessions.defaultAudience) && Object.isFrozen(c.limits.lockout)).toBe(true);
  });

  it("reads every variable", () => {
    const c = loadConfig({
      TESSERA_LISTEN: "[::1]:9090",
      TESSERA_REDIS_URL: "redis://127.0.0.1:6380/2",
      TESSERA_ISSUER: "https://auth.example",
      TESSERA_AUDIENCE: "a, b",
      TESSERA_ACCESS_TTL: "5m",
      TESSERA_ACCESS_TTL_MAX: "10m",
      TESSERA_REFRESH_TTL: "1d",
      TESSERA_REFRESH_TTL_MAX: "2d",
      TESSERA_REFRESH_IDLE_TTL: "1h",
      TESSERA_REFRESH_GRACE: "0s",
      TESSERA_MAX_SESSIONS: "3",
      TESSERA_CLOCK_SKEW: "0s",
      TESSERA_LOG_LEVEL: "warn",
      TESSERA_SIGNING_ALG: "EdDSA",
      TESSERA_REFRESH_TOKEN_MAC: "false",
    });
    expect(c).toMatchObject({
      server: { listen: { host: "::1", port: 9090 } },
      store: { redisUrl: "redis://127.0.0.1:6380/2" },
      tokens: { issuer: "https://auth.example", clockSkewMs: 0, signingAlg: "EdDSA", refreshTokenMac: false },
      sessions: {
        defaultAudience: ["a", "b"],
        accessTtlMs: 300_000,
        accessTtlMaxMs: 600_000,
        refreshTtlMs: 86_400_000,
        refreshTtlMaxMs: 172_800_000,
        refreshIdleTtlMs: 3_600_000,
        refreshGraceMs: 0,
        maxSessions: 3,
      },
      logLevel: "warn",
    });
  });

  it.each([
    ["TESSERA_ACCESS_TTL", "banana"],
    ["TESSERA_ACCESS_TTL", "2h"], // above the default max of 1h
    ["TESSERA_REFRESH_TTL", "100d"],
    ["TESSERA_LISTEN", "8080"],
    ["TESSERA_LISTEN", "127.0.0.1:99999"],
    ["TESSERA_REDIS_URL", "http://x"],
    ["TESSERA_REDIS_URL", "not a url"],
    ["TESSERA_MAX_SESSIONS", "0"],
    ["TESSERA_MAX_SESSIONS", "ten"],
    ["TESSERA_LOG_LEVEL", "loud"],
    ["TESSERA_SIGNING_ALG", "HS512"],
    ["TESSERA_AUDIENCE", " , "],
    ["TESSERA_REFRESH_IDLE_TTL", "0s"],
  ])("%s=%j is refused with an error naming it", (key, value) => {
    let err: unknown;
    try {
      loadConfig({ [key]: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).key).toBe(key);
    expect((err as ConfigError).message).toContain(key);
  });

  it("requires the replica wait to end before the store timeout, but only when waiting is on", () => {
    const base = { TESSERA_STORE_TIMEOUT: "300ms", TESSERA_REDIS_WAIT_TIMEOUT: "500ms" };
    expect(loadConfig(base).store.waitReplicas).toBe(0);
    expect(() => loadConfig({ ...base, TESSERA_REDIS_WAIT_REPLICAS: "1" })).toThrow(/TESSERA_REDIS_WAIT_TIMEOUT/);
    const ok = loadConfig({ ...base, TESSERA_REDIS_WAIT_REPLICAS: "2", TESSERA_REDIS_WAIT_TIMEOUT: "200ms" });
    expect([ok.store.waitReplicas, ok.store.waitTimeoutMs]).toEqual([2, 200]);
  });

  it("takes one Redis mode at a time: a URL, a Cluster's seeds, or sentinels with the primary's name", () => {
    const cluster = loadConfig({ TESSERA_REDIS_CLUSTER_NODES: "10.0.0.1:7000, 10.0.0.2:7001", TESSERA_REDIS_PASSWORD: "pw", TESSERA_REDIS_TLS: "true" });
    expect(cluster.store.clusterNodes).toEqual([
      { host: "10.0.0.1", port: 7000 },
      { host: "10.0.0.2", port: 7001 },
    ]);
    expect([cluster.store.password, cluster.store.tls, cluster.store.redisUrl]).toEqual(["pw", true, undefined]);
    const sentinel = loadConfig({ TESSERA_REDIS_SENTINELS: "[::1]:26379,s2:26379", TESSERA_REDIS_SENTINEL_MASTER: "main" });
    expect(sentinel.store.sentinels).toEqual([
      { host: "::1", port: 26379 },
      { host: "s2", port: 26379 },
    ]);
    expect(sentinel.store.sentinelMaster).toBe("main");
    const refusals: [Record<string, string>, string, RegExp][] = [
      [{ TESSERA_REDIS_URL: "redis://r:6379", TESSERA_REDIS_CLUSTER_NODES: "r:7000" }, "TESSERA_REDIS_CLUSTER_NODES", /one Redis mode/],
      [{ TESSERA_REDIS_CLUSTER_NODES: "r:7000", TESSERA_REDIS_SENTINELS: "s:26379", TESSERA_REDIS_SENTINEL_MASTER: "m" }, "TESSERA_REDIS_SENTINELS", /one Redis mode/],
      [{ TESSERA_REDIS_SENTINELS: "s:26379" }, "TESSERA_REDIS_SENTINEL_MASTER", /must name the primary/],
      [{ TESSERA_REDIS_SENTINEL_MASTER: "m" }, "TESSERA_REDIS_SENTINEL_MASTER", /without TESSERA_REDIS_SENTINELS/],
      [{ TESSERA_REDIS_URL: "redis://r:6379", TESSERA_REDIS_PASSWORD: "pw" }, "TESSERA_REDIS_PASSWORD", /put it in the URL/],
      [{ TESSERA_REDIS_TLS: "true" }, "TESSERA_REDIS_TLS", /no Redis is/],
      [{ TESSERA_REDIS_CLUSTER_NODES: "r:7000", TESSERA_REDIS_SENTINEL_PASSWORD: "pw" }, "TESSERA_REDIS_SENTINEL_PASSWORD", /without TESSERA_REDIS_SENTINELS/],
      [{ TESSERA_REDIS_CLUSTER_NODES: "r" }, "TESSERA_REDIS_CLUSTER_NODES", /host:port/],
    ];
    for (const [env, key, message] of refusals) {
      let err: unknown;
      try {
        loadConfig(env);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(env)).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).key).toBe(key);
      expect((err as ConfigError).message).toMatch(message);
    }
  });

  it("knows loopback addresses", () => {
    expect(["127.0.0.1", "127.1.2.3", "::1", "localhost"].every(isLoopback)).toBe(true);
    expect(["0.0.0.0", "::", "10.0.0.1", "example.com"].some(isLoopback)).toBe(false);
  });
});

describe("the declarations (VARIABLES)", () => {
  const declared = variablesOf(VARIABLES);

  it("declare each variable once, with a doc, and every TESSERA_* variable src/ mentions (the sidecar's: in its own table)", () => {
    const names = declared.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    expect(declared.filter((v) => v.doc.trim() === "")).toEqual([]);
    const sidecar = variablesOf(SIDECAR_VARIABLES);
    expect(new Set(sidecar.map((v) => v.name)).size).toBe(sidecar.length);
    // A shared name is the authority's own declaration, except TESSERA_LISTEN (another default port).
    const redeclared = sidecar.filter((v) => names.includes(v.name as never) && !declared.includes(v as never));
    expect(redeclared.map((v) => v.name)).toEqual(["TESSERA_LISTEN"]);
    names.push(...(sidecar.map((v) => v.name) as never[]));
    names.push(...(variablesOf(CLI_VARIABLES).map((v) => v.name) as never[])); // the command line's, declared apart
    const src = fileURLToPath(new URL("../../src", import.meta.url));
    const mentioned = new Set(
      readdirSync(src, { recursive: true, encoding: "utf8" })
        .filter((f) => f.endsWith(".ts"))
        .flatMap((f) => readFileSync(join(src, f), "utf8").match(/\bTESSERA_[A-Z0-9_]+\b(?!\*)/g) ?? []),
    );
    expect([...mentioned].filter((n) => !names.includes(n as never))).toEqual([]);
  });

  it("give docs/configuration.md one row per variable, in declaration order", () => {
    const rows = configTable().split("\n").slice(2);
    expect(rows.map((r) => /^\| `(\w+)` \|/.exec(r)?.[1])).toEqual(declared.map((v) => v.name));
    expect(rows[0]).toBe(
      "| `TESSERA_LISTEN` | `127.0.0.1:8080` | `host:port` to listen on (`[::1]:8080` for IPv6). One port serves gRPC (HTTP/2 " +
        "without TLS), the Connect protocol and gRPC-Web over HTTP/2 and HTTP/1.1. Port `0` picks a free port. |",
    );
    expect(rows.find((r) => r.startsWith("| `TESSERA_RATE_IP`"))).toMatch(/^\| `TESSERA_RATE_IP` \| `0` \(off\) \| /);
    expect(rows.find((r) => r.startsWith("| `TESSERA_REDIS_URL`"))).toMatch(/^\| `TESSERA_REDIS_URL` \| unset \| /);
    expect(rows.find((r) => r.startsWith("| `TESSERA_RISK_THRESHOLD`"))).toMatch(/ Range: 1 to 100\. \|$/);
  });

  it("docs/configuration.md is what the declarations produce now, and a document without the markers is refused", () => {
    const doc = readFileSync(new URL("../../docs/configuration.md", import.meta.url), "utf8");
    expect(withConfigTable(doc)).toBe(doc);
    expect(() => withConfigTable("# no table here")).toThrow(/needs the markers/);
  });
});

describe("every bounded variable", () => {
  const bounded = variablesOf(VARIABLES).filter((v) => v.range !== undefined);
  it("is most of them", () => expect(bounded.length).toBeGreaterThan(25));

  it.each(bounded.map((v) => [v.name, v] as const))("%s: takes its bounds and refuses what lies past them", (name, v) => {
    for (const ok of v.range!.accepted) expect(() => v.read(ok)).not.toThrow();
    for (const bad of v.range!.refused) expect(() => v.read(bad)).toThrow(new RegExp(`^${name}: `));
  });
});
