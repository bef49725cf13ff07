/**
 * tessera.v1.RevocationService.WatchRevocations end to end, against a real server on port 0 (in-process, through
 * loadConfig), once on the memory store and once on Redis (a key prefix of its own, deleted afterwards): the snapshot
 * lists every kind of revocation the API makes (by token, by session, by subject, reuse detection, eviction) with the
 * times a verifier needs; a change reaches an open watch at once; a cursor resumes after it; heartbeats keep coming
 * at the asked interval; bad requests and unusable cursors get their codes; the permission is checked; an outage of
 * the store and a server shutdown end the watch UNAVAILABLE; a trimmed cursor is OUT_OF_RANGE.
 *
 * The stream is read through connect's gRPC transport (createGrpcTransport, via helpers/clients.ts connectTransport
 * "connect-grpc") and through @grpc/grpc-js with @grpc/proto-loader on proto/tessera/v1/revocation.proto, both turned
 * into one plain shape (times in ms). Every wait is for a condition, bounded; none is a fixed sleep.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { durationFromMs, timestampMs, type Duration } from "@bufbuild/protobuf/wkt";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, inject, it } from "vitest";
import { RevocationKind, RevocationService, type WatchRevocationsResponse } from "../../gen/tessera/v1/revocation_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { ManualClock } from "../../src/domain/clock.js";
import { PERMISSIONS } from "../../src/domain/permissions.js";
import { Code, codeOf, connectTransport, ConnectError, tesseraClient, type TesseraClient } from "../helpers/clients.js";
import { redisScope, startServer, type RedisScope, type StartedServer } from "../helpers/server.js";
import { TcpGate } from "../helpers/tcp-gate.js";
import { until } from "../helpers/wait.js";

const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));
const PHONE = { deviceId: "phone-1", userAgent: "tessera-e2e/1.0" };

// ---------------------------------------------------------------------------------------------------------------
// One shape for a watch, whichever client reads it

interface Rev {
  kind: RevocationKind;
  subject: string;
  target: string;
  sessionIds: string[];
  revokedAt: number;
  expiresAt: number;
  reason: string;
}

interface Msg {
  revocations: Rev[];
  cursor: string;
  snapshot: boolean;
  current: boolean;
  serverTime: number;
  /** Local Date.now() when it arrived. */
  receivedAt: number;
}

interface End {
  code: Code | "OK";
  message: string;
  at: number;
}

interface Watch {
  readonly messages: Msg[];
  /** Set once the stream has ended (by the server; or Canceled after cancel()). */
  end: End | undefined;
  cancel(): void;
}

interface WatchRequest {
  cursor?: string;
  heartbeatMs?: number;
  heartbeat?: Duration;
}

/** Every watch opened by a test, cancelled after it. */
const openWatches: Watch[] = [];

function connectWatch(client: Client<typeof RevocationService>, req: WatchRequest, opts: CallOptions = {}): Watch {
  const abort = new AbortController();
  const w: Watch = { messages: [], end: undefined, cancel: () => abort.abort() };
  const heartbeatInterval = req.heartbeat ?? (req.heartbeatMs === undefined ? undefined : durationFromMs(req.heartbeatMs));
  void (async () => {
    try {
      for await (const m of client.watchRevocations(
        { cursor: req.cursor ?? "", ...(heartbeatInterval ? { heartbeatInterval } : {}) },
        { ...opts, signal: abort.signal },
      )) {
        w.messages.push(fromConnect(m));
      }
      w.end = { code: "OK", message: "", at: Date.now() };
    } catch (err) {
      const e = ConnectError.from(err);
      w.end = { code: e.code, message: e.rawMessage, at: Date.now() };
    }
  })();
  openWatches.push(w);
  return w;
}

function fromConnect(m: WatchRevocationsResponse): Msg {
  return {
    revocations: m.revocations.map((r) => ({
      kind: r.kind,
      subject: r.subject,
      target: r.target,
      sessionIds: [...r.sessionIds],
      revokedAt: r.revokedAt ? timestampMs(r.revokedAt) : NaN,
      expiresAt: r.expiresAt ? timestampMs(r.expiresAt) : NaN,
      reason: r.reason,
    })),
    cursor: m.cursor,
    snapshot: m.snapshot,
    current: m.current,
    serverTime: m.serverTime ? timestampMs(m.serverTime) : NaN,
    receivedAt: Date.now(),
  };
}

let grpcPackage: grpc.GrpcObject | undefined;

/** A grpc-js RevocationService client built from the .proto at run time (keepCase false, longs String, enums numbers). */
function grpcJsRevocations(baseUrl: string): grpc.Client {
  grpcPackage ??= grpc.loadPackageDefinition(
    loadSync(["tessera/v1/revocation.proto"], { includeDirs: [PROTO_DIR], keepCase: false, longs: String, defaults: true, oneofs: true }),
  );
  const v1 = (grpcPackage.tessera as grpc.GrpcObject).v1 as grpc.GrpcObject;
  const Ctor = v1.RevocationService as grpc.ServiceClientConstructor;
  return new Ctor(new URL(baseUrl).host, grpc.credentials.createInsecure());
}

type GrpcTs = { seconds: string; nanos: number } | null | undefined;
const grpcMs = (t: unknown): number => {
  const ts = t as GrpcTs;
  return ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6) : NaN;
};

function grpcJsWatch(client: grpc.Client, req: WatchRequest, metadata = new grpc.Metadata()): Watch {
  const ms = req.heartbeatMs;
  const request = {
    cursor: req.cursor ?? "",
    heartbeatInterval: ms === undefined ? null : { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 },
  };
  const call = (client as unknown as Record<string, (r: unknown, m: grpc.Metadata) => grpc.ClientReadableStream<Record<string, unknown>>>)
    .watchRevocations!.call(client, request, metadata);
  const w: Watch = { messages: [], end: undefined, cancel: () => call.cancel() };
  call.on("data", (m: Record<string, unknown>) => {
    w.messages.push({
      revocations: (m.revocations as Record<string, unknown>[]).map((r) => ({
        kind: r.kind as RevocationKind,
        subject: r.subject as string,
        target: r.target as string,
        sessionIds: [...(r.sessionIds as string[])],
        revokedAt: grpcMs(r.revokedAt),
        expiresAt: grpcMs(r.expiresAt),
        reason: r.reason as string,
      })),
      cursor: m.cursor as string,
      snapshot: m.snapshot as boolean,
      current: m.current as boolean,
      serverTime: grpcMs(m.serverTime),
      receivedAt: Date.now(),
    });
  });
  call.on("error", () => {}); // the status event below carries the code
  call.on("status", (s: grpc.StatusObject) => {
    w.end ??= { code: s.code === grpc.status.OK ? "OK" : (s.code as number as Code), message: s.details, at: Date.now() };
  });
  openWatches.push(w);
  return w;
}

/** Throws (failing an `until` at once) if the watch ended while a test still waits for something of it. */
function alive(w: Watch, what: string): void {
  if (w.end) throw new Error(`the watch ended (${endName(w.end)}: ${w.end.message}) while waiting for ${what}`);
}

const endName = (e: End): string => (e.code === "OK" ? "OK" : Code[e.code]);

/** The snapshot: every message up to and including the first with current set. */
async function snapshotOf(w: Watch, timeoutMs = 10_000): Promise<Msg[]> {
  const at = await until(
    () => {
      const i = w.messages.findIndex((m) => m.current);
      if (i >= 0) return i + 1;
      alive(w, "the snapshot");
      return 0;
    },
    timeoutMs,
    "the end of the snapshot (a message with current set)",
  );
  return w.messages.slice(0, at);
}

/** Messages after the first `skip` that satisfy `pred`, once there are at least `n` of them. */
async function messagesAfter(w: Watch, skip: number, n: number, pred: (m: Msg) => boolean, timeoutMs: number, what: string): Promise<Msg[]> {
  return until(
    () => {
      const got = w.messages.slice(skip).filter(pred);
      if (got.length >= n) return got;
      alive(w, what);
      return null;
    },
    timeoutMs,
    what,
  );
}

/** How a watch ends: its code, or "message" if the server sent a message first (it should have refused). */
async function refusal(w: Watch, timeoutMs = 5_000): Promise<End["code"] | "message"> {
  return until(() => w.end?.code ?? (w.messages.length > 0 ? ("message" as const) : undefined), timeoutMs, "the watch to be refused");
}

const isHeartbeat = (m: Msg) => m.current && !m.snapshot && m.revocations.length === 0;
const hasRevocations = (m: Msg) => m.revocations.length > 0;
const revocationsOf = (msgs: Msg[]) => msgs.flatMap((m) => m.revocations);

/**
 * Whether cursor `a` comes after `b`, both of one feed (memory `<epoch>-<id>`, Redis `<epoch>.<ms>-<seq>`): their
 * numbers after the Redis epoch compared in turn (the memory epoch is the same number in both).
 */
function cursorAfter(a: string, b: string): boolean {
  const numbers = (c: string) => c.slice(c.indexOf(".") + 1).split("-").map(BigInt);
  const [[am = 0n, as = 0n], [bm = 0n, bs = 0n]] = [numbers(a), numbers(b)];
  return am > bm || (am === bm && as > bs);
}

/** The jti of a JWT (payload read without verifying: the test made the token). */
function jtiOf(jwt: string): string {
  return (JSON.parse(Buffer.from(jwt.split(".")[1]!, "base64url").toString("utf8")) as { jti: string }).jti;
}

/** Runs `fn` and returns its result with the Date.now() instants just before and after it. */
async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; before: number; after: number }> {
  const before = Date.now();
  const value = await fn();
  return { value, before, after: Date.now() };
}

// ---------------------------------------------------------------------------------------------------------------
// Servers of each store

interface Started {
  server: StartedServer;
  api: TesseraClient;
  feed: Client<typeof RevocationService>;
  grpcJs: grpc.Client;
}

const started: Started[] = [];
const scopes: RedisScope[] = [];

interface StoreKind {
  name: "memory" | "redis";
  /** A cursor of this feed's form far beyond anything it handed out, made from one it did hand out. */
  farCursor(handedOut: string): string;
  env(): Record<string, string>;
}

const STORES: StoreKind[] = [
  // Memory cursors are `<epoch>-<id>` (the epoch drawn per process); Redis cursors `<epoch>.<ms>-<seq>` (the epoch
  // drawn when the feed's stream was made).
  { name: "memory", farCursor: (c) => `${c.split("-")[0]}-999999999`, env: () => ({}) },
  {
    name: "redis",
    farCursor: (c) => `${c.split(".")[0]}.99999999999999-0`,
    env: () => {
      const scope = redisScope(inject("redisUrl"), "revocation-feed");
      scopes.push(scope);
      return scope.env;
    },
  },
];

const BASE_ENV = { TESSERA_SHUTDOWN_GRACE: "10s", TESSERA_LOG_LEVEL: "warn" };

async function start(env: Record<string, string>, clock?: ManualClock): Promise<Started> {
  const server = await startServer({ ...BASE_ENV, ...env }, clock ? { clock } : {});
  const transport = connectTransport("connect-grpc", server.url);
  const s: Started = {
    server,
    api: tesseraClient("connect-grpc", server.url),
    feed: createClient(RevocationService, transport.transport),
    grpcJs: grpcJsRevocations(server.url),
  };
  const closeApi = s.api.close.bind(s.api);
  s.api.close = () => {
    closeApi();
    transport.close();
  };
  started.push(s);
  return s;
}

afterEach(async () => {
  for (const w of openWatches.splice(0)) if (!w.end) w.cancel();
  for (const s of started.splice(0)) {
    s.api.close();
    s.grpcJs.close();
    await s.server.close();
  }
});

afterAll(async () => {
  for (const scope of scopes) await scope.cleanup();
});

// ---------------------------------------------------------------------------------------------------------------

describe.each(STORES)("WatchRevocations on the $name store", (store) => {
  it("a watch without cursor starts with a snapshot of every earlier revocation, each with its kind, target, times and reason", async () => {
    const SKEW_MS = 7_000;
    const ACCESS_TTL_MAX_MS = 2 * 3600_000;
    const RETENTION_MS = ACCESS_TTL_MAX_MS + SKEW_MS; // domain/authority.ts retentionMs
    const { api, feed, grpcJs } = await start({
      ...store.env(),
      TESSERA_MAX_SESSIONS: "2",
      TESSERA_REFRESH_GRACE: "0s",
      TESSERA_CLOCK_SKEW: "7s",
      TESSERA_ACCESS_TTL: "10m",
      TESSERA_ACCESS_TTL_MAX: "2h",
    });

    // By token.
    const tok = await api.issue({ subject: "feed-token-user", client: PHONE });
    const byToken = await timed(() => api.revoke({ token: tok.tokens.accessToken }, "lost phone"));
    expect(byToken.value).toEqual({ sessionsRevoked: 0, tokenRevoked: true });

    // By session.
    const ses = await api.issue({ subject: "feed-session-user", client: PHONE });
    const bySession = await timed(() => api.revoke({ sessionId: ses.sessionId }, "signed out"));
    expect(bySession.value.sessionsRevoked).toBe(1);

    // By subject, with two live sessions; a session opened after the logout lives and is not listed.
    const s1 = await api.issue({ subject: "feed-subject-user", client: { deviceId: "d1" } });
    const s2 = await api.issue({ subject: "feed-subject-user", client: { deviceId: "d2" } });
    const bySubject = await timed(() => api.revoke({ subject: "feed-subject-user" }, "password changed"));
    expect(bySubject.value.sessionsRevoked).toBe(2);
    const s3 = await api.issue({ subject: "feed-subject-user", client: { deviceId: "d3" } });

    // Reuse detection: a rotated-out refresh token presented again (no grace window) ends the session.
    const r = await api.issue({ subject: "feed-reuse-user", client: PHONE });
    await api.refresh(r.tokens.refreshToken, PHONE);
    const reuse = await timed(() => codeOf(api.refresh(r.tokens.refreshToken, PHONE)));
    expect(reuse.value).toBe(Code.Unauthenticated);

    // Eviction: a third session with TESSERA_MAX_SESSIONS=2 evicts one.
    const e1 = await api.issue({ subject: "feed-evict-user", client: { deviceId: "e1" } });
    const e2 = await api.issue({ subject: "feed-evict-user", client: { deviceId: "e2" } });
    const evict = await timed(() => api.issue({ subject: "feed-evict-user", client: { deviceId: "e3" } }));
    const stillLive = new Set((await api.listSessions("feed-evict-user")).map((s) => s.sessionId));
    const evicted = [e1, e2, evict.value].map((s) => s.sessionId).filter((id) => !stillLive.has(id));
    expect(evicted).toHaveLength(1);

    for (const w of [connectWatch(feed, {}), grpcJsWatch(grpcJs, {})]) {
      const snapshot = await snapshotOf(w);
      expect(snapshot.every((m) => m.snapshot)).toBe(true);
      expect(snapshot.map((m) => m.current)).toEqual([...Array(snapshot.length - 1).fill(false), true]);
      const revs = revocationsOf(snapshot);
      expect(revs.map((x) => [RevocationKind[x.kind], x.subject])).toEqual([
        ["TOKEN", "feed-token-user"],
        ["SESSION", "feed-session-user"],
        ["SUBJECT", "feed-subject-user"],
        ["SESSION", "feed-reuse-user"],
        ["SESSION", "feed-evict-user"],
      ]);
      const [t, s, subj, ru, ev] = revs as [Rev, Rev, Rev, Rev, Rev];

      expect(t).toMatchObject({ target: jtiOf(tok.tokens.accessToken), sessionIds: [], reason: "lost phone" });
      expect(t.expiresAt).toBe(tok.tokens.accessExpiresAt + SKEW_MS);
      expect(s).toMatchObject({ target: ses.sessionId, sessionIds: [], reason: "signed out" });
      expect(subj).toMatchObject({ target: "", reason: "password changed" });
      expect([...subj.sessionIds].sort()).toEqual([s1.sessionId, s2.sessionId].sort());
      expect(subj.sessionIds).not.toContain(s3.sessionId);
      expect(ru).toMatchObject({ target: r.sessionId, sessionIds: [] });
      expect(ru.reason).toMatch(/reuse/);
      expect(ev).toMatchObject({ target: evicted[0], sessionIds: [] });
      expect(ev.reason).toMatch(/evict/);

      const windows: [Rev, { before: number; after: number }][] = [[t, byToken], [s, bySession], [subj, bySubject], [ru, reuse], [ev, evict]];
      for (const [rev, when] of windows) {
        expect(rev.revokedAt).toBeGreaterThanOrEqual(when.before);
        expect(rev.revokedAt).toBeLessThanOrEqual(when.after);
      }
      for (const rev of [s, subj, ru, ev]) expect(rev.expiresAt - rev.revokedAt).toBe(RETENTION_MS);
      // The snapshot's cursor is that of the last entry, and its server time is after every revocation.
      expect(snapshot.at(-1)!.serverTime).toBeGreaterThanOrEqual(evict.after - 1);
    }
  });

  it("a revocation made through the API reaches an open watch at once; a cursor resumes after it", async () => {
    const { api, feed, grpcJs } = await start(store.env());
    const earlier = await api.issue({ subject: "live-user", client: PHONE });
    await api.revoke({ sessionId: earlier.sessionId }, "before the watch");

    // A heartbeat interval of 60s: anything arriving within seconds was pushed by the change, not found by a poll.
    const w = connectWatch(feed, { heartbeatMs: 60_000 });
    const snapshot = await snapshotOf(w);
    expect(revocationsOf(snapshot).map((x) => x.target)).toEqual([earlier.sessionId]);
    const snapshotCursor = snapshot.at(-1)!.cursor;
    const firstCursor = w.messages[0]!.cursor;

    const a = await api.issue({ subject: "live-user", client: PHONE });
    const revokedA = await timed(() => api.revoke({ token: a.tokens.accessToken }, "live one"));
    const [liveA] = await messagesAfter(w, snapshot.length, 1, hasRevocations, 3_000, "the live revocation on the open watch");
    expect(liveA!.receivedAt - revokedA.after).toBeLessThan(3_000);
    expect(liveA).toMatchObject({ current: true, snapshot: false });
    expect(liveA!.revocations).toEqual([
      expect.objectContaining({ kind: RevocationKind.TOKEN, subject: "live-user", target: jtiOf(a.tokens.accessToken), reason: "live one" }),
    ]);
    expect(cursorAfter(liveA!.cursor, snapshotCursor)).toBe(true);

    const b = await api.issue({ subject: "live-user", client: PHONE });
    await api.revoke({ sessionId: b.sessionId }, "live two");
    const [, liveB] = await messagesAfter(w, snapshot.length, 2, hasRevocations, 3_000, "the second live revocation");
    expect(liveB!.revocations.map((x) => [x.kind, x.target])).toEqual([[RevocationKind.SESSION, b.sessionId]]);
    expect(cursorAfter(liveB!.cursor, liveA!.cursor)).toBe(true);

    // Resuming (grpc-js) from the first message's cursor: only what came after it, no snapshot.
    const resumed = grpcJsWatch(grpcJs, { cursor: firstCursor, heartbeatMs: 60_000 });
    const got = await messagesAfter(resumed, 0, 1, (m) => m.current, 5_000, "the resumed watch to catch up");
    expect(resumed.messages.every((m) => !m.snapshot)).toBe(true);
    expect(revocationsOf(got).map((x) => [x.kind, x.target, x.reason])).toEqual([
      [RevocationKind.TOKEN, jtiOf(a.tokens.accessToken), "live one"],
      [RevocationKind.SESSION, b.sessionId, "live two"],
    ]);
    expect(got.at(-1)!.cursor).toBe(liveB!.cursor);

    // Resuming from the first live message's cursor: only the second.
    const resumed2 = connectWatch(feed, { cursor: liveA!.cursor, heartbeatMs: 60_000 });
    const got2 = await messagesAfter(resumed2, 0, 1, (m) => m.current, 5_000, "the second resumed watch to catch up");
    expect(revocationsOf(got2).map((x) => x.target)).toEqual([b.sessionId]);
  });

  it("heartbeats: current messages without revocations keep coming, about heartbeat_interval apart", async () => {
    const { api, feed } = await start(store.env());
    const x = await api.issue({ subject: "quiet-user", client: PHONE });
    await api.revoke({ sessionId: x.sessionId }, "one entry");

    const w = connectWatch(feed, { heartbeatMs: 200 });
    const snapshot = await snapshotOf(w);
    const last = snapshot.at(-1)!;
    const beats = await messagesAfter(w, snapshot.length, 3, () => true, 5_000, "three heartbeats");
    const [h1, h2, h3] = beats as [Msg, Msg, Msg];
    for (const h of [h1, h2, h3]) {
      expect(isHeartbeat(h)).toBe(true);
      expect(h.cursor).toBe(last.cursor); // nothing changed: same place in the feed
    }
    // Not wildly more often than asked: three intervals after the snapshot take about 600ms.
    expect(h3.receivedAt - last.receivedAt).toBeGreaterThanOrEqual(500);
    const times = [last, h1, h2, h3].map((m) => m.serverTime);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(180);
  });

  it("heartbeat_interval outside 100ms..60s and a malformed cursor are INVALID_ARGUMENT; the bounds themselves are accepted", async () => {
    const { feed, grpcJs } = await start(store.env());
    expect(await refusal(connectWatch(feed, { heartbeatMs: 50 }))).toBe(Code.InvalidArgument);
    expect(await refusal(connectWatch(feed, { heartbeatMs: 61_000 }))).toBe(Code.InvalidArgument);
    expect(await refusal(grpcJsWatch(grpcJs, { heartbeatMs: 99 }))).toBe(Code.InvalidArgument);
    expect(await refusal(connectWatch(feed, { cursor: "abc" }))).toBe(Code.InvalidArgument);
    expect(await refusal(grpcJsWatch(grpcJs, { cursor: "abc" }))).toBe(Code.InvalidArgument);
    expect(await refusal(connectWatch(feed, { heartbeatMs: 100 }))).toBe("message");
    expect(await refusal(connectWatch(feed, { heartbeatMs: 60_000 }))).toBe("message");
  });

  it("a cursor far beyond anything the feed handed out, or of another feed, is OUT_OF_RANGE", async () => {
    const { api, feed, grpcJs } = await start(store.env());
    const x = await api.issue({ subject: "far-user", client: PHONE });
    await api.revoke({ sessionId: x.sessionId }, "one entry");
    const handedOut = (await snapshotOf(connectWatch(feed, {}))).at(-1)!.cursor;
    const far = store.farCursor(handedOut);
    expect(await refusal(connectWatch(feed, { cursor: far }))).toBe(Code.OutOfRange);
    expect(await refusal(grpcJsWatch(grpcJs, { cursor: far }))).toBe(Code.OutOfRange);

    // Another feed (another memory process; another Redis prefix) that has handed out nothing yet: its cursor is none of
    // this feed's.
    const other = await start(store.env());
    expect(await refusal(connectWatch(other.feed, { cursor: handedOut }))).toBe(Code.OutOfRange);
  });

  it("needs revocations.watch: without it PERMISSION_DENIED, with it the snapshot, without credentials UNAUTHENTICATED", async () => {
    const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
    const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
    const watcherKey = newKey();
    const adminKey = newKey();
    const dir = await mkdtemp(join(tmpdir(), "tessera-feed-"));
    try {
      const file = join(dir, "callers.json");
      const callers = [
        { name: "watcher", permissions: ["revocations.watch"], api_keys: [{ sha256: sha256(watcherKey) }] },
        { name: "admin", permissions: PERMISSIONS.filter((p) => p !== "revocations.watch"), api_keys: [{ sha256: sha256(adminKey) }] },
      ];
      await writeFile(file, JSON.stringify({ callers }));
      const { server, feed, grpcJs } = await start({ ...store.env(), TESSERA_CALLERS_FILE: file });
      const bearer = (key: string): CallOptions => ({ headers: { authorization: `Bearer ${key}` } });

      // The admin makes one revocation (through a client of its own: the API client has no credentials).
      const transport = connectTransport("connect-grpc", server.url);
      try {
        
        const tokens = createClient(TokenService, transport.transport);
        const issued = await tokens.issue({ subject: "perm-user", client: PHONE }, bearer(adminKey));
        await tokens.revoke({ target: { case: "sessionId", value: issued.sessionId }, reason: "by admin" }, bearer(adminKey));

        const denied = connectWatch(feed, {}, bearer(adminKey));
        expect(await refusal(denied)).toBe(Code.PermissionDenied);
        expect(denied.end!.message).toBe("caller admin may not call RevocationService.WatchRevocations");

        const snapshot = await snapshotOf(connectWatch(feed, {}, bearer(watcherKey)));
        expect(revocationsOf(snapshot).map((x) => [x.kind, x.target, x.reason])).toEqual([
          [RevocationKind.SESSION, issued.sessionId, "by admin"],
        ]);
        const md = new grpc.Metadata();
        md.add("authorization", `Bearer ${watcherKey}`);
        expect(revocationsOf(await snapshotOf(grpcJsWatch(grpcJs, {}, md))).map((x) => x.target)).toEqual([issued.sessionId]);

        expect(await refusal(connectWatch(feed, {}))).toBe(Code.Unauthenticated);
        expect(await refusal(grpcJsWatch(grpcJs, {}))).toBe(Code.Unauthenticated);
        expect(await refusal(connectWatch(feed, {}, bearer(newKey())))).toBe(Code.Unauthenticated);
      } finally {
        transport.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("server.close() ends an open watch UNAVAILABLE promptly (well before TESSERA_SHUTDOWN_GRACE)", async () => {
    const s = await start(store.env());
    const w = connectWatch(s.feed, { heartbeatMs: 60_000 });
    const g = grpcJsWatch(s.grpcJs, { heartbeatMs: 60_000 });
    await snapshotOf(w);
    await snapshotOf(g);
    const closing = Date.now();
    const closed = s.server.close();
    await until(() => w.end && g.end, 5_000, "both watches to end");
    expect([endName(w.end!), endName(g.end!)]).toEqual(["Unavailable", "Unavailable"]);
    // At once: not after the grace period, nor when the listener is torn down (2s after close() began).
    expect(Math.max(w.end!.at, g.end!.at) - closing).toBeLessThan(1_500);
    await closed;
    expect(Date.now() - closing).toBeLessThan(6_000);
  });
});

describe("WatchRevocations when Redis becomes unreachable", () => {
  let gate: TcpGate | undefined;
  afterEach(async () => {
    gate?.release();
    for (const s of started.splice(0)) {
      s.api.close();
      s.grpcJs.close();
      await s.server.close();
    }
    await gate?.close();
    gate = undefined;
  });

  it("an open watch ends UNAVAILABLE within a few heartbeat intervals, and no heartbeat vouches for the unread store", async () => {
    const redisUrl = inject("redisUrl");
    gate = await TcpGate.start(Number(new URL(redisUrl).port));
    const scope = redisScope(redisUrl, "revocation-feed-outage");
    scopes.push(scope);
    const { api, feed } = await start({ ...scope.env, TESSERA_REDIS_URL: gate.url, TESSERA_STORE_TIMEOUT: "300ms" });
    const x = await api.issue({ subject: "outage-user", client: PHONE });
    await api.revoke({ sessionId: x.sessionId }, "one entry");

    const w = connectWatch(feed, { heartbeatMs: 200 });
    const snapshot = await snapshotOf(w);
    await messagesAfter(w, snapshot.length, 2, isHeartbeat, 5_000, "two heartbeats while Redis answers");

    const heldAt = Date.now();
    gate.hold();
    await until(() => w.end, 5_000, "the watch to end after Redis stopped answering");
    expect(endName(w.end!)).toBe("Unavailable");
    // One heartbeat interval, then a read that times out after 300ms: well under 2s.
    expect(w.end!.at - heldAt).toBeLessThan(2_000);
    // Every message was read from the store before it was cut off (server_time is the server's clock after its read).
    for (const m of w.messages) expect(m.serverTime).toBeLessThanOrEqual(heldAt + 50);
  });
});

describe("an eviction whose feed append failed (Redis store)", () => {
  it("answers the Issue, says so in the log, and appends the eviction by itself once Redis takes it", async () => {
    const scope = redisScope(inject("redisUrl"), "revocation-feed-backlog");
    scopes.push(scope);
    const redis = new Redis(inject("redisUrl"));
    try {
      const { server, api, feed } = await start({ ...scope.env, TESSERA_MAX_SESSIONS: "1", TESSERA_LOG_LEVEL: "info" });
      const first = await api.issue({ subject: "backlog-user", client: { deviceId: "b1" } });
      const feedKey = `${scope.prefix}{feed}`;
      await redis.set(feedKey, "not a stream"); // the feed's append now fails (WRONGTYPE); the session scripts do not
      // Issue does not wait for its eviction's append (no replicas to wait for): the new session is opened and
      // answered; the eviction stands, so the first session's token is inactive at Tessera at once.
      const second = await api.issue({ subject: "backlog-user", client: { deviceId: "b2" } });
      expect((await api.introspect(second.tokens.accessToken)).active).toBe(true);
      expect((await api.introspect(first.tokens.accessToken)).active).toBe(false);
      const warned = await until(() => server.logs.find((l) => l.feed === "backlog"), 5_000, "the backlog's log line");
      expect(warned).toMatchObject({ level: "warn", entries: 1, pending: 1 });
      expect(JSON.stringify(warned)).not.toContain(first.tokens.accessToken);
      const backlog = async () => (await server.app.metrics.registry.getSingleMetric("tessera_feed_backlog_entries")!.get()).values[0]?.value;
      expect(await backlog()).toBe(1);

      await redis.del(feedKey);
      await until(() => server.logs.some((l) => l.feed === "backlog appended" && l.appended === 1), 10_000, "the backlog appended");
      expect(await backlog()).toBe(0);
      const revs = revocationsOf(await snapshotOf(connectWatch(feed, {})));
      expect(revs.map((r) => [RevocationKind[r.kind], r.subject, r.target])).toEqual([["SESSION", "backlog-user", first.sessionId]]);
      expect(revs[0]!.reason).toMatch(/evict/);
    } finally {
      redis.disconnect();
    }
  });
});

describe("WatchRevocations after the feed was trimmed (memory store, controlled clock)", () => {
  it("a cursor from before a trimmed entry is OUT_OF_RANGE; a new snapshot has only what is live", async () => {
    const clock = new ManualClock(Date.now());
    const { api, feed } = await start({ TESSERA_ACCESS_TTL: "1m", TESSERA_CLOCK_SKEW: "5s" }, clock);

    const before = (await snapshotOf(connectWatch(feed, {}))).at(-1)!.cursor; // the empty feed's cursor

    const a = await api.issue({ subject: "trim-user", client: PHONE });
    await api.revoke({ token: a.tokens.accessToken }, "short-lived");
    const afterA = (await snapshotOf(connectWatch(feed, {}))).at(-1)!;
    expect(revocationsOf([afterA]).map((r) => r.target)).toEqual([jtiOf(a.tokens.accessToken)]);
    expect(revocationsOf([afterA])[0]!.expiresAt).toBe(a.tokens.accessExpiresAt + 5_000);

    // A's until (its exp plus the skew) is now in the past; B's revocation trims it from the feed.
    clock.advance(a.tokens.accessExpiresAt + 5_000 - clock.now() + 1_000);
    const b = await api.issue({ subject: "trim-user", client: PHONE });
    await api.revoke({ token: b.tokens.accessToken }, "live");

    expect(await refusal(connectWatch(feed, { cursor: before }))).toBe(Code.OutOfRange);

    const fresh = await snapshotOf(connectWatch(feed, {}));
    expect(revocationsOf(fresh).map((r) => [r.target, r.reason])).toEqual([[jtiOf(b.tokens.accessToken), "live"]]);

    // The cursor right after A (the last one trimmed) still continues, with B.
    const resumed = connectWatch(feed, { cursor: afterA.cursor });
    const got = await messagesAfter(resumed, 0, 1, (m) => m.current, 5_000, "the watch from after A to catch up");
    expect(revocationsOf(got).map((r) => r.target)).toEqual([jtiOf(b.tokens.accessToken)]);
  });
});
