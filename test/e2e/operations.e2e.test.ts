/** Running it: metrics, deadlines, server-side timeout, graceful shutdown with a call in flight. */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { RedisServer } from "../helpers/redis-server.js";
import { spawnAuthority, startServer, type StartedServer } from "../helpers/server.js";

const client = { deviceId: "d1", userAgent: "ua", ip: "", platform: "" };

function tokens(url: string) {
  return createClient(TokenService, createGrpcTransport({ baseUrl: url }));
}

async function failure(p: Promise<unknown>): Promise<ConnectError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

/** The sample value of one Prometheus series (labels given in the exposition's order), or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe("metrics", () => {
  let srv: StartedServer;
  beforeAll(async () => {
    srv = await startServer({ TESSERA_REFRESH_GRACE: "0s" });
  });
  afterAll(() => srv.close());

  it("counts RPCs by method and code, Introspect outcomes, reuse, and times the store", async () => {
    const c = tokens(srv.url);
    const issued = await c.issue({ subject: "m", client });
    await c.introspect({ token: issued.tokens!.accessToken });
    await c.introspect({ token: "garbage" });
    await c.refresh({ refreshToken: issued.tokens!.refreshToken, client });
    expect((await failure(c.refresh({ refreshToken: issued.tokens!.refreshToken, client }))).code).toBe(
      Code.Unauthenticated,
    );
    await failure(c.revoke({}));

    const res = await fetch(`${srv.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    const rpc = (method: string, code: string) =>
      sample(text, `tessera_rpc_total{service="tessera.v1.TokenService",method="${method}",code="${code}"}`);
    expect(rpc("Issue", "OK")).toBe(1);
    expect(rpc("Introspect", "OK")).toBe(2);
    expect(rpc("Refresh", "OK")).toBe(1);
    expect(rpc("Refresh", "Unauthenticated")).toBe(1);
    expect(rpc("Revoke", "InvalidArgument")).toBe(1);
    expect(sample(text, 'tessera_introspect_total{result="active"}')).toBe(1);
    expect(sample(text, 'tessera_introspect_total{result="malformed"}')).toBe(1);
    expect(sample(text, "tessera_refresh_reuse_total")).toBe(1);
    expect(sample(text, 'tessera_store_duration_seconds_count{op="createSession"}')).toBe(1);
    expect(sample(text, 'tessera_store_duration_seconds_count{op="tokenState"}')).toBe(1);
    expect(text).toContain("tessera_rpc_duration_seconds_bucket");
    expect(text).toContain("tessera_process_resident_memory_bytes");
  });
});

describe("limits", () => {
  it("a request over TESSERA_MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED and the server keeps serving", async () => {
    const srv = await startServer({ TESSERA_MAX_REQUEST_BYTES: "2048" });
    try {
      const c = tokens(srv.url);
      const err = await failure(c.issue({ subject: "big", audience: Array.from({ length: 16 }, () => "a".repeat(200)) }));
      expect(err.code).toBe(Code.ResourceExhausted);
      expect((await c.issue({ subject: "small", client })).sessionId).not.toBe("");
    } finally {
      await srv.close();
    }
  });
});

describe("HTTP/2 settings", () => {
  it("the server announces its concurrent-stream limit in its SETTINGS frame", async () => {
    const srv = await startServer({});
    try {
      const { connect } = await import("node:http2");
      const session = connect(srv.url);
      const settings = await new Promise<import("node:http2").Settings>((resolve, reject) => {
        session.once("remoteSettings", resolve);
        session.once("error", reject);
      });
      session.close();
      expect(settings.maxConcurrentStreams).toBe(1000);
    } finally {
      await srv.close();
    }
  });
});

describe("deadlines and shutdown against a paused Redis", () => {
  let redis: RedisServer;
  let admin: Redis;
  beforeAll(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.url);
  });
  afterAll(async () => {
    admin.disconnect();
    await redis.stop();
  });

  const env = (extra: Record<string, string> = {}) => ({
    TESSERA_REDIS_URL: redis.url,
    TESSERA_STORE_TIMEOUT: "10s",
    ...extra,
  });

  it("a call ends at the caller's deadline even while the store hangs, and the store stays usable", async () => {
    const srv = await startServer(env());
    try {
      const c = tokens(srv.url);
      const issued = await c.issue({ subject: "d", client });
      await admin.client("PAUSE", 2000, "ALL");
      const started = Date.now();
      const err = await failure(c.introspect({ token: issued.tokens!.accessToken }, { timeoutMs: 300 }));
      expect(err.code).toBe(Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(1500);
      await admin.client("UNPAUSE");
      expect((await c.introspect({ token: issued.tokens!.accessToken })).active).toBe(true);
    } finally {
      await admin.client("UNPAUSE");
      await srv.close();
    }
  });

  it("the server caps deadlines at TESSERA_MAX_TIMEOUT", async () => {
    const srv = await startServer(env({ TESSERA_MAX_TIMEOUT: "300ms" }));
    try {
      const c = tokens(srv.url);
      const issued = await c.issue({ subject: "d2", client });
      await admin.client("PAUSE", 2000, "ALL");
      const started = Date.now();
      const err = await failure(c.introspect({ token: issued.tokens!.accessToken }));
      expect(err.code).toBe(Code.DeadlineExceeded);
      expect(Date.now() - started).toBeLessThan(1500);
    } finally {
      await admin.client("UNPAUSE");
      await srv.close();
    }
  });

  it("shutdown: NOT_SERVING, new calls refused, an in-flight call finishes within the grace period", async () => {
    const srv = await startServer(env({ TESSERA_SHUTDOWN_GRACE: "5s" }));
    const c = tokens(srv.url);
    const issued = await c.issue({ subject: "s1", client });
    await admin.client("PAUSE", 700, "ALL");
    const inFlight = c.introspect({ token: issued.tokens!.accessToken });
    await new Promise((r) => setTimeout(r, 100));
    const closing = srv.close();
    expect(srv.app.readiness.serving).toBe(false);
    expect((await fetch(`${srv.url}/readyz`).then((r) => r.status, () => 503))).toBe(503);
    const refused = await failure(tokens(srv.url).introspect({ token: issued.tokens!.accessToken }));
    expect([Code.Unavailable, Code.Unknown, Code.Internal]).toContain(refused.code);
    expect((await inFlight).active).toBe(true);
    await closing;
  });

  it("shutdown: a call still running after the grace period is cancelled with UNAVAILABLE", async () => {
    const srv = await startServer(env({ TESSERA_SHUTDOWN_GRACE: "200ms" }));
    const c = tokens(srv.url);
    const issued = await c.issue({ subject: "s2", client });
    await admin.client("PAUSE", 3000, "ALL");
    try {
      const inFlight = failure(c.introspect({ token: issued.tokens!.accessToken }));
      await new Promise((r) => setTimeout(r, 100));
      const started = Date.now();
      await srv.close();
      expect(Date.now() - started).toBeLessThan(2500);
      expect((await inFlight).code).toBe(Code.Unavailable);
    } finally {
      await admin.client("UNPAUSE");
    }
  });

  it("SIGTERM on the real process: the in-flight call completes and the process exits 0", async () => {
    const proc = await spawnAuthority(env({ TESSERA_SHUTDOWN_GRACE: "5s", TESSERA_REDIS_PREFIX: "test:sigterm:", TESSERA_LOG_LEVEL: "info" }));
    try {
      const c = tokens(proc.url);
      const issued = await c.issue({ subject: "s3", client });
      await admin.client("PAUSE", 700, "ALL");
      const inFlight = c.introspect({ token: issued.tokens!.accessToken });
      await new Promise((r) => setTimeout(r, 100));
      proc.kill("SIGTERM");
      expect((await inFlight).active).toBe(true);
      expect(await proc.exited).toBe(0);
      const lines = proc.stdout.map((l) => JSON.parse(l) as { msg: string; signal?: string });
      expect(lines).toContainEqual(expect.objectContaining({ msg: "shutting down", signal: "SIGTERM" }));
      // the in-flight Introspect was logged before the process went: logs are flushed on the way out
      expect(lines.filter((l) => l.msg === "rpc").length).toBe(2);
    } finally {
      await admin.client("UNPAUSE");
      proc.kill("SIGKILL");
    }
  });
});
