/** Running it: metrics, deadlines, server-side timeout, graceful shutdown with a call in flight. */
import { once } from "node:events";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IntrospectRequestSchema, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { RedisServer } from "../helpers/redis-server.js";
import { spawnAuthority, startServer, type StartedServer } from "../helpers/server.js";
import { TcpGate } from "../helpers/tcp-gate.js";
import { until } from "../helpers/wait.js";

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

/** The `code` (errno name, e.g. ECONNREFUSED) of the first error in err's cause chain that has one. */
function errnoOf(err: unknown): string | undefined {
  for (let e = err; e instanceof Error; e = e.cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
  }
  return undefined;
}

/**
 * A unary gRPC call on a connection of its own, whose request headers reach the server now and whose request message
 * is sent later (finish): its stream exists on the server before then, but the call only reaches the pipeline then.
 */
async function openGrpcCall(url: string, path: string) {
  const session = http2.connect(url);
  session.on("error", () => {});
  await once(session, "connect");
  const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" }, { endStream: false });
  stream.on("error", () => {});
  const headers: http2.IncomingHttpHeaders = {};
  stream.on("response", (h) => Object.assign(headers, h));
  stream.on("trailers", (t) => Object.assign(headers, t));
  stream.resume();
  const closed = once(stream, "close");
  // Frames are handled in order: once the server has acknowledged a PING sent after the HEADERS, it has the stream.
  await new Promise<void>((resolve, reject) => session.ping((err) => (err ? reject(err) : resolve())));
  return {
    /** Sends the request message, and resolves with the call's gRPC status (code name) and message. */
    async finish(message: Uint8Array): Promise<{ code: string; message: string }> {
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      frame.set(message, 5);
      stream.end(frame);
      await closed;
      session.close();
      const status = Number(headers["grpc-status"]);
      const code = status === 0 ? "OK" : (Code[status] ?? `grpc-status ${String(headers["grpc-status"])}`);
      return { code, message: decodeURIComponent(String(headers["grpc-message"] ?? "")) };
    },
    destroy: () => session.destroy(),
  };
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

  it("shutdown: NOT_SERVING; a new connection is refused; a call arriving after it began is UNAVAILABLE; an in-flight call finishes", async () => {
    const gate = await TcpGate.start(redis.port);
    const srv = await startServer(env({ TESSERA_REDIS_URL: gate.url, TESSERA_SHUTDOWN_GRACE: "5s" }));
    const late = await openGrpcCall(srv.url, "/tessera.v1.TokenService/Introspect");
    try {
      const c = tokens(srv.url);
      const issued = await c.issue({ subject: "s1", client });
      const token = issued.tokens!.accessToken;
      await srv.app.audit.flush(); // nothing of the Issue is left to write while the gate holds
      gate.hold();
      const inFlight = c.introspect({ token });
      inFlight.catch(() => {}); // awaited below; a failure before then must not also surface as unhandled
      // In the pipeline, and it cannot finish: whatever it asks the store is held.
      await until(() => srv.app.inFlight() === 1, 5_000, "the Introspect to be in flight");

      const closing = srv.close();
      expect(srv.app.readiness.serving).toBe(false);
      // The listening socket is closed at once: a new connection never reaches Tessera (not even /readyz) ...
      expect(await fetch(`${srv.url}/readyz`).then((r) => `HTTP ${r.status}`, errnoOf)).toBe("ECONNREFUSED");
      // ... so a new client's call fails UNAVAILABLE, the code connect-node gives a refused connection.
      const refused = await failure(tokens(srv.url).introspect({ token }));
      expect({ code: Code[refused.code], errno: errnoOf(refused) }).toEqual({ code: "Unavailable", errno: "ECONNREFUSED" });
      // A call on a stream opened before shutdown, whose request completes after it began, reaches the pipeline,
      // which refuses it itself: UNAVAILABLE, "server is shutting down" (src/api/pipeline.ts).
      expect(await late.finish(toBinary(IntrospectRequestSchema, create(IntrospectRequestSchema, { token })))).toEqual({
        code: "Unavailable",
        message: "server is shutting down",
      });
      // The call in flight since before shutdown is still running (its store command still held), and finishes.
      expect(srv.app.inFlight()).toBe(1);
      gate.release();
      expect((await inFlight).active).toBe(true);
      await closing;
    } finally {
      late.destroy();
      await srv.close();
      await gate.close();
    }
  });

  it("shutdown: a call still running after the grace period is cancelled with UNAVAILABLE", async () => {
    const gate = await TcpGate.start(redis.port);
    const srv = await startServer(env({ TESSERA_REDIS_URL: gate.url, TESSERA_SHUTDOWN_GRACE: "200ms" }));
    try {
      const c = tokens(srv.url);
      const issued = await c.issue({ subject: "s2", client });
      await srv.app.audit.flush();
      gate.hold();
      const inFlight = failure(c.introspect({ token: issued.tokens!.accessToken }));
      await until(() => srv.app.inFlight() === 1, 5_000, "the Introspect to be in flight");
      const started = Date.now();
      await srv.close();
      expect(Date.now() - started).toBeLessThan(2500);
      const err = await inFlight;
      expect({ code: Code[err.code], message: err.rawMessage }).toEqual({ code: "Unavailable", message: "server is shutting down" });
    } finally {
      await srv.close();
      await gate.close();
    }
  });

  it("SIGTERM on the real process: the in-flight call completes and the process exits 0", async () => {
    const gate = await TcpGate.start(redis.port);
    const proc = await spawnAuthority(
      env({ TESSERA_REDIS_URL: gate.url, TESSERA_SHUTDOWN_GRACE: "5s", TESSERA_REDIS_PREFIX: "test:sigterm:", TESSERA_LOG_LEVEL: "info" }),
    );
    try {
      const c = tokens(proc.url);
      const issued = await c.issue({ subject: "s3", client });
      gate.hold();
      const inFlight = c.introspect({ token: issued.tokens!.accessToken });
      inFlight.catch(() => {}); // awaited below; a failure before then must not also surface as unhandled
      // Introspect reads the store with one MGET: once that is held, the call is in flight in the other process.
      await until(() => /mget/i.test(gate.held()), 5_000, "the Introspect to wait for the store");
      void proc.kill("SIGTERM");
      // The process has begun shutting down while the call is still waiting for the store.
      await until(() => proc.stdout.some((l) => l.includes('"shutting down"')), 10_000, "the shutdown log line");
      gate.release();
      expect((await inFlight).active).toBe(true);
      expect(await proc.exited).toBe(0);
      const lines = proc.stdout.map((l) => JSON.parse(l) as { msg: string; signal?: string });
      expect(lines).toContainEqual(expect.objectContaining({ msg: "shutting down", signal: "SIGTERM" }));
      // the in-flight Introspect was logged before the process went: logs are flushed on the way out
      expect(lines.filter((l) => l.msg === "rpc").length).toBe(2);
    } finally {
      gate.release();
      void proc.kill("SIGKILL");
      await proc.exited;
      await gate.close();
    }
  });
});
