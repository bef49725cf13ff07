/**
 * grpc.health.v1.Health and GET /healthz, /readyz against a real server: all SERVING on the memory store; on a
 * throwaway Redis that the test kills and restarts, the server and its store-backed services go NOT_SERVING and back
 * (Check polled, Watch streaming the transitions) while health and reflection themselves stay SERVING; once shutdown
 * begins, everything is NOT_SERVING. /healthz (alive) stays 200 throughout; /readyz follows the overall status.
 * That a Watch sent nothing is shown by the next change it must send arriving as its very next message, not by waiting.
 */
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { RedisServer } from "../helpers/redis-server.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const OVERALL = "";
const STORE_SERVICES = ["tessera.v1.TokenService", "tessera.v1.SessionService"];
const LOCAL_SERVICES = ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];

interface Connected {
  server: StartedServer;
  health: Client<typeof Health>;
  close(): Promise<void>;
}

async function connect(env: Record<string, string> = {}): Promise<Connected> {
  const server = await startServer(env);
  const sessionManager = new Http2SessionManager(server.url);
  const health = createClient(Health, createGrpcTransport({ baseUrl: server.url, sessionManager }));
  return {
    server,
    health,
    async close() {
      sessionManager.abort();
      await server.close();
    },
  };
}

async function status(c: Connected, service: string): Promise<Status> {
  return (await c.health.check({ service }, { timeoutMs: 5_000 })).status;
}

async function httpStatus(c: Connected, path: string): Promise<{ code: number; body: unknown }> {
  const res = await fetch(`${c.server.url}${path}`);
  return { code: res.status, body: await res.json() };
}

/** Polls `read` until it returns `want`, at most `withinMs`; returns the last value read. */
async function until<T>(read: () => Promise<T>, want: T, withinMs = 10_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  let last = await read();
  while (last !== want && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    last = await read();
  }
  return last;
}

/** A Watch running in the background: every status it received so far, whether it ended, and a way to end it. */
interface Watching {
  seen: Status[];
  /** True once the stream ended (the server closed it, or it failed) before stop(). */
  readonly ended: boolean;
  stop(): Promise<void>;
}

function watch(c: Connected, service: string): Watching {
  const abort = new AbortController();
  const seen: Status[] = [];
  let ended = false;
  const done = (async () => {
    try {
      for await (const res of c.health.watch({ service }, { signal: abort.signal })) seen.push(res.status);
    } catch (err) {
      if (!abort.signal.aborted) throw err;
    } finally {
      if (!abort.signal.aborted) ended = true;
    }
  })();
  return {
    seen,
    get ended() {
      return ended;
    },
    async stop() {
      abort.abort();
      await done;
    },
  };
}

async function untilSeen(w: Watching, count: number, withinMs = 10_000): Promise<Status[]> {
  const deadline = Date.now() + withinMs;
  while (w.seen.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return [...w.seen];
}

describe("health on the memory store", () => {
  let c: Connected;
  beforeAll(async () => {
    c = await connect();
  });
  afterAll(async () => {
    await c?.close();
  });

  it("Check: the server and every service are SERVING", async () => {
    for (const service of [OVERALL, ...STORE_SERVICES, ...LOCAL_SERVICES]) {
      expect({ service, status: await status(c, service) }).toEqual({ service, status: Status.SERVING });
    }
  });

  it("Check of an unknown service fails NOT_FOUND", async () => {
    const err = await c.health.check({ service: "tessera.v1.NoSuchService" }).catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.NotFound);
  });

  it("List names every service the server has, and the server itself", async () => {
    const { statuses } = await c.health.list({});
    expect(Object.keys(statuses)).toEqual(expect.arrayContaining([OVERALL, ...STORE_SERVICES, ...LOCAL_SERVICES]));
    for (const s of Object.values(statuses)) expect(s.status).toBe(Status.SERVING);
  });

  it("Watch sends the current status at once, stays open and sends nothing until it changes; an unknown service is SERVICE_UNKNOWN", async () => {
    const own = await connect(); // this test ends in shutdown
    const unknown = watch(own, "tessera.v1.NoSuchService");
    const overall = watch(own, OVERALL);
    try {
      expect(await untilSeen(unknown, 1)).toEqual([Status.SERVICE_UNKNOWN]);
      expect(await untilSeen(overall, 1)).toEqual([Status.SERVING]);
      // The next change is the next thing the stream carries: it was still open, and sent nothing in between.
      own.server.app.readiness.beginShutdown();
      expect(await untilSeen(overall, 2)).toEqual([Status.SERVING, Status.NOT_SERVING]);
      // The change woke the unknown service's Watch too (every Watch hears every change, src/server/health.ts), and it
      // had nothing to send. A Check on the same connection, answered after the change, comes after anything it sent.
      expect(await status(own, OVERALL)).toBe(Status.NOT_SERVING);
      expect({ seen: unknown.seen, ended: unknown.ended }).toEqual({ seen: [Status.SERVICE_UNKNOWN], ended: false });
      expect(overall.ended).toBe(false);
    } finally {
      await overall.stop();
      await unknown.stop();
      await own.close();
    }
  });

  it("/healthz and /readyz answer 200", async () => {
    expect(await httpStatus(c, "/healthz")).toEqual({ code: 200, body: { status: "ok" } });
    expect(await httpStatus(c, "/readyz")).toEqual({ code: 200, body: { status: "ready" } });
  });
});

describe("health during shutdown", () => {
  let c: Connected | undefined;
  afterEach(async () => {
    await c?.close();
  });

  it("once shutdown begins, everything is NOT_SERVING, Watch hears it, /readyz is 503 and /healthz still 200", async () => {
    c = await connect();
    const overall = watch(c, OVERALL);
    const self = watch(c, "grpc.health.v1.Health");
    try {
      expect(await untilSeen(overall, 1)).toEqual([Status.SERVING]);
      expect(await untilSeen(self, 1)).toEqual([Status.SERVING]);
      c.server.app.readiness.beginShutdown();
      expect(await untilSeen(overall, 2)).toEqual([Status.SERVING, Status.NOT_SERVING]);
      expect(await untilSeen(self, 2)).toEqual([Status.SERVING, Status.NOT_SERVING]);
      for (const service of [OVERALL, ...STORE_SERVICES, ...LOCAL_SERVICES]) {
        expect({ service, status: await status(c, service) }).toEqual({ service, status: Status.NOT_SERVING });
      }
      expect(await httpStatus(c, "/readyz")).toEqual({ code: 503, body: { status: "not ready" } });
      expect((await httpStatus(c, "/healthz")).code).toBe(200);
    } finally {
      await overall.stop();
      await self.stop();
    }
  });
});

describe("health on Redis that goes away and comes back", () => {
  let redis: RedisServer;
  let c: Connected;
  beforeAll(async () => {
    redis = await RedisServer.start();
    c = await connect({
      TESSERA_REDIS_URL: redis.url,
      TESSERA_REDIS_PREFIX: "tessera-health:",
      TESSERA_STORE_TIMEOUT: "300ms",
    });
  });
  afterAll(async () => {
    await c?.close();
    await redis?.stop();
  });

  it("NOT_SERVING while Redis is down, SERVING again once it is back; Watch streams both transitions", async () => {
    for (const service of [OVERALL, ...STORE_SERVICES, ...LOCAL_SERVICES]) expect(await status(c, service)).toBe(Status.SERVING);
    expect((await httpStatus(c, "/readyz")).code).toBe(200);
    const overall = watch(c, OVERALL);
    const tokens = watch(c, "tessera.v1.TokenService");
    const self = watch(c, "grpc.health.v1.Health");
    try {
      expect(await untilSeen(overall, 1)).toEqual([Status.SERVING]);
      expect(await untilSeen(tokens, 1)).toEqual([Status.SERVING]);

      await redis.kill();
      expect(await until(() => status(c, OVERALL), Status.NOT_SERVING)).toBe(Status.NOT_SERVING);
      for (const service of STORE_SERVICES) expect(await status(c, service)).toBe(Status.NOT_SERVING);
      for (const service of LOCAL_SERVICES) expect(await status(c, service)).toBe(Status.SERVING);
      expect(await httpStatus(c, "/readyz")).toEqual({ code: 503, body: { status: "not ready" } });
      expect(await httpStatus(c, "/healthz")).toEqual({ code: 200, body: { status: "ok" } });
      expect(await untilSeen(overall, 2)).toEqual([Status.SERVING, Status.NOT_SERVING]);
      expect(await untilSeen(tokens, 2)).toEqual([Status.SERVING, Status.NOT_SERVING]);

      await redis.start();
      expect(await until(() => status(c, OVERALL), Status.SERVING, 15_000)).toBe(Status.SERVING);
      for (const service of STORE_SERVICES) expect(await status(c, service)).toBe(Status.SERVING);
      expect(await httpStatus(c, "/readyz")).toEqual({ code: 200, body: { status: "ready" } });
      expect(await untilSeen(overall, 3)).toEqual([Status.SERVING, Status.NOT_SERVING, Status.SERVING]);
      expect(await untilSeen(tokens, 3)).toEqual([Status.SERVING, Status.NOT_SERVING, Status.SERVING]);

      // Health itself never depended on Redis: its Watch heard both changes and sent nothing. Shutdown is a change it
      // does send, so it is the next (second) thing its stream carries; the others' streams carry exactly one more.
      c.server.app.readiness.beginShutdown();
      expect(await untilSeen(self, 2)).toEqual([Status.SERVING, Status.NOT_SERVING]);
      expect(await untilSeen(overall, 4)).toEqual([Status.SERVING, Status.NOT_SERVING, Status.SERVING, Status.NOT_SERVING]);
      expect(await untilSeen(tokens, 4)).toEqual([Status.SERVING, Status.NOT_SERVING, Status.SERVING, Status.NOT_SERVING]);
    } finally {
      await overall.stop();
      await tokens.stop();
      await self.stop();
    }
  });
});
