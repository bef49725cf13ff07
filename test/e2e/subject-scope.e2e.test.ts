/**
 * A caller's `subjects` (the callers file), end to end against a real server on port 0 (in-process, memory store): two
 * tenants' callers, each scoped to its own subjects, and an unscoped one. For every RPC that names or returns a subject
 * or a session (Issue, Refresh, Revoke by subject, session and token, ListSessions, GetSession, ListAuditEvents,
 * WatchRevocations), a tenant's caller gets through for its subjects and is refused PERMISSION_DENIED for the other
 * tenant's, and nothing changes; an unknown target (session, subject filter) answers exactly as an out-of-scope one.
 * Introspect stays unscoped. Unary RPCs run over a Connect client on both server paths (gRPC over HTTP/2: the lean
 * path; the Connect protocol over HTTP/1.1: connect-node); Issue and Revoke also over @grpc/grpc-js with the .proto
 * files; the feed over a Connect gRPC stream. Refusals are in the audit trail as caller_denied.
 */
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient, type CallOptions, type Client } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditEventType, AuditService, type AuditEvent } from "../../gen/tessera/v1/audit_pb.js";
import { RevocationService, type WatchRevocationsResponse } from "../../gen/tessera/v1/revocation_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { newSessionId } from "../../src/domain/ids.js";
import { PERMISSIONS } from "../../src/domain/permissions.js";
import { Code, ConnectError, connectTransport, type ConnectKind } from "../helpers/clients.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const KEYS = { a: `tk_${randomBytes(24).toString("base64url")}`, b: `tk_${randomBytes(24).toString("base64url")}` } as const;
const ROOT_KEY = `tk_${randomBytes(24).toString("base64url")}`;
const STAR_KEY = `tk_${randomBytes(24).toString("base64url")}`;
const C_KEY = `tk_${randomBytes(24).toString("base64url")}`;
const TENANT_PERMISSIONS = ["issue", "refresh", "revoke", "introspect", "sessions.read", "audit.read", "revocations.watch"];
const CALLERS = [
  { name: "tenant-a", api_keys: [{ sha256: sha256(KEYS.a) }], permissions: TENANT_PERMISSIONS, subjects: ["tenant-a:*", "admin@a"] },
  { name: "tenant-b", api_keys: [{ sha256: sha256(KEYS.b) }], permissions: TENANT_PERMISSIONS, subjects: ["tenant-b:*"] },
  { name: "root", api_keys: [{ sha256: sha256(ROOT_KEY) }], permissions: [...PERMISSIONS] },
  { name: "star", api_keys: [{ sha256: sha256(STAR_KEY) }], permissions: [...PERMISSIONS], subjects: ["*"] },
  // Refused only in the audit trail test, so its refusals are the first of their kind (repeats may be folded).
  { name: "tenant-c", api_keys: [{ sha256: sha256(C_KEY) }], permissions: ["revoke", "sessions.read"], subjects: ["tenant-c:*"] },
];
const as = (key: string): CallOptions => ({ headers: { authorization: `Bearer ${key}` } });
const A = as(KEYS.a);
const B = as(KEYS.b);
const ROOT = as(ROOT_KEY);
const DEVICE = { deviceId: "phone-1", userAgent: "scope-e2e/1.0" };
/** The one answer of every refusal by subject, whatever the reason. */
const DENIED_A = { code: Code.PermissionDenied, rawMessage: "caller tenant-a may not act on this target (not one of its subjects, or not found)" };

/** A fresh subject of tenant a or b. */
const subjectOf = (tenant: "a" | "b") => `tenant-${tenant}:${randomUUID()}`;
/** A well-formed session id nobody has: the tag of a subject of the other tenant, or of one that never logged in. */
const ghostSession = () => newSessionId(`tenant-b:ghost-${randomUUID()}`);

async function failure(call: Promise<unknown>): Promise<{ code: Code; rawMessage: string }> {
  try {
    await call;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, rawMessage: e.rawMessage };
  }
  throw new Error("expected the call to fail, but it succeeded");
}

let dir: string;
let server: StartedServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tessera-scope-"));
  const file = join(dir, "callers.json");
  await writeFile(file, JSON.stringify({ callers: CALLERS }));
  server = await startServer({ TESSERA_CALLERS_FILE: file });
});
afterAll(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Clients {
  tokens: Client<typeof TokenService>;
  sessions: Client<typeof SessionService>;
  audit: Client<typeof AuditService>;
  feed: Client<typeof RevocationService>;
  close(): void;
}

function clients(kind: ConnectKind): Clients {
  const t = connectTransport(kind, server.url);
  return {
    tokens: createClient(TokenService, t.transport),
    sessions: createClient(SessionService, t.transport),
    audit: createClient(AuditService, t.transport),
    feed: createClient(RevocationService, t.transport),
    close: t.close,
  };
}

describe.each<[ConnectKind, string]>([
  ["connect-grpc", "gRPC, lean path"],
  ["connect-h1", "Connect over HTTP/1.1, connect-node"],
])("over %s (%s)", (kind) => {
  let c: Clients;
  beforeAll(() => {
    c = clients(kind);
  });
  afterAll(() => c?.close());

  const issue = (subject: string, opts: CallOptions) => c.tokens.issue({ subject, client: DEVICE }, opts);
  /** Whether the session is still live, asked by the unscoped caller. */
  const live = async (sessionId: string) => {
    try {
      await c.sessions.getSession({ sessionId }, ROOT);
      return true;
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) return false;
      throw err;
    }
  };

  describe("TokenService.Issue", () => {
    it("a tenant's caller issues for its subjects, exact or by prefix", async () => {
      for (const subject of [subjectOf("a"), "tenant-a:", "admin@a"]) {
        const res = await issue(subject, A);
        expect(res.sessionId).toHaveLength(38);
        expect((await c.tokens.introspect({ token: res.tokens!.accessToken }, A)).subject).toBe(subject);
      }
    });

    it("and is refused for any other subject, opening no session", async () => {
      for (const subject of [subjectOf("b"), "tenant-a", "admin@a.b", "Tenant-a:x", "tenant-b:tenant-a:x"]) {
        expect(await failure(issue(subject, A)), subject).toEqual(DENIED_A);
        expect((await c.sessions.listSessions({ subject }, ROOT)).sessions, subject).toEqual([]);
      }
    });

    it("'*' and no subjects at all: every subject", async () => {
      await expect(issue(subjectOf("b"), ROOT)).resolves.toBeDefined();
      await expect(issue(subjectOf("a"), as(STAR_KEY))).resolves.toBeDefined();
    });
  });

  describe("TokenService.Refresh", () => {
    it("rotates a refresh token of the caller's subject", async () => {
      const s = await issue(subjectOf("a"), A);
      const next = await c.tokens.refresh({ refreshToken: s.tokens!.refreshToken, client: DEVICE }, A);
      expect(next.sessionId).toBe(s.sessionId);
    });

    it("refuses another tenant's token after verifying it, before anything changes", async () => {
      const s = await issue(subjectOf("b"), B);
      expect(await failure(c.tokens.refresh({ refreshToken: s.tokens!.refreshToken, client: DEVICE }, A))).toEqual(DENIED_A);
      // Not rotated, not counted as reuse: its own tenant still refreshes that very token.
      const next = await c.tokens.refresh({ refreshToken: s.tokens!.refreshToken, client: DEVICE }, B);
      expect(next.sessionId).toBe(s.sessionId);
      expect(await live(s.sessionId)).toBe(true);
    });

    it("a token that does not verify names nobody: UNAUTHENTICATED as before, for any caller", async () => {
      const err = await failure(c.tokens.refresh({ refreshToken: "not.a.token", client: DEVICE }, A));
      expect(err.code).toBe(Code.Unauthenticated);
    });
  });

  describe("TokenService.Revoke by subject", () => {
    it("logs out the caller's subject; an in-scope subject with no sessions is OK with 0", async () => {
      const subject = subjectOf("a");
      const s = await issue(subject, A);
      expect(await c.tokens.revoke({ target: { case: "subject", value: subject } }, A)).toMatchObject({ sessionsRevoked: 1 });
      expect(await live(s.sessionId)).toBe(false);
      expect(await c.tokens.revoke({ target: { case: "subject", value: subjectOf("a") } }, A)).toMatchObject({ sessionsRevoked: 0 });
    });

    it("refuses another tenant's subject, whether it has sessions or not, and revokes nothing", async () => {
      const subject = subjectOf("b");
      const s = await issue(subject, B);
      expect(await failure(c.tokens.revoke({ target: { case: "subject", value: subject } }, A))).toEqual(DENIED_A);
      expect(await failure(c.tokens.revoke({ target: { case: "subject", value: subjectOf("b") } }, A))).toEqual(DENIED_A);
      expect(await live(s.sessionId)).toBe(true);
    });
  });

  describe("TokenService.Revoke by session id", () => {
    it("ends a session of the caller's subject", async () => {
      const s = await issue(subjectOf("a"), A);
      expect(await c.tokens.revoke({ target: { case: "sessionId", value: s.sessionId } }, A)).toMatchObject({ sessionsRevoked: 1 });
      expect(await live(s.sessionId)).toBe(false);
    });

    it("another tenant's session and an unknown one get the very same refusal; the session lives on", async () => {
      const s = await issue(subjectOf("b"), B);
      const outOfScope = await failure(c.tokens.revoke({ target: { case: "sessionId", value: s.sessionId } }, A));
      const unknown = await failure(c.tokens.revoke({ target: { case: "sessionId", value: ghostSession() } }, A));
      const notOurs = await failure(c.tokens.revoke({ target: { case: "sessionId", value: "x".repeat(20) } }, A));
      expect(outOfScope).toEqual(DENIED_A);
      expect(unknown).toEqual(outOfScope);
      expect(notOurs).toEqual(outOfScope);
      expect(await live(s.sessionId)).toBe(true);
    });

    it("an unscoped caller (no subjects, or '*') keeps today's answer for an unknown session: OK with 0", async () => {
      for (const opts of [ROOT, as(STAR_KEY)]) {
        expect(await c.tokens.revoke({ target: { case: "sessionId", value: ghostSession() } }, opts)).toMatchObject({ sessionsRevoked: 0 });
      }
    });
  });

  describe("TokenService.Revoke by token", () => {
    it("revokes the caller's subject's access token, and ends a session by its refresh token", async () => {
      const s = await issue(subjectOf("a"), A);
      expect(await c.tokens.revoke({ target: { case: "token", value: s.tokens!.accessToken } }, A)).toMatchObject({ tokenRevoked: true });
      expect((await c.tokens.introspect({ token: s.tokens!.accessToken }, ROOT)).active).toBe(false);
      expect(await c.tokens.revoke({ target: { case: "token", value: s.tokens!.refreshToken } }, A)).toMatchObject({ sessionsRevoked: 1 });
      expect(await live(s.sessionId)).toBe(false);
    });

    it("refuses another tenant's tokens (by their verified subject) and leaves them active", async () => {
      const s = await issue(subjectOf("b"), B);
      expect(await failure(c.tokens.revoke({ target: { case: "token", value: s.tokens!.accessToken } }, A))).toEqual(DENIED_A);
      expect(await failure(c.tokens.revoke({ target: { case: "token", value: s.tokens!.refreshToken } }, A))).toEqual(DENIED_A);
      expect((await c.tokens.introspect({ token: s.tokens!.accessToken }, ROOT)).active).toBe(true);
      expect(await live(s.sessionId)).toBe(true);
    });
  });

  describe("SessionService", () => {
    it("ListSessions: the caller's subject, yes; another tenant's, refused", async () => {
      const mine = subjectOf("a");
      const s = await issue(mine, A);
      expect((await c.sessions.listSessions({ subject: mine }, A)).sessions.map((x) => x.sessionId)).toEqual([s.sessionId]);
      const theirs = subjectOf("b");
      await issue(theirs, B);
      expect(await failure(c.sessions.listSessions({ subject: theirs }, A))).toEqual(DENIED_A);
      expect(await failure(c.sessions.listSessions({ subject: subjectOf("b") }, A))).toEqual(DENIED_A);
    });

    it("GetSession: the caller's subject's session, yes; another's and an unknown one, the same refusal", async () => {
      const mine = await issue(subjectOf("a"), A);
      expect((await c.sessions.getSession({ sessionId: mine.sessionId }, A)).session?.sessionId).toBe(mine.sessionId);
      const theirs = await issue(subjectOf("b"), B);
      const outOfScope = await failure(c.sessions.getSession({ sessionId: theirs.sessionId }, A));
      expect(outOfScope).toEqual(DENIED_A);
      expect(await failure(c.sessions.getSession({ sessionId: ghostSession() }, A))).toEqual(outOfScope);
      // A session that has ended is unknown too (unscoped: NOT_FOUND, as before).
      await c.tokens.revoke({ target: { case: "sessionId", value: mine.sessionId } }, A);
      expect(await failure(c.sessions.getSession({ sessionId: mine.sessionId }, A))).toEqual(outOfScope);
      expect((await failure(c.sessions.getSession({ sessionId: ghostSession() }, ROOT))).code).toBe(Code.NotFound);
    });
  });

  it("TokenService.Introspect is not scoped: a tenant's caller may ask about any token", async () => {
    const s = await issue(subjectOf("b"), B);
    const res = await c.tokens.introspect({ token: s.tokens!.accessToken }, A);
    expect(res).toMatchObject({ active: true, sessionId: s.sessionId });
  });

  describe("AuditService.ListAuditEvents", () => {
    it("a subject filter outside the scope is refused, and a known and an unknown subject look the same", async () => {
      const theirs = subjectOf("b");
      await issue(theirs, B);
      await server.app.audit.flush();
      const known = await failure(c.audit.listAuditEvents({ subject: theirs }, A));
      expect(known).toEqual(DENIED_A);
      expect(await failure(c.audit.listAuditEvents({ subject: subjectOf("b") }, A))).toEqual(known);
    });

    it("a subject filter inside the scope answers that subject's events and its risk", async () => {
      const mine = subjectOf("a");
      await issue(mine, A);
      await server.app.audit.flush();
      const res = await c.audit.listAuditEvents({ subject: mine }, A);
      expect(res.events.map((e) => [e.type, e.subject])).toEqual([[AuditEventType.TOKEN_ISSUED, mine]]);
      expect(res.risk).toBeDefined();
    });

    it("without a subject filter, only events of the caller's subjects, paged exactly as the unscoped listing filtered", async () => {
      // Interleave both tenants' events, and some that name no subject (refused calls with no known target).
      for (let i = 0; i < 7; i++) {
        await issue(subjectOf("b"), B);
        if (i % 3 === 0) await issue(subjectOf("a"), A);
        if (i % 2 === 0) await failure(c.tokens.revoke({ target: { case: "sessionId", value: ghostSession() } }, B));
      }
      await server.app.audit.flush();
      const inScopeOfA = (e: AuditEvent) => e.subject.startsWith("tenant-a:") || e.subject === "admin@a";
      const all = await listAll(c, ROOT, {}, 500);
      const expected = all.filter(inScopeOfA).map((e) => e.id);
      expect(expected.length).toBeGreaterThan(3);
      expect(all.some((e) => e.subject === "")).toBe(true);
      expect(all.some((e) => e.subject.startsWith("tenant-b:"))).toBe(true);
      for (const pageSize of [1, 2, 3, 50]) {
        const seen = await listAll(c, A, {}, pageSize);
        expect(seen.map((e) => e.id), `page size ${pageSize}`).toEqual(expected);
      }
      // With other filters too: only tenant-a's token_issued events.
      const issued = await listAll(c, A, { types: [AuditEventType.TOKEN_ISSUED] }, 2);
      expect(issued.map((e) => e.id)).toEqual(all.filter((e) => inScopeOfA(e) && e.type === AuditEventType.TOKEN_ISSUED).map((e) => e.id));
    });
  });
});

/** Every event of a listing, following page tokens. */
async function listAll(c: Clients, opts: CallOptions, req: { types?: AuditEventType[] }, pageSize: number): Promise<AuditEvent[]> {
  const events: AuditEvent[] = [];
  let pageToken = "";
  for (let i = 0; i < 1000; i++) {
    const res = await c.audit.listAuditEvents({ ...req, pageSize, pageToken }, opts);
    expect(res.events.length).toBeLessThanOrEqual(pageSize);
    events.push(...res.events);
    if (res.nextPageToken === "") return events;
    pageToken = res.nextPageToken;
  }
  throw new Error("paging did not end");
}

describe("RevocationService.WatchRevocations", () => {
  let c: Clients;
  beforeAll(() => {
    c = clients("connect-grpc");
  });
  afterAll(() => c?.close());
  const issue = (subject: string, opts: CallOptions) => c.tokens.issue({ subject, client: DEVICE }, opts);

  /** Reads a watch until `done` says so (bounded), then cancels it. */
  async function watch(opts: CallOptions, done: (msgs: WatchRevocationsResponse[]) => boolean, during?: () => Promise<void>) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), 10_000);
    const msgs: WatchRevocationsResponse[] = [];
    let started = false;
    try {
      for await (const m of c.feed.watchRevocations({ heartbeatInterval: { seconds: 0n, nanos: 100_000_000 } }, { ...opts, signal: ac.signal })) {
        msgs.push(m);
        if (!started && m.current && during) {
          started = true;
          await during();
        }
        if (done(msgs)) break;
      }
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
    return msgs;
  }
  const subjects = (msgs: WatchRevocationsResponse[]) => msgs.flatMap((m) => m.revocations.map((r) => r.subject));

  it("a tenant's watch gets only its subjects' entries, in the snapshot and live; an unscoped watch gets all", async () => {
    const [a1, b1] = [subjectOf("a"), subjectOf("b")];
    await issue(a1, A);
    await issue(b1, B);
    await c.tokens.revoke({ target: { case: "subject", value: b1 } }, B);
    await c.tokens.revoke({ target: { case: "subject", value: a1 } }, A);

    const snapshotDone = (msgs: WatchRevocationsResponse[]) => msgs.some((m) => m.snapshot && m.current);
    const rootSnapshot = subjects(await watch(ROOT, snapshotDone));
    expect(rootSnapshot).toEqual(expect.arrayContaining([a1, b1]));
    const aSnapshot = subjects(await watch(A, snapshotDone));
    expect(aSnapshot).toContain(a1);
    expect(aSnapshot.every((s) => s.startsWith("tenant-a:") || s === "admin@a"), aSnapshot.join(",")).toBe(true);
    const bSnapshot = subjects(await watch(B, snapshotDone));
    expect(bSnapshot).toContain(b1);
    expect(bSnapshot.every((s) => s.startsWith("tenant-b:"))).toBe(true);

    // Live: b's revocation goes into the feed first, so it would come no later than a's.
    const [a2, b2] = [subjectOf("a"), subjectOf("b")];
    const live = await watch(
      A,
      (msgs) => subjects(msgs).includes(a2),
      async () => {
        const sb = await issue(b2, B);
        await c.tokens.revoke({ target: { case: "sessionId", value: sb.sessionId } }, B);
        const sa = await issue(a2, A);
        await c.tokens.revoke({ target: { case: "token", value: sa.tokens!.accessToken } }, A);
      },
    );
    const seen = subjects(live);
    expect(seen).toContain(a2);
    expect(seen).not.toContain(b2);
    expect(seen.every((s) => s.startsWith("tenant-a:") || s === "admin@a")).toBe(true);
  });
});

describe("over @grpc/grpc-js (the lean gRPC path): Issue and Revoke", () => {
  type Callback = (err: grpc.ServiceError | null, res?: Record<string, unknown>) => void;
  let client: grpc.Client;
  const call = (method: string, req: Record<string, unknown>, key: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const md = new grpc.Metadata();
      md.set("authorization", `Bearer ${key}`);
      const fn = (client as unknown as Record<string, (r: unknown, m: grpc.Metadata, o: grpc.CallOptions, cb: Callback) => void>)[method]!;
      fn.call(client, req, md, { deadline: Date.now() + 10_000 }, (err, res) => {
        if (err) reject(new ConnectError(err.details, err.code as number as Code));
        else resolve(res!);
      });
    });

  beforeAll(() => {
    const def = loadSync(["tessera/v1/token.proto"], { includeDirs: [PROTO_DIR], keepCase: false, longs: String, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { tessera: { v1: { TokenService: grpc.ServiceClientConstructor } } };
    client = new pkg.tessera.v1.TokenService(new URL(server.url).host, grpc.credentials.createInsecure());
  });
  afterAll(() => client?.close());

  const issue = (subject: string, key: string) => call("issue", { subject, client: DEVICE }, key);

  it("Issue: in scope, yes; out of scope, PERMISSION_DENIED with the same message", async () => {
    const res = await issue(subjectOf("a"), KEYS.a);
    expect(res.sessionId).toHaveLength(38);
    expect(await failure(issue(subjectOf("b"), KEYS.a))).toEqual(DENIED_A);
    expect(await failure(issue(subjectOf("a"), KEYS.b))).toEqual({
      code: Code.PermissionDenied,
      rawMessage: "caller tenant-b may not act on this target (not one of its subjects, or not found)",
    });
  });

  it("Revoke by subject, session and token: in scope, yes; out of scope and unknown, the same refusal", async () => {
    const mine = await issue(subjectOf("a"), KEYS.a);
    const theirs = await issue(subjectOf("b"), KEYS.b);
    const revoke = (target: Record<string, string>, key: string = KEYS.a) => call("revoke", { ...target, reason: "scope test" }, key);

    expect(await failure(revoke({ subject: subjectOf("b") }))).toEqual(DENIED_A);
    expect(await failure(revoke({ sessionId: theirs.sessionId as string }))).toEqual(DENIED_A);
    expect(await failure(revoke({ sessionId: ghostSession() }))).toEqual(DENIED_A);
    const theirTokens = theirs.tokens as { accessToken: string; refreshToken: string };
    expect(await failure(revoke({ token: theirTokens.accessToken }))).toEqual(DENIED_A);
    expect(await failure(revoke({ token: theirTokens.refreshToken }))).toEqual(DENIED_A);
    // Nothing of theirs changed: the session is still theirs to end.
    expect(await revoke({ sessionId: theirs.sessionId as string }, KEYS.b)).toMatchObject({ sessionsRevoked: 1 });

    const myTokens = mine.tokens as { accessToken: string };
    expect(await revoke({ token: myTokens.accessToken })).toMatchObject({ tokenRevoked: true });
    expect(await revoke({ sessionId: mine.sessionId as string })).toMatchObject({ sessionsRevoked: 1 });
    expect(await revoke({ subject: subjectOf("a") })).toMatchObject({ sessionsRevoked: 0 });
    expect(await revoke({ sessionId: ghostSession() }, ROOT_KEY)).toMatchObject({ sessionsRevoked: 0 });
  });
});

describe("the audit trail", () => {
  it("records each refusal as caller_denied naming the caller, the RPC and, when known, the target's subject", async () => {
    const c = clients("connect-grpc");
    try {
      const theirs = subjectOf("b");
      const s = await c.tokens.issue({ subject: theirs, client: DEVICE }, B);
      await failure(c.tokens.revoke({ target: { case: "sessionId", value: s.sessionId } }, as(C_KEY)));
      await failure(c.sessions.getSession({ sessionId: ghostSession() }, as(C_KEY)));
      await server.app.audit.flush();
      const res = await c.audit.listAuditEvents({ types: [AuditEventType.CALLER_DENIED], pageSize: 50 }, ROOT);
      const denied = res.events.filter((e) => e.caller === "tenant-c");
      expect(denied.map((e) => [e.detail.rpc, e.subject, e.detail.code, e.detail.permission])).toEqual([
        ["SessionService.GetSession", "", "permission_denied", "sessions.read"],
        ["TokenService.Revoke", theirs, "permission_denied", "revoke"],
      ]);
      // The other tenant's auditor sees the attempt on its subject; tenant-a's listing holds neither event.
      const bView = await c.audit.listAuditEvents({ subject: theirs, types: [AuditEventType.CALLER_DENIED] }, B);
      expect(bView.events.map((e) => e.caller)).toEqual(["tenant-c"]);
      const aView = await listAll(c, A, { types: [AuditEventType.CALLER_DENIED] }, 50);
      expect(aView.filter((e) => e.caller === "tenant-c")).toEqual([]);
      expect(aView.every((e) => e.subject.startsWith("tenant-a:") || e.subject === "admin@a")).toBe(true);
    } finally {
      c.close();
    }
  });
});
