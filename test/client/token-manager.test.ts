/**
 * TokenManager against a real authority (startServer, port 0): the manager's own clock is a ManualClock, so "when"
 * is decided in the test (the server checks tokens on real time, and tokens live 15 minutes there, so moving the
 * manager's clock up to their expiry never makes the server refuse them). Refresh calls are counted by the server
 * (tessera_rpc_total). Faults are injected by client interceptors on the real transport: a try refused UNAVAILABLE
 * before it is sent, and a response dropped after the server answered (the grace window's case). The backoff's
 * waits are taken through the injected `sleep` (and, once, timed for real).
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { InactiveReason, type RefreshResponse } from "../../gen/tessera/v1/token_pb.js";
import { ManualClock } from "../../src/domain/clock.js";
import {
  MemoryTokenStorage,
  TokenManager,
  createTesseraClient,
  pairFrom,
  type Pair,
  type TesseraClient,
  type TokenManagerEvent,
  type TokenManagerOptions,
} from "../../src/client/index.js";
import { startServer, type StartedServer } from "../helpers/server.js";
import { rpcCount } from "./rpc-count.js";

const DEVICE = { deviceId: "bff-laptop-1", userAgent: "tm-test/1.0" };
const LEAD = 60_000;

let server: StartedServer;
let noGrace: StartedServer;
const clients: TesseraClient[] = [];

function clientOf(s: StartedServer, interceptors: Interceptor[] = [], apiKey?: string): TesseraClient {
  const c = createTesseraClient({ baseUrl: s.url, interceptors, apiKey });
  clients.push(c);
  return c;
}

async function login(s: StartedServer, subject = `tm-${randomUUID()}`): Promise<Pair> {
  return pairFrom(await clientOf(s).tokens.issue({ subject, scopes: ["read"], client: DEVICE }));
}

/** A manager on the given client with a manual clock; its events recorded. */
function manager(client: TesseraClient, pair: Pair | undefined, more: Partial<TokenManagerOptions> = {}) {
  const clock = new ManualClock(Date.now());
  const events: TokenManagerEvent[] = [];
  const m = new TokenManager({ client, pair, clientInfo: DEVICE, leadTimeMs: LEAD, clock, ...more });
  for (const type of ["refreshed", "retrying", "refresh_failed", "ended", "storage_failed"] as const) m.on(type, (e) => events.push(e));
  return { m, clock, events };
}

/** Fails the first `n` Refresh tries with `code` before they are sent. */
function refusing(n: number, code = Code.Unavailable): Interceptor {
  let seen = 0;
  return (next) => async (req) => {
    if (req.method.name === "Refresh" && seen++ < n) throw new ConnectError("injected before sending", code);
    return next(req);
  };
}

/** Lets the first Refresh reach the server, then drops its answer (UNAVAILABLE), keeping it for the test. */
function droppingFirstAnswer(): { interceptor: Interceptor; dropped: () => RefreshResponse | undefined } {
  let dropped: RefreshResponse | undefined;
  return {
    dropped: () => dropped,
    interceptor: (next) => async (req) => {
      const res = await next(req);
      if (req.method.name === "Refresh" && dropped === undefined && !res.stream) {
        dropped = res.message as RefreshResponse;
        throw new ConnectError("response lost on the way back", Code.Unavailable);
      }
      return res;
    },
  };
}

beforeAll(async () => {
  [server, noGrace] = await Promise.all([startServer({ TESSERA_REFRESH_GRACE: "10s" }), startServer({ TESSERA_REFRESH_GRACE: "0s" })]);
});
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all([server?.close(), noGrace?.close()]);
});

describe("TokenManager", () => {
  it("answers the held token until the lead time, then refreshes once and saves the new pair", async () => {
    const pair = await login(server);
    const storage = new MemoryTokenStorage();
    const { m, clock, events } = manager(clientOf(server), pair, { storage });
    const before = await rpcCount(server, "Refresh");

    clock.set(pair.accessExpiresAt - LEAD - 1);
    expect(await m.getAccessToken()).toBe(pair.accessToken);
    expect(await rpcCount(server, "Refresh")).toBe(before);

    clock.set(pair.accessExpiresAt - LEAD);
    const fresh = await m.getAccessToken();
    expect(fresh).not.toBe(pair.accessToken);
    expect(await rpcCount(server, "Refresh")).toBe(before + 1);
    expect((await storage.load())?.accessToken).toBe(fresh);
    expect((await storage.load())?.sessionId).toBe(pair.sessionId);
    expect(events.map((e) => e.type)).toEqual(["refreshed"]);
    // The new token is held until its own lead time.
    expect(await m.getAccessToken()).toBe(fresh);
    expect(await rpcCount(server, "Refresh")).toBe(before + 1);
  });

  it("100 concurrent callers at expiry make exactly one Refresh and all get its token", async () => {
    const pair = await login(server);
    const { m, clock } = manager(clientOf(server), pair);
    clock.set(pair.accessExpiresAt + 1);
    const before = await rpcCount(server, "Refresh");
    const tokens = await Promise.all(Array.from({ length: 100 }, () => m.getAccessToken()));
    expect(new Set(tokens).size).toBe(1);
    expect(tokens[0]).not.toBe(pair.accessToken);
    expect(await rpcCount(server, "Refresh")).toBe(before + 1);
  });

  it("loads the pair from its storage when none is given", async () => {
    const pair = await login(server);
    const saved: Pair[] = [];
    const storage = { load: async () => pair, save: async (p: Pair) => void saved.push(p), clear: async () => {} };
    const { m, clock } = manager(clientOf(server), undefined, { storage });
    expect(await m.getAccessToken()).toBe(pair.accessToken);
    clock.set(pair.accessExpiresAt);
    const fresh = await m.getAccessToken();
    expect(saved.map((p) => p.accessToken)).toEqual([fresh]);
  });

  it("a storage that fails: loading is asked again next time; a failed save is reported, the refreshed pair still used", async () => {
    const pair = await login(server);
    let loads = 0;
    const storage = {
      load: async () => (++loads === 1 ? Promise.reject(new Error("disk away")) : pair),
      save: async () => Promise.reject(new Error("disk full")),
      clear: async () => {},
    };
    const { m, clock, events } = manager(clientOf(server), undefined, { storage });
    await expect(m.getAccessToken()).rejects.toThrow("disk away");
    expect(await m.getAccessToken()).toBe(pair.accessToken);
    clock.set(pair.accessExpiresAt - LEAD);
    const fresh = await m.getAccessToken();
    expect(fresh).not.toBe(pair.accessToken);
    expect(events.map((e) => e.type)).toEqual(["storage_failed", "refreshed"]);
    expect(await m.getAccessToken()).toBe(fresh);
  });

  it("backs off with full jitter between tries: waits of random * min(maxMs, baseMs * 2^n)", async () => {
    const pair = await login(server);
    const waits: number[] = [];
    const { m, clock, events } = manager(clientOf(server, [refusing(2), refusing(1, Code.DeadlineExceeded)]), pair, {
      retry: { attempts: 5, baseMs: 100, maxMs: 250 },
      random: () => 0.5,
      sleep: async (ms) => {
        waits.push(ms);
        clock.advance(ms);
      },
    });
    clock.set(pair.accessExpiresAt - 1000);
    const before = await rpcCount(server, "Refresh");
    const fresh = await m.getAccessToken();
    expect(fresh).not.toBe(pair.accessToken);
    // Tries 1 and 2 refused UNAVAILABLE, try 3 DEADLINE_EXCEEDED, try 4 through.
    expect(waits).toEqual([50, 100, 125]);
    expect(events.filter((e) => e.type === "retrying").map((e) => (e as { attempt: number }).attempt)).toEqual([1, 2, 3]);
    expect(await rpcCount(server, "Refresh")).toBe(before + 1);
  });

  it("waits those times for real", async () => {
    const pair = await login(server);
    const { m, clock } = manager(clientOf(server, [refusing(3)]), pair, { retry: { attempts: 5, baseMs: 100, maxMs: 1000 }, random: () => 0.5 });
    clock.set(pair.accessExpiresAt);
    const started = performance.now();
    await m.getAccessToken();
    const took = performance.now() - started;
    // 50 + 100 + 200 ms of waiting, plus the calls.
    expect(took).toBeGreaterThanOrEqual(345);
    expect(took).toBeLessThan(3_000);
  });

  it("out of tries: the held token while it is valid, the error once it has expired", async () => {
    const pair = await login(server);
    const { m, clock, events } = manager(clientOf(server, [refusing(1_000)]), pair, {
      retry: { attempts: 3, baseMs: 1, maxMs: 1 },
      sleep: async () => {},
    });
    clock.set(pair.accessExpiresAt - 1000);
    expect(await m.getAccessToken()).toBe(pair.accessToken);
    expect(events.at(-1)).toMatchObject({ type: "refresh_failed", usingHeldToken: true });
    clock.set(pair.accessExpiresAt);
    const err = await m.getAccessToken().catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unavailable);
    expect(events.at(-1)).toMatchObject({ type: "refresh_failed", usingHeldToken: false });
    expect(m.endReason).toBeUndefined(); // not ended: the next call tries again
    expect(await m.current()).toEqual(pair);
  });

  it("recovers a lost Refresh response through the server's grace window: the same pair, the session intact", async () => {
    const pair = await login(server);
    const drop = droppingFirstAnswer();
    const { m, clock } = manager(clientOf(server, [drop.interceptor]), pair, { retry: { attempts: 5, baseMs: 10, maxMs: 50 } });
    clock.set(pair.accessExpiresAt);
    const before = await rpcCount(server, "Refresh");
    const reuseBefore = await reuseCount(server);
    const token = await m.getAccessToken();
    const lost = drop.dropped();
    expect(lost).toBeDefined();
    expect(token).toBe(lost!.tokens!.accessToken);
    expect((await m.current())?.refreshToken).toBe(lost!.tokens!.refreshToken);
    expect(await rpcCount(server, "Refresh")).toBe(before + 2);
    expect(await reuseCount(server)).toBe(reuseBefore);
    const check = clientOf(server);
    expect((await check.tokens.introspect({ token })).active).toBe(true);
    // And the session goes on refreshing.
    clock.set((await m.current())!.accessExpiresAt);
    expect(await m.getAccessToken()).not.toBe(token);
  });

  it("without a grace window the same loss is reuse: the session ends, the pair and storage are cleared, `ended` says why", async () => {
    const pair = await login(noGrace);
    const drop = droppingFirstAnswer();
    const storage = new MemoryTokenStorage();
    const { m, clock, events } = manager(clientOf(noGrace, [drop.interceptor]), pair, { storage, retry: { attempts: 5, baseMs: 10, maxMs: 50 } });
    clock.set(pair.accessExpiresAt);
    const err = await m.getAccessToken().catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect(m.endReason).toBe("reuse_detected");
    expect(events.filter((e) => e.type === "ended")).toMatchObject([{ type: "ended", reason: "reuse_detected" }]);
    expect(await storage.load()).toBeUndefined();
    expect(await m.current()).toBeUndefined();
    // The server revoked the session: the lost pair is dead too.
    const r = await clientOf(noGrace).tokens.introspect({ token: drop.dropped()!.tokens!.accessToken });
    expect(r.inactiveReason).toBe(InactiveReason.REVOKED);
  });

  it("UNAUTHENTICATED (session revoked) ends it: pair and storage cleared, `ended` emitted, later calls fail without a Refresh", async () => {
    const pair = await login(server);
    const storage = new MemoryTokenStorage();
    const { m, clock, events } = manager(clientOf(server), pair, { storage });
    await clientOf(server).tokens.revoke({ target: { case: "sessionId", value: pair.sessionId! } });
    clock.set(pair.accessExpiresAt);
    const err = await m.getAccessToken().catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Unauthenticated);
    expect(events).toMatchObject([{ type: "ended", reason: "session_ended" }]);
    expect((events[0] as { error?: ConnectError }).error?.code).toBe(Code.Unauthenticated);
    expect(await storage.load()).toBeUndefined();
    const before = await rpcCount(server, "Refresh");
    expect(await m.getAccessToken().catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unauthenticated);
    expect(await rpcCount(server, "Refresh")).toBe(before);
    // A new login revives it.
    const again = await login(server);
    await m.setPair(again);
    clock.set(Date.now());
    expect(await m.getAccessToken()).toBe(again.accessToken);
    expect(m.endReason).toBeUndefined();
  });

  it("ends without asking the server once the refresh token itself has expired", async () => {
    const pair = await login(server);
    const { m, clock, events } = manager(clientOf(server), pair);
    clock.set(pair.refreshExpiresAt);
    const before = await rpcCount(server, "Refresh");
    expect(await m.getAccessToken().catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unauthenticated);
    expect(events).toMatchObject([{ type: "ended", reason: "refresh_expired" }]);
    expect(await rpcCount(server, "Refresh")).toBe(before);
  });

  it("does not end the session when the authority refuses the service's own credentials", async () => {
    const dir = await mkdtemp(join(tmpdir(), "tessera-tm-"));
    const key = `tk_${randomBytes(24).toString("base64url")}`;
    const file = join(dir, "callers.json");
    const sha256 = createHash("sha256").update(key).digest("hex");
    await writeFile(file, JSON.stringify({ callers: [{ name: "bff", permissions: ["issue", "refresh"], api_keys: [{ sha256 }] }] }));
    const guarded = await startServer({ TESSERA_CALLERS_FILE: file });
    try {
      const pair = pairFrom(await clientOf(guarded, [], key).tokens.issue({ subject: "tm-creds", client: DEVICE }));
      const storage = new MemoryTokenStorage();
      const { m, clock, events } = manager(clientOf(guarded, [], "tk_rotated_away"), pair, { storage });
      clock.set(pair.accessExpiresAt);
      expect(await m.getAccessToken().catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unauthenticated);
      expect(m.endReason).toBeUndefined();
      expect(events.map((e) => e.type)).toEqual(["refresh_failed"]);
      expect((await storage.load())?.refreshToken).toBe(pair.refreshToken);
    } finally {
      await guarded.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("TokenManager reads why from the ErrorInfo reason, not from the message", () => {
  /** Replaces every error's message, keeping its code and details. */
  const reworded: Interceptor = (next) => async (req) => {
    try {
      return await next(req);
    } catch (e) {
      const err = ConnectError.from(e);
      const out = new ConnectError("reworded by a proxy", err.code);
      out.details.push(...err.details);
      throw out;
    }
  };

  it("a revoked session ends as session_ended; a refused API key keeps the session", async () => {
    const server = await startServer();
    const dir = await mkdtemp(join(tmpdir(), "tessera-tm-"));
    const key = `tk_${randomBytes(24).toString("base64url")}`;
    const file = join(dir, "callers.json");
    await writeFile(file, JSON.stringify({ callers: [{ name: "bff", permissions: ["issue", "refresh", "revoke"], api_keys: [{ sha256: createHash("sha256").update(key).digest("hex") }] }] }));
    const guarded = await startServer({ TESSERA_CALLERS_FILE: file });
    try {
      const pair = await login(server);
      await clientOf(server).tokens.revoke({ target: { case: "sessionId", value: pair.sessionId! } });
      const ended = manager(clientOf(server, [reworded]), pair);
      ended.clock.set(pair.accessExpiresAt);
      expect(await ended.m.getAccessToken().catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unauthenticated);
      expect(ended.m.endReason).toBe("session_ended");

      const guardedPair = pairFrom(await clientOf(guarded, [], key).tokens.issue({ subject: "tm-reasons", client: DEVICE }));
      const kept = manager(clientOf(guarded, [reworded], "tk_not_a_known_key"), guardedPair);
      kept.clock.set(guardedPair.accessExpiresAt);
      expect(await kept.m.getAccessToken().catch((e: unknown) => ConnectError.from(e).code)).toBe(Code.Unauthenticated);
      expect(kept.m.endReason).toBeUndefined();
    } finally {
      await Promise.all([server.close(), guarded.close()]);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

async function reuseCount(s: StartedServer): Promise<number> {
  const metric = s.app.metrics.registry.getSingleMetric("tessera_refresh_reuse_total");
  const { values } = await metric!.get();
  return values.reduce((n, v) => n + v.value, 0);
}
