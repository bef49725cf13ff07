/**
 * The sidecar's parts of `npm run bench` (bench/run.ts runs them; docs/performance.md explains the method):
 *
 * - startSidecar: the sidecar as the Dockerfile's build has it (`node dist/src/sidecar/main.js`, built with Tessera
 *   by `npm run build`), started against an authority and ready once its gRPC health says SERVING (JWKS and feed
 *   snapshot in). The throughput part ("sidecar") is an h2load scenario like Tessera's Introspect, in bench/run.ts.
 * - visibility: how long a revocation acknowledged by the authority takes until three sidecars all answer REVOKED.
 * - sidecarMemory: the sidecar's heap and RSS per live token revocation held.
 */
import { randomUUID } from "node:crypto";
import os from "node:os";
import { join } from "node:path";
import { create, type DescService } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { Redis } from "ioredis";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../gen/grpc/health/v1/health_pb.js";
import { IssueRequestSchema, TokenService } from "../gen/tessera/v1/token_pb.js";
import { randomId } from "../src/domain/ids.js";
import { createRedisClient, RedisStore } from "../src/store/redis.js";
import { freePort, RedisServer } from "../test/helpers/redis-server.js";
import { cpuSeconds, machineBusySeconds, memory, ROOT, startNode, type Child } from "./procs.js";
import { sample } from "./redis-stats.js";
import type { CpuShare, SidecarMemoryReport, VisibilityFigures, VisibilityReport } from "./report.js";
import { CLIENT, GRANT } from "./workloads.js";

/** The sidecar's entry point as `npm run build` (tsc, tsconfig.build.json) writes it. */
export const SIDECAR_MAIN = "dist/src/sidecar/main.js";
const CALL_TIMEOUT_MS = 10_000;

/** A process under test and where to call it (bench/run.ts's Server has these). */
export interface Proc {
  child: Child;
  url: string;
}

/** A connect-node gRPC client on an HTTP/2 connection of its own; `close` ends the connection. */
export function grpcClient<S extends DescService>(service: S, baseUrl: string): { client: Client<S>; close: () => void } {
  const sessionManager = new Http2SessionManager(baseUrl);
  return { client: createClient(service, createGrpcTransport({ baseUrl, sessionManager })), close: () => sessionManager.abort() };
}

/**
 * Starts a sidecar against the authority at `authorityUrl` on a free port and waits until it is SERVING. Every
 * TESSERA_* variable of the bench's environment reaches it as it reaches the authority, so TESSERA_ISSUER and
 * TESSERA_CLOCK_SKEW are the same in both (their defaults otherwise).
 */
export async function startSidecar(name: string, authorityUrl: string): Promise<Proc> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = startNode(name, SIDECAR_MAIN, [], {
    env: { TESSERA_AUTHORITY_URL: authorityUrl, TESSERA_LISTEN: `127.0.0.1:${port}`, TESSERA_LOG_LEVEL: "warn" },
  });
  let exited: number | string | undefined;
  void child.exited.then((code) => (exited = code));
  const { client, close } = grpcClient(Health, url);
  try {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && exited === undefined) {
      const status = await client.check({ service: "" }, { timeoutMs: 1000 }).then(
        (r) => r.status,
        () => Serving.UNKNOWN,
      );
      if (status === Serving.SERVING) return { child, url };
      await sleep(100);
    }
  } finally {
    close();
  }
  await child.stop(0);
  throw new Error(`${name} did not become SERVING (exit: ${exited ?? "none"}):\n${child.stderr.join("\n")}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Reads CPU seconds so far: the part's own processes (this one, the servers in `pids`, Redis through INFO) and the
 * whole machine; `since` gives the cores each used from then to now, so a figure made while others' work took the
 * cores says so.
 */
export async function cpuNow(pids: number[], redis: Redis) {
  const read = async () => {
    const self = process.cpuUsage();
    let servers = 0;
    for (const pid of pids) {
      try {
        servers += cpuSeconds(pid);
      } catch {
        // gone
      }
    }
    return { at: performance.now(), own: (self.user + self.system) / 1e6 + servers + (await sample(redis)).cpu, machine: machineBusySeconds() };
  };
  const start = await read();
  return {
    async since(): Promise<CpuShare> {
      const end = await read();
      const seconds = (end.at - start.at) / 1000;
      const machine = (end.machine - start.machine) / seconds;
      const own = (end.own - start.own) / seconds;
      return { ownCores: own, otherCores: Math.max(0, machine - own), idleCores: Math.max(0, os.availableParallelism() - machine) };
    },
  };
}

/** Nearest-rank percentile of an ascending array. */
function percentile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

export function figures(values: number[]): VisibilityFigures {
  const sorted = [...values].sort((a, b) => a - b);
  return { count: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.at(-1) ?? NaN };
}

/** Runs `fn` on every item, at most `concurrency` at once. */
async function each<T>(items: T[], concurrency: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < items.length; i = next++) await fn(items[i]!, i);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/** An access token minted for revocation: its subject (its own) and session. */
export interface MintedToken {
  subject: string;
  sessionId: string;
  token: string;
}

/**
 * `n` access tokens minted at the authority (8 Issue calls in flight), each for its own subject `<prefix>-<run>-<i>`,
 * so each its own session.
 */
export async function mintTokens(tokens: Client<typeof TokenService>, n: number, prefix: string): Promise<MintedToken[]> {
  const run = randomUUID().slice(0, 8);
  const minted: MintedToken[] = [];
  await each(
    Array.from({ length: n }, (_, i) => `${prefix}-${run}-${i}`),
    8,
    async (subject, i) => {
      const res = await tokens.issue(create(IssueRequestSchema, { subject, ...GRANT, client: { ...CLIENT, deviceId: randomUUID() } }), {
        timeoutMs: CALL_TIMEOUT_MS,
      });
      if (!res.tokens?.accessToken) throw new Error("Issue returned no access token");
      minted[i] = { subject, sessionId: res.sessionId, token: res.tokens.accessToken };
    },
  );
  return minted;
}

/** Revoke's target for a minted token, by kind: the token itself, its session id, its subject. */
export function revocationTarget(kind: RevocationKind, t: MintedToken): { token: string } | { sessionId: string } | { subject: string } {
  return kind === "token" ? { token: t.token } : kind === "session" ? { sessionId: t.sessionId } : { subject: t.subject };
}

/** The visibility parts revoke by token, by session and by subject in turn. */
export const KINDS = ["token", "session", "subject"] as const;
export type RevocationKind = (typeof KINDS)[number];

/** What the visibility part asks of a server: Introspect's verdict, Revoke. */
export interface TimedClient {
  introspect(token: string): Promise<{ active: boolean; inactiveReason: string }>;
  revoke(target: { token: string } | { sessionId: string } | { subject: string }): Promise<void>;
  close(): void;
}

let tokenServiceClass: grpc.ServiceClientConstructor | undefined;

/**
 * A @grpc/grpc-js client of tessera.v1.TokenService (the .proto through @grpc/proto-loader), one channel per server.
 * Measured on this machine, one call at a time to the sidecar: about 0.8 ms a round trip against 1.9 ms with
 * connect-node's createGrpcTransport, so the visibility figures carry less of the client's own time.
 */
export function timedClient(baseUrl: string): TimedClient {
  tokenServiceClass ??= (() => {
    const pkg = grpc.loadPackageDefinition(
      loadSync("tessera/v1/token.proto", { includeDirs: [join(ROOT, "proto")], enums: String, defaults: true, oneofs: true }),
    );
    return ((pkg.tessera as grpc.GrpcObject).v1 as grpc.GrpcObject).TokenService as grpc.ServiceClientConstructor;
  })();
  const client = new tokenServiceClass(new URL(baseUrl).host, grpc.credentials.createInsecure());
  const unary = <Res>(method: string, req: object) =>
    new Promise<Res>((resolve, reject) => {
      const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[method]!;
      fn.call(client, req, { deadline: Date.now() + CALL_TIMEOUT_MS }, (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)));
    });
  return {
    introspect: (token) => unary("Introspect", { token }),
    revoke: async (target) => void (await unary("Revoke", { ...target, reason: "bench: visibility" })),
    close: () => client.close(),
  };
}

/**
 * Revocation visibility: an authority (started by `startAuthority`) and `sidecars` sidecars on it; `revocations`
 * access tokens minted at the authority beforehand, each its own subject and session. For each token in turn: every
 * sidecar must answer active; Revoke at the authority (by token, by session id, by subject, in turn), t0 = the instant
 * its answer arrives; then each sidecar is polled with Introspect (one call in flight per sidecar, the next sent as
 * soon as the answer is in) until it answers REVOKED. The visibility is from t0 until the answer of the last sidecar
 * to say REVOKED arrived, so it includes that poll's round trip (reported beside it). Issue goes through connect-node
 * (set-up, not timed); Revoke and the polls through @grpc/grpc-js (timedClient).
 */
export async function visibility(
  startAuthority: () => Promise<Proc>,
  opts: { revocations: number; sidecars: number; redis: Redis; log: (line: string) => void; timeoutMs?: number },
): Promise<VisibilityReport> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const authority = await startAuthority();
  const procs: Proc[] = [];
  const closers: Array<() => void> = [];
  try {
    for (let i = 0; i < opts.sidecars; i++) procs.push(await startSidecar(`sidecar ${i + 1}`, authority.url));
    const at = grpcClient(TokenService, authority.url);
    closers.push(at.close);
    const revoker = timedClient(authority.url);
    closers.push(revoker.close);
    const sidecars = procs.map((p) => {
      const c = timedClient(p.url);
      closers.push(c.close);
      return c;
    });

    const minted = await mintTokens(at.client, opts.revocations, "bench-visibility");

    const all: number[] = [];
    const first: number[] = [];
    const byKind: Record<RevocationKind, number[]> = { token: [], session: [], subject: [] };
    const revokeMs: number[] = [];
    const pollMs: number[] = [];
    const failures: string[] = [];
    let polls = 0;
    let atFirstPoll = 0;

    /** Polls one sidecar until it answers REVOKED: when that answer arrived, and how many polls it took. */
    const untilRevoked = async (client: TimedClient, token: string, deadline: number): Promise<{ at: number; polls: number }> => {
      for (let n = 1; ; n++) {
        const sent = performance.now();
        const res = await client.introspect(token);
        const now = performance.now();
        pollMs.push(now - sent);
        polls++;
        if (!res.active) {
          if (res.inactiveReason !== "INACTIVE_REASON_REVOKED") throw new Error(`answered inactive for ${res.inactiveReason}, not REVOKED`);
          return { at: now, polls: n };
        }
        if (now > deadline) throw new Error(`still active ${timeoutMs} ms after the Revoke was acknowledged`);
      }
    };

    const cpu = await cpuNow([authority.child.pid, ...procs.map((p) => p.child.pid)], opts.redis);
    for (const [i, t] of minted.entries()) {
      const kind = KINDS[i % KINDS.length]!;
      const before = await Promise.all(sidecars.map((c) => c.introspect(t.token)));
      const notActive = before.findIndex((r) => !r.active);
      if (notActive >= 0) {
        failures.push(`token ${i}: sidecar ${notActive + 1} answered ${before[notActive]!.inactiveReason} before the Revoke`);
        continue;
      }
      const target = revocationTarget(kind, t);
      const sent = performance.now();
      await revoker.revoke(target);
      const t0 = performance.now();
      revokeMs.push(t0 - sent);
      try {
        const seen = await Promise.all(sidecars.map((c) => untilRevoked(c, t.token, t0 + timeoutMs)));
        const last = Math.max(...seen.map((s) => s.at)) - t0;
        all.push(last);
        byKind[kind].push(last);
        first.push(Math.min(...seen.map((s) => s.at)) - t0);
        if (seen.every((s) => s.polls === 1)) atFirstPoll++;
      } catch (err) {
        failures.push(`token ${i} (by ${kind}): ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const report: VisibilityReport = {
      cpu: await cpu.since(),
      sidecars: opts.sidecars,
      revocations: opts.revocations,
      all: figures(all),
      first: figures(first),
      byKind: { token: figures(byKind.token), session: figures(byKind.session), subject: figures(byKind.subject) },
      revoke: figures(revokeMs),
      poll: figures(pollMs),
      polls,
      atFirstPoll,
      ...(failures.length > 0 ? { failed: `${failures.length} of ${opts.revocations} revocations: ${failures.slice(0, 3).join("; ")}` } : {}),
    };
    opts.log(
      `visibility: ${report.failed ? `FAILED (${report.failed}); ` : ""}${report.all.count} revocations, ${opts.sidecars} sidecars: ` +
        `p50 ${report.all.p50.toFixed(2)} ms, p99 ${report.all.p99.toFixed(2)} ms, max ${report.all.max.toFixed(2)} ms ` +
        `(first sidecar p50 ${report.first.p50.toFixed(2)} ms; one poll p50 ${report.poll.p50.toFixed(2)} ms, p99 ${report.poll.p99.toFixed(2)} ms; ` +
        `Revoke p50 ${report.revoke.p50.toFixed(2)} ms; ${atFirstPoll} seen at every sidecar on the first poll; ${cores(report.cpu)})`,
    );
    return report;
  } finally {
    for (const close of closers) close();
    for (const p of procs) await p.child.stop();
    await authority.child.stop();
  }
}

/** The sidecar's Prometheus figures the memory part reads (GET /metrics). */
async function scrape(url: string): Promise<{ heapUsed: number; jtis: number }> {
  const text = await (await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(CALL_TIMEOUT_MS) })).text();
  const value = (series: RegExp) => Number(series.exec(text)?.[1] ?? NaN);
  return {
    heapUsed: value(/^tessera_nodejs_heap_size_used_bytes ([0-9.e+]+)$/m),
    jtis: value(/^tessera_sidecar_revocations_held\{kind="jti"\} ([0-9.e+]+)$/m),
  };
}

/** The least heap used and the least RSS of `n` readings a second apart (no --expose-gc: the floor, not one reading). */
async function settled(proc: Proc, n: number): Promise<{ heapUsed: number; rss: number }> {
  let heapUsed = Infinity;
  let rss = Infinity;
  for (let i = 0; i < n; i++) {
    if (i > 0) await sleep(1000);
    heapUsed = Math.min(heapUsed, (await scrape(proc.url)).heapUsed);
    rss = Math.min(rss, memory(proc.child.pid).rss);
  }
  return { heapUsed, rss };
}

/**
 * Sidecar memory per live revocation, on a Redis of its own (nothing else in its feed): an authority and a sidecar
 * on it; once the sidecar is SERVING and has settled, its heap used (GET /metrics) and RSS (/proc); then
 * `revocations` token revocations written through the store the authority uses (RedisStore.revokeToken: the key and
 * the feed entry, as the authority's Revoke writes them below the API), each for a distinct subject (a UUID) and jti
 * (22 characters, as the authority mints them), live for an hour, `concurrency` calls in flight; then, once the
 * sidecar holds them all (tessera_sidecar_revocations_held{kind="jti"}, read every 50 ms) and has settled again, the
 * same readings.
 */
export async function sidecarMemory(
  startAuthority: (redisUrl: string, prefix: string) => Promise<Proc>,
  opts: { revocations: number; concurrency: number; log: (line: string) => void },
): Promise<SidecarMemoryReport> {
  const READINGS = 5;
  const prefix = "tessera:";
  const server = await RedisServer.start();
  const info = new Redis(server.url, { maxRetriesPerRequest: 1 });
  let authority: Proc | undefined;
  let sidecar: Proc | undefined;
  let store: RedisStore | undefined;
  /** Reads the sidecar's count of held revocations while they are written, until it has them all. */
  let watching = true;
  let watcher: Promise<void> | undefined;
  try {
    authority = await startAuthority(server.url, prefix);
    sidecar = await startSidecar("sidecar", authority.url);
    const s = sidecar;
    await sleep(2000);
    const before = await settled(s, READINGS);
    const redisBefore = await usedMemory(info);

    store = new RedisStore(createRedisClient(server.url, { commandTimeoutMs: 10_000 }), { prefix });
    await store.ping();
    const st = store;
    const n = opts.revocations;
    const cpu = await cpuNow([authority.child.pid, s.child.pid], info);
    const t0 = performance.now();
    let heldAt: number | undefined;
    watcher = (async () => {
      while (watching) {
        const { jtis } = await scrape(s.url);
        if (jtis >= n) {
          heldAt = performance.now();
          return;
        }
        await sleep(50);
      }
    })();
    let fresh = 0;
    let next = 0;
    await Promise.all(
      Array.from({ length: opts.concurrency }, async () => {
        while (next < n) {
          next++;
          const now = Date.now();
          const set = await st.revokeToken({ subject: randomUUID(), jti: randomId(), expiresAt: now + 3_600_000, now, reason: "bench: sidecar memory" });
          if (set) fresh++;
        }
      }),
    );
    const written = performance.now();
    if (fresh !== n) throw new Error(`sidecar memory: ${fresh} of ${n} revocations were new`);
    const deadline = Date.now() + 120_000;
    while (heldAt === undefined && Date.now() < deadline) await sleep(50);
    watching = false;
    await watcher;
    if (heldAt === undefined) throw new Error(`sidecar memory: the sidecar held ${(await scrape(s.url)).jtis} of ${n} revocations after 2 minutes`);
    const writing = await cpu.since();
    const redisAfter = await usedMemory(info);
    await sleep(2000);
    const after = await settled(s, READINGS);
    const report: SidecarMemoryReport = {
      revocations: n,
      concurrency: opts.concurrency,
      heapBefore: before.heapUsed,
      heapAfter: after.heapUsed,
      rssBefore: before.rss,
      rssAfter: after.rss,
      writeMs: written - t0,
      takeInMs: heldAt - t0,
      afterLastWriteMs: Math.max(0, heldAt - written),
      redisBytes: redisAfter - redisBefore,
      cpu: writing,
    };
    opts.log(
      `sidecar memory: ${((report.heapAfter - report.heapBefore) / n).toFixed(0)} B of heap, ${((report.rssAfter - report.rssBefore) / n).toFixed(0)} B of RSS per revocation ` +
        `(heap ${(report.heapBefore / 2 ** 20).toFixed(1)} -> ${(report.heapAfter / 2 ** 20).toFixed(1)} MiB, RSS ${(report.rssBefore / 2 ** 20).toFixed(1)} -> ${(report.rssAfter / 2 ** 20).toFixed(1)} MiB); ` +
        `${n} written in ${(report.writeMs / 1000).toFixed(2)} s, all held ${(report.takeInMs / 1000).toFixed(2)} s after the first write ` +
        `(${report.afterLastWriteMs.toFixed(0)} ms after the last; ${cores(writing)}); Redis ${(report.redisBytes / n).toFixed(0)} B per revocation`,
    );
    return report;
  } finally {
    watching = false;
    await watcher?.catch(() => {});
    await store?.close().catch(() => {});
    await sidecar?.child.stop();
    await authority?.child.stop();
    info.disconnect();
    await server.stop();
  }
}

async function usedMemory(redis: Redis): Promise<number> {
  const text = (await redis.call("INFO", "memory")) as string;
  return Number(/^used_memory:(\d+)/m.exec(text)?.[1] ?? NaN);
}

export const cores = (c: CpuShare) =>
  `cores: the part's own processes ${c.ownCores.toFixed(2)}, others ${c.otherCores.toFixed(2)}, idle ${c.idleCores.toFixed(2)}`;
