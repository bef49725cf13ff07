import { describe, expect, it } from "vitest";
import { ConfigError, isLoopback, loadConfig } from "../../src/config/config.js";
import { formatDuration, parseDuration } from "../../src/config/duration.js";

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
    expect(c.listen).toEqual({ host: "127.0.0.1", port: 8080 });
    expect(c.redisUrl).toBeUndefined();
    expect(c.signingAlg).toBe("ES256");
    expect(c.accessTtlMs).toBe(15 * 60_000);
    expect(c.refreshTtlMs).toBe(7 * 86_400_000);
    expect(c.refreshGraceMs).toBe(10_000);
    expect(Object.isFrozen(c)).toBe(true);
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
    });
    expect(c).toMatchObject({
      listen: { host: "::1", port: 9090 },
      redisUrl: "redis://127.0.0.1:6380/2",
      issuer: "https://auth.example",
      audience: ["a", "b"],
      accessTtlMs: 300_000,
      accessTtlMaxMs: 600_000,
      refreshTtlMs: 86_400_000,
      refreshTtlMaxMs: 172_800_000,
      refreshIdleTtlMs: 3_600_000,
      refreshGraceMs: 0,
      maxSessions: 3,
      clockSkewMs: 0,
      logLevel: "warn",
      signingAlg: "EdDSA",
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
    ["TESSERA_SIGNING_ALG", "HS256"],
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
    expect(loadConfig(base).redisWaitReplicas).toBe(0);
    expect(() => loadConfig({ ...base, TESSERA_REDIS_WAIT_REPLICAS: "1" })).toThrow(/TESSERA_REDIS_WAIT_TIMEOUT/);
    const ok = loadConfig({ ...base, TESSERA_REDIS_WAIT_REPLICAS: "2", TESSERA_REDIS_WAIT_TIMEOUT: "200ms" });
    expect([ok.redisWaitReplicas, ok.redisWaitTimeoutMs]).toEqual([2, 200]);
  });

  it("knows loopback addresses", () => {
    expect(["127.0.0.1", "127.1.2.3", "::1", "localhost"].every(isLoopback)).toBe(true);
    expect(["0.0.0.0", "::", "10.0.0.1", "example.com"].some(isLoopback)).toBe(false);
  });
});
