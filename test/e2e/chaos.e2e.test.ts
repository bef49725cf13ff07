/**
 * Faults against real processes: Redis killed under load, Redis paused past deadlines, the authority killed with
 * SIGKILL in the middle of refreshes. Loops are bounded in count and time.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InactiveReason, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { RedisServer } from "../helpers/redis-server.js";
import { spawnAuthority, startServer, type SpawnedAuthority } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tokenClient(url: string) {
  return createClient(TokenService, createGrpcTransport({ baseUrl: url }));
}
type Tokens = ReturnType<typeof tokenClient>;

async function outcome<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; code: Code }> {
  try {
    return { ok: true, value: await p };
  } catch (e) {
    return { ok: false, code: ConnectError.from(e).code };
  }
}

describe("Redis killed and restarted while Issue, Refresh, Introspect and Revoke run", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await RedisServer.start({ persistent: true });
  });
  afterAll(() => redis.stop());

  it("never reports a revoked or unchecked token active, loses no acknowledged revocation, recovers by itself", async () => {
    const srv = await startServer({ TESSERA_REDIS_URL: redis.url, TESSERA_STORE_TIMEOUT: "300ms" });
    const c = tokenClient(srv.url);
    const acknowledgedRevoked: string[] = [];
    const violations: string[] = [];
    const codes = new Map<Code | "ok", number>();
    const count = (k: Code | "ok") => codes.set(k, (codes.get(k) ?? 0) + 1);
    let stop = false;

    /** One worker: issue, introspect, refresh, revoke, introspect again; checks every answer it gets. */
    const worker = async (w: number) => {
      for (let i = 0; i < 400 && !stop; i++) {
        const client = { deviceId: `dev-${w}`, userAgent: "chaos", ip: "", platform: "" };
        const issued = await outcome(c.issue({ subject: `chaos-${w % 3}`, client }));
        if (!issued.ok) {
          count(issued.code);
          await sleep(20);
          continue;
        }
        count("ok");
        const pair = issued.value.tokens!;
        const refreshed = await outcome(c.refresh({ refreshToken: pair.refreshToken, client }));
        count(refreshed.ok ? "ok" : refreshed.code);
        const revoked = await outcome(c.revoke({ target: { case: "token", value: pair.accessToken } }));
        count(revoked.ok ? "ok" : revoked.code);
        if (revoked.ok) acknowledgedRevoked.push(pair.accessToken);
        const seen = await outcome(c.introspect({ token: pair.accessToken }));
        if (seen.ok && seen.value.active && revoked.ok) violations.push(`revoked token reported active (worker ${w})`);
        if (!seen.ok && seen.code !== Code.Unavailable) violations.push(`introspect failed with ${Code[seen.code]}`);
      }
    };

    const workers = Array.from({ length: 6 }, (_, w) => worker(w));
    const ok = () => codes.get("ok") ?? 0;
    await until(() => ok() >= 12, 15_000, "the workers to be under way");
    await redis.kill();
    // The loops keep running against a dead store until each has been answered UNAVAILABLE a few times.
    await until(() => (codes.get(Code.Unavailable) ?? 0) >= 18, 15_000, "the workers to meet the outage");
    await redis.start();
    const okBeforeRestart = ok();
    await until(() => ok() >= okBeforeRestart + 12, 15_000, "the workers to get answers again");
    stop = true;
    await Promise.all(workers);

    expect(violations).toEqual([]);
    expect(codes.get(Code.Unavailable) ?? 0).toBeGreaterThan(0); // the outage was seen...
    expect(codes.get("ok") ?? 0).toBeGreaterThan(0);
    expect([...codes.keys()].filter((k) => k !== "ok" && k !== Code.Unavailable)).toEqual([]); // ...as UNAVAILABLE only
    expect(acknowledgedRevoked.length).toBeGreaterThan(0);

    // Recovered without a restart, and every acknowledged revocation survived the Redis crash.
    for (const token of acknowledgedRevoked) {
      const r = await c.introspect({ token });
      expect(r.active).toBe(false);
      expect(r.inactiveReason).toBe(InactiveReason.REVOKED);
    }
    const fresh = await c.issue({ subject: "after", client: { deviceId: "d", userAgent: "u", ip: "", platform: "" } });
    expect((await c.introspect({ token: fresh.tokens!.accessToken })).active).toBe(true);
    // The outage is visible to operators: store errors were counted.
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    const errors = metrics
      .split("\n")
      .filter((l) => l.startsWith("tessera_store_errors_total{"))
      .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
    expect(errors).toBeGreaterThan(0);
    await srv.close();
  });
});

describe("Redis paused past the callers' deadlines", () => {
  it("every call ends on time, nothing piles up, and the first call after the pause is answered promptly", async () => {
    const redis = await RedisServer.start();
    const admin = new Redis(redis.url);
    const srv = await startServer({ TESSERA_REDIS_URL: redis.url, TESSERA_STORE_TIMEOUT: "5s" });
    try {
      const c = tokenClient(srv.url);
      const issued = await c.issue({ subject: "pause" });
      const token = issued.tokens!.accessToken;
      await admin.client("PAUSE", 1500, "ALL");
      const started = Date.now();
      const results = await Promise.all(
        Array.from({ length: 200 }, () => outcome(c.introspect({ token }, { timeoutMs: 200 }))),
      );
      const elapsed = Date.now() - started;
      expect(results.every((r) => !r.ok && r.code === Code.DeadlineExceeded)).toBe(true);
      expect(elapsed).toBeLessThan(1400); // all ended at their deadline, while Redis was still paused
      await admin.client("UNPAUSE");
      // The 200 abandoned reads drain from the connection; a new call is not stuck behind a backlog for long.
      const t = Date.now();
      expect((await c.introspect({ token }, { timeoutMs: 2000 })).active).toBe(true);
      expect(Date.now() - t).toBeLessThan(1000);
    } finally {
      await admin.client("UNPAUSE").catch(() => {});
      admin.disconnect();
      await srv.close();
      await redis.stop();
    }
  });
});

describe("the authority killed with SIGKILL in the middle of refreshes", () => {
  it("leaves no session half-rotated: each chain continues from the last pair its client got (or its retry)", async () => {
    const redis = await RedisServer.start({ persistent: true });
    const env = { TESSERA_REDIS_URL: redis.url, TESSERA_REFRESH_GRACE: "30s" };
    let a: SpawnedAuthority | undefined = await spawnAuthority(env);
    let b: SpawnedAuthority | undefined;
    try {
      const ca = tokenClient(a.url);
      const chains = await Promise.all(
        Array.from({ length: 8 }, async (_, i) => {
          const client = { deviceId: `kill-${i}`, userAgent: "ua", ip: "", platform: "" };
          const issued = await ca.issue({ subject: `kill-${i}`, client });
          return { client, received: issued.tokens!.refreshToken, sent: issued.tokens!.refreshToken, rotations: 0 };
        }),
      );
      let killed = false;
      const loops = chains.map(async (chain) => {
        while (!killed) {
          chain.sent = chain.received;
          const r = await outcome(ca.refresh({ refreshToken: chain.sent, client: chain.client }));
          if (!r.ok) return; // the process died under this call
          chain.received = r.value.tokens!.refreshToken;
          chain.rotations++;
        }
      });
      // Killed while every chain is busy rotating (each has rotated a few times and is at it again).
      await until(() => chains.every((chain) => chain.rotations >= 3), 15_000, "every chain to be rotating");
      killed = true;
      a.kill("SIGKILL");
      await Promise.all(loops);
      await a.exited;
      a = undefined;

      b = await spawnAuthority(env);
      const cb = tokenClient(b.url);
      for (const chain of chains) {
        // The client retries what it last sent (it never saw the answer) from the same device: inside the grace
        // window that is either the rotation itself or a replay of the rotation the dead process had committed.
        const retry = await cb.refresh({ refreshToken: chain.sent, client: chain.client });
        const next = retry.tokens!.refreshToken;
        expect((await cb.introspect({ token: next, expectedType: 2 })).active).toBe(true);
        const again = await cb.refresh({ refreshToken: next, client: chain.client });
        expect((await cb.introspect({ token: retry.tokens!.accessToken })).active).toBe(true);
        expect(again.sessionId).toBe(retry.sessionId);
      }
    } finally {
      a?.kill("SIGKILL");
      await b?.kill("SIGTERM");
      await redis.stop();
    }
  });
});
