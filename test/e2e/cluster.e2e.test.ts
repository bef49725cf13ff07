/**
 * Three real authority processes (`node --import tsx src/main.ts`) on a real Redis Cluster of three primaries
 * (TESSERA_REDIS_CLUSTER_NODES), one prefix, behave as one authority: one signing key, the same sessions and
 * revocations, reuse detected across them, logout everywhere, one audit trail and one revocation feed; and the
 * subjects' keys are spread over the Cluster's nodes (it shards, it is not one node in disguise).
 */
import { createClient } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { AuditEventType, AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { RevocationKind, RevocationService } from "../../gen/tessera/v1/revocation_pb.js";
import { Code, codeOf, connectTransport, statusOf, tesseraClient, TokenType, type TesseraClient } from "../helpers/clients.js";
import { clusterScope, countKeys, spawnAuthority, type SpawnedAuthority } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const PHONE = { deviceId: "phone-c", userAgent: "tessera-e2e/1.0" };
const THIEF = { deviceId: "elsewhere", userAgent: "curl/8" };

let scope: ReturnType<typeof clusterScope>;
let authorities: SpawnedAuthority[] = [];
let clients: TesseraClient[] = [];

beforeAll(async () => {
  scope = clusterScope(inject("redisClusterSeeds"), "cluster");
  // All three start at once on an empty prefix: exactly one signing key must come out of it.
  authorities = await Promise.all([0, 1, 2].map(() => spawnAuthority({ ...scope.env, TESSERA_LOG_LEVEL: "info" })));
  clients = [tesseraClient("grpc-js", authorities[0]!.url), tesseraClient("connect-h1", authorities[1]!.url), tesseraClient("connect-grpc", authorities[2]!.url)];
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(authorities.map((p) => p.kill("SIGKILL")));
  await scope?.cleanup();
});

describe("three authority processes on a Redis Cluster", () => {
  it("say so at start, and serve one JWKS", async () => {
    for (const p of authorities) expect(p.stdout.join("\n")).toMatch(/"store":"redis","mode":"cluster"/);
    const sets = await Promise.all(
      authorities.map(async (p) => (await (await fetch(`${p.url}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }),
    );
    expect(sets[0]!.keys).toHaveLength(1);
    expect(sets[1]).toEqual(sets[0]);
    expect(sets[2]).toEqual(sets[0]);
  });

  it("a token issued on one is active on the others; a revocation on one is seen on all at once", async () => {
    const [a, b, c] = clients as [TesseraClient, TesseraClient, TesseraClient];
    const issued = await a.issue({ subject: "cluster-user", scopes: ["x"], client: PHONE });
    expect(await b.introspect(issued.tokens.accessToken)).toMatchObject({ active: true, subject: "cluster-user", sessionId: issued.sessionId });
    expect(await statusOf(c, issued.tokens.refreshToken, TokenType.REFRESH)).toBe("ACTIVE");
    expect((await c.listSessions("cluster-user")).map((s) => s.sessionId)).toEqual([issued.sessionId]);

    expect(await c.revoke({ token: issued.tokens.accessToken })).toEqual({ sessionsRevoked: 0, tokenRevoked: true });
    for (const x of clients) expect(await statusOf(x, issued.tokens.accessToken)).toBe("REVOKED");

    const next = await b.refresh(issued.tokens.refreshToken, PHONE);
    expect(await statusOf(a, next.tokens.accessToken)).toBe("ACTIVE");
    expect(await b.revoke({ sessionId: issued.sessionId })).toEqual({ sessionsRevoked: 1, tokenRevoked: false });
    expect(await codeOf(c.refresh(next.tokens.refreshToken, PHONE))).toBe(Code.Unauthenticated);
    expect(await codeOf(a.getSession(issued.sessionId))).toBe(Code.NotFound);
  });

  it("a refresh rotated on one and replayed on another from elsewhere is reuse: the session dies on all three", async () => {
    const [a, b, c] = clients as [TesseraClient, TesseraClient, TesseraClient];
    const issued = await c.issue({ subject: "cluster-reuse", client: PHONE });
    const next = await a.refresh(issued.tokens.refreshToken, PHONE);
    expect(await codeOf(b.refresh(issued.tokens.refreshToken, THIEF))).toBe(Code.Unauthenticated);
    for (const x of clients) {
      expect(await statusOf(x, next.tokens.accessToken)).toBe("REVOKED");
      expect(await statusOf(x, next.tokens.refreshToken, TokenType.REFRESH)).toBe("REVOKED");
    }
  });

  it("logs a subject out everywhere, whichever process opened its sessions", async () => {
    const opened = await Promise.all(clients.map((x) => x.issue({ subject: "cluster-everywhere", client: PHONE })));
    expect((await clients[1]!.listSessions("cluster-everywhere")).map((s) => s.sessionId).sort()).toEqual(opened.map((o) => o.sessionId).sort());
    expect(await clients[2]!.revoke({ subject: "cluster-everywhere" })).toEqual({ sessionsRevoked: 3, tokenRevoked: false });
    for (const o of opened) for (const x of clients) expect(await statusOf(x, o.tokens.accessToken)).toBe("REVOKED");
  });

  it("serve one revocation feed: a revocation on one process reaches a watcher on another", async () => {
    const t = connectTransport("connect-h2", authorities[0]!.url);
    const feed = createClient(RevocationService, t.transport);
    const abort = new AbortController();
    const seen: { kind: RevocationKind; target: string }[] = [];
    let snapshotDone = false;
    const watching = (async () => {
      for await (const m of feed.watchRevocations({}, { signal: abort.signal })) {
        seen.push(...m.revocations.map((r) => ({ kind: r.kind, target: r.target })));
        if (!m.snapshot) snapshotDone = true;
      }
    })().catch(() => undefined);
    try {
      await until(() => snapshotDone || seen.length > 0, 10_000);
      const issued = await clients[1]!.issue({ subject: "cluster-feed", client: PHONE });
      await clients[2]!.revoke({ sessionId: issued.sessionId });
      await until(() => seen.some((r) => r.kind === RevocationKind.SESSION && r.target === issued.sessionId), 10_000);
    } finally {
      abort.abort();
      await watching;
      t.close();
    }
  });

  it("keep one audit trail", async () => {
    const issued = await clients[0]!.issue({ subject: "cluster-audit", client: PHONE });
    await clients[1]!.revoke({ sessionId: issued.sessionId });
    const t = connectTransport("connect-h1", authorities[2]!.url);
    try {
      const audit = createClient(AuditService, t.transport);
      await until(async () => {
        const page = await audit.listAuditEvents({ subject: "cluster-audit", pageSize: 50 });
        const types = page.events.map((e) => e.type);
        return types.includes(AuditEventType.TOKEN_ISSUED) && types.includes(AuditEventType.SESSION_REVOKED);
      }, 10_000);
    } finally {
      t.close();
    }
  });

  it("spread the subjects over the Cluster's nodes", async () => {
    await Promise.all(Array.from({ length: 24 }, (_, i) => clients[i % 3]!.issue({ subject: `cluster-spread-${i}`, client: PHONE })));
    const perNode = await Promise.all(scope.nodeUrls.map((url) => countKeys(url, `${scope.prefix}{`)));
    expect(perNode.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
    // Every node a process talked to is a primary of this Cluster (no single-node fallback).
    const roles = await Promise.all(
      scope.nodeUrls.map(async (url) => {
        const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
        try {
          await r.connect();
          return /cluster_enabled:1/.test(await r.info("cluster"));
        } finally {
          r.disconnect();
        }
      }),
    );
    expect(roles).toEqual([true, true, true]);
  });

  it("stop cleanly on SIGTERM", async () => {
    expect(await Promise.all(authorities.map((p) => p.kill("SIGTERM")))).toEqual([0, 0, 0]);
  });
});
