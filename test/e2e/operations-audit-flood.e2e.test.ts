/**
 * Audit flooding: a party that can reach the port but holds no key (or a caller refused a permission) cannot push
 * real events out of the bounded stored trail. Each refused call is still a log line, but repeats from one peer are
 * stored as the first refusal plus one count per window (src/domain/audit-trail.ts, src/api/audit-context.ts), on
 * both request paths (the lean gRPC path and connect-node), the peer named by its address.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type CallOptions } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { ManualClock } from "../../src/domain/clock.js";
import { Code, codeOf, connectTransport } from "../helpers/clients.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const newKey = () => `tk_${randomBytes(24).toString("base64url")}`;
const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const KEYS = { gateway: newKey(), auditor: newKey() };
const as = (caller: keyof typeof KEYS): CallOptions => ({ headers: { authorization: `Bearer ${KEYS[caller]}` } });
const CALLERS = {
  callers: [
    { name: "gateway", api_keys: [{ sha256: sha256(KEYS.gateway) }], permissions: ["issue", "introspect"] },
    { name: "auditor", api_keys: [{ sha256: sha256(KEYS.auditor) }], permissions: ["audit.read"] },
  ],
};
const REFUSED = 300; // three times the trail's size (TESSERA_AUDIT_MAX_EVENTS=100)

describe("refused calls do not flood the stored audit trail", () => {
  let dir: string;
  let server: StartedServer;
  const clock = new ManualClock(Date.now());
  const closers: Array<() => void> = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "tessera-flood-"));
    const file = join(dir, "callers.json");
    await writeFile(file, JSON.stringify(CALLERS));
    server = await startServer({ TESSERA_CALLERS_FILE: file, TESSERA_AUDIT_MAX_EVENTS: "100" }, { clock });
  });
  afterAll(async () => {
    for (const close of closers) close();
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function clients(kind: "connect-grpc" | "connect-h1") {
    const t = connectTransport(kind, server.url);
    closers.push(t.close);
    return { tokens: createClient(TokenService, t.transport), audit: createClient(AuditService, t.transport) };
  }

  async function stored(type: string) {
    await server.app.audit.flush();
    return (await server.app.audit.list({ limit: 1000 })).events.filter((e) => e.type === type).reverse();
  }

  it("many refusals from one peer: one stored event and then its count; real events stay; the log has every refusal", async () => {
    const lean = clients("connect-grpc"); // the lean unary path
    const connect = clients("connect-h1"); // connect-node, HTTP/1.1
    const issued = await lean.tokens.issue({ subject: "alice" }, as("gateway"));
    const token = issued.tokens!.accessToken;

    for (let i = 0; i < REFUSED; i++) {
      const c = i % 2 === 0 ? lean : connect;
      // No credentials, or a key nobody holds: UNAUTHENTICATED either way. Some claim another peer address: the
      // listener overwrites the header, so they count as what they are.
      const headers: Record<string, string> = i % 3 === 0 ? { authorization: `Bearer ${newKey()}` } : {};
      if (i % 5 === 0) headers["x-tessera-peer-address"] = `198.51.100.${i % 250}`;
      const options = { headers };
      expect(await codeOf(c.tokens.introspect({ token }, options))).toBe(Code.Unauthenticated);
    }
    // A known caller refused a permission, repeatedly: folded under its own key.
    for (let i = 0; i < 20; i++) expect(await codeOf(lean.audit.listAuditEvents({}, as("gateway")))).toBe(Code.PermissionDenied);

    // The Issue is still in the trail, and the log has every refusal, each naming its peer.
    expect((await stored("token_issued")).map((e) => e.subject)).toEqual(["alice"]);
    const lines = server.logs.filter((l) => (l.audit as { type?: string } | undefined)?.type === "caller_denied");
    expect(lines).toHaveLength(REFUSED + 20);
    for (const l of lines) expect((l.audit as { detail: { peer?: string } }).detail.peer).toBe("127.0.0.1");

    // Inside the window: the first refusal of each kind is stored, the rest only counted; the Issue is still there.
    const first = await stored("caller_denied");
    expect(first.map((e) => [e.detail.code, e.detail.rpc, e.caller, e.detail.count])).toEqual([
      ["unauthenticated", "TokenService.Introspect", "", undefined],
      ["permission_denied", "AuditService.ListAuditEvents", "gateway", undefined],
    ]);
    expect(first[0]!.detail.peer).toBe("127.0.0.1");

    // The window closes: each count is stored as one event.
    clock.advance(61_000);
    const all = await stored("caller_denied");
    expect(all.map((e) => [e.detail.code, e.detail.count])).toEqual([
      ["unauthenticated", undefined],
      ["permission_denied", undefined],
      ["unauthenticated", String(REFUSED - 1)],
      ["permission_denied", "19"],
    ]);
    expect(all[2]!.detail).toMatchObject({ peer: "127.0.0.1", first_at: expect.any(String), last_at: expect.any(String) });
    expect((await stored("token_issued")).map((e) => e.subject)).toEqual(["alice"]);
    // And the auditor sees the same through the API.
    const listed = await lean.audit.listAuditEvents({ pageSize: 100 }, as("auditor"));
    expect(listed.events.filter((e) => e.detail.count !== undefined).map((e) => e.detail.count)).toEqual(["19", String(REFUSED - 1)]);
  });
});
