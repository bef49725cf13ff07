/**
 * Shutdown behind a load balancer (TESSERA_SHUTDOWN_DELAY), on real processes, the authority and the sidecar: on
 * SIGTERM, /readyz answers 503 and health NOT_SERVING at once (an open Watch hears it), while the port goes on
 * accepting connections and serving calls for the delay; then the drain: the Watch ends with UNAVAILABLE, a gRPC
 * status (not a broken stream), and the process exits 0.
 */
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import { Code, ConnectError, tesseraClient } from "../helpers/clients.js";
import { spawnAuthority, spawnSidecar, startServer, type SpawnedAuthority, type StartedServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const DELAY_MS = 2500;

/** A health Watch of the whole server on a connection of its own: what it received, and how it ended. */
function watchHealth(url: string) {
  const sessions = new Http2SessionManager(url);
  const health = createClient(Health, createGrpcTransport({ baseUrl: url, sessionManager: sessions }));
  const seen: Status[] = [];
  let endedAt: number | undefined;
  const ended = (async (): Promise<ConnectError | "ended without an error"> => {
    try {
      for await (const res of health.watch({ service: "" })) seen.push(res.status);
      return "ended without an error";
    } catch (err) {
      return ConnectError.from(err);
    } finally {
      endedAt = Date.now();
      sessions.abort();
    }
  })();
  return {
    seen,
    ended,
    get endedAt() {
      return endedAt;
    },
  };
}

/** A fresh client (a new connection) for each question: the port must still accept them during the delay. */
async function checkHealth(url: string): Promise<Status> {
  const sessions = new Http2SessionManager(url);
  try {
    const health: Client<typeof Health> = createClient(Health, createGrpcTransport({ baseUrl: url, sessionManager: sessions }));
    return (await health.check({ service: "" }, { timeoutMs: 2000 })).status;
  } finally {
    sessions.abort();
  }
}

async function readyz(url: string): Promise<number> {
  const res = await fetch(`${url}/readyz`, { headers: { connection: "close" } });
  await res.arrayBuffer();
  return res.status;
}

async function introspectOnNewConnection(url: string, token: string): Promise<boolean> {
  const c = tesseraClient("grpc-js", url);
  try {
    return (await c.introspect(token)).active;
  } finally {
    c.close();
  }
}

/**
 * SIGTERM to `proc`, then everything the delay promises, on new connections; then the Watch's UNAVAILABLE and exit 0.
 */
async function expectGracefulStop(proc: SpawnedAuthority, token: string): Promise<void> {
  const watch = watchHealth(proc.url);
  await until(() => watch.seen.length > 0, 5_000, "the Watch's first status");
  expect(watch.seen).toEqual([Status.SERVING]);
  expect(await readyz(proc.url)).toBe(200);

  const signalled = Date.now();
  void proc.kill("SIGTERM");
  await until(() => watch.seen.length > 1, 5_000, "the Watch to hear NOT_SERVING");
  expect(watch.seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
  // During the delay: not ready, yet new connections are accepted and new calls served.
  expect(await readyz(proc.url)).toBe(503);
  expect(await checkHealth(proc.url)).toBe(Status.NOT_SERVING);
  expect(await introspectOnNewConnection(proc.url, token)).toBe(true);
  expect(watch.endedAt).toBeUndefined(); // still open: the drain has not begun
  expect(Date.now() - signalled).toBeLessThan(DELAY_MS);

  // Then the drain: the Watch ends with a status, UNAVAILABLE, and the process exits 0.
  const end = await watch.ended;
  expect(end).toBeInstanceOf(ConnectError);
  expect({ code: Code[(end as ConnectError).code], message: (end as ConnectError).rawMessage }).toEqual({
    code: "Unavailable",
    message: "server is shutting down",
  });
  expect(watch.endedAt! - signalled).toBeGreaterThanOrEqual(DELAY_MS - 100);
  expect(await proc.exited).toBe(0);
}

describe("TESSERA_SHUTDOWN_DELAY", () => {
  const procs: SpawnedAuthority[] = [];
  let authority: StartedServer | undefined;
  afterEach(async () => {
    await Promise.all(procs.splice(0).map((p) => p.kill("SIGKILL")));
    await authority?.close();
    authority = undefined;
  });

  it("the authority: NOT_SERVING and /readyz 503 at once, still serving for the delay, then Watch UNAVAILABLE and exit 0", async () => {
    const proc = await spawnAuthority({ TESSERA_SHUTDOWN_DELAY: `${DELAY_MS}ms`, TESSERA_LOG_LEVEL: "info" });
    procs.push(proc);
    const c = tesseraClient("grpc-js", proc.url);
    const token = (await c.issue({ subject: "leaving" })).tokens.accessToken;
    c.close();
    await expectGracefulStop(proc, token);
    const lines = proc.stdout.map((l) => JSON.parse(l) as { msg: string; delayMs?: number });
    expect(lines).toContainEqual(expect.objectContaining({ msg: "not ready: serving on for TESSERA_SHUTDOWN_DELAY, then draining", delayMs: DELAY_MS }));
  });

  it("the sidecar: the same", async () => {
    authority = await startServer({});
    const sidecar = await spawnSidecar({ TESSERA_AUTHORITY_URL: authority.url, TESSERA_SHUTDOWN_DELAY: `${DELAY_MS}ms` });
    procs.push(sidecar);
    const c = tesseraClient("grpc-js", authority.url);
    const token = (await c.issue({ subject: "leaving-sidecar" })).tokens.accessToken;
    c.close();
    await until(async () => (await checkHealth(sidecar.url).catch(() => Status.UNKNOWN)) === Status.SERVING, 15_000, "the sidecar to serve");
    await expectGracefulStop(sidecar, token);
  });

  it("unset (0s): the drain begins at once, as before, and the Watch still ends UNAVAILABLE", async () => {
    const proc = await spawnAuthority({});
    procs.push(proc);
    const watch = watchHealth(proc.url);
    await until(() => watch.seen.length > 0, 5_000, "the Watch's first status");
    void proc.kill("SIGTERM");
    const end = await watch.ended;
    expect(watch.seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
    expect(end instanceof ConnectError ? Code[end.code] : end).toBe("Unavailable");
    expect(await proc.exited).toBe(0);
  });
});
