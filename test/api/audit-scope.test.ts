/**
 * ListAuditEvents for a caller with `subjects` and no subject filter (src/api/audit-service.ts scopedList), over the
 * memory store's real cursors: following page tokens yields exactly the unscoped listing's events of the scope, for
 * any page size and scope density, never an event twice or one skipped; and one page costs at most SCOPED_READS store
 * reads asking for at most AUDIT_SCAN_LIMIT events in all, however few of the trail's events are in scope.
 */
import { describe, expect, it } from "vitest";
import { SCOPED_READS, scopedList } from "../../src/api/audit-service.js";
import { subjectScope } from "../../src/config/callers.js";
import { AUDIT_SCAN_LIMIT, type AuditEvent, type AuditQuery, type StoredAuditEvent } from "../../src/domain/audit.js";
import { MemoryStore } from "../../src/store/memory.js";

const T0 = Date.UTC(2026, 0, 1);
const BOUNDS = { now: T0 + 1_000_000, maxEvents: 100_000, maxAgeMs: 10 ** 9, riskWindowMs: 1000 };

/** A memory store holding `n` events, the i-th naming `subjectAt(i)`, and a `list` that counts its reads. */
async function trail(n: number, subjectAt: (i: number) => string) {
  const store = new MemoryStore();
  const events: AuditEvent[] = Array.from({ length: n }, (_, i) => ({
    // Types that feed no risk signal: appending stays quick.
    type: i % 5 === 0 ? "caller_denied" : "subject_revoked",
    severity: i % 5 === 0 ? "warning" : "notice",
    at: T0 + Math.floor(i / 3), // several events per ms: ids with sequence numbers
    caller: "gw",
    ip: "",
    userAgent: "",
    deviceId: "",
    requestId: `r${i}`,
    subject: subjectAt(i),
    sessionId: "",
    detail: {},
  }));
  await store.appendAudit(events, BOUNDS);
  const reads: number[] = [];
  const audit = {
    list: (q: AuditQuery) => {
      reads.push(q.limit);
      return store.listAudit(q);
    },
  };
  return { store, audit, reads };
}

async function pageThrough(list: (cursor: string | null) => Promise<{ events: StoredAuditEvent[]; next: string | null }>) {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 10_000; i++) {
    const page = await list(cursor);
    ids.push(...page.events.map((e) => e.id));
    if (page.next === null) return ids;
    cursor = page.next;
  }
  throw new Error("paging did not end");
}

describe("scopedList", () => {
  const scope = subjectScope(["tenant-a:*", "admin@a"], "subjects")!;
  const subjectAt = (i: number) => (i % 7 === 0 ? `tenant-a:${i % 4}` : i % 11 === 0 ? "admin@a" : i % 13 === 0 ? "" : `tenant-b:${i % 5}`);

  it.each([1, 2, 3, 7, 50, 500])("page size %i: exactly the scope's events, newest first, each once", async (limit) => {
    const { store, audit } = await trail(1500, subjectAt);
    const expected = (await store.listAudit({ limit: 100_000 })).events.filter((e) => scope.allows(e.subject)).map((e) => e.id);
    expect(expected.length).toBeGreaterThan(200);
    const ids = await pageThrough(async (cursor) => {
      const page = await scopedList(audit, { limit, cursor }, scope);
      expect(page.events.length).toBeLessThanOrEqual(limit);
      expect(page.events.every((e) => scope.allows(e.subject))).toBe(true);
      return page;
    });
    expect(ids).toEqual(expected);
  });

  it("with other filters as well (types)", async () => {
    const { store, audit } = await trail(900, subjectAt);
    const q = { types: ["caller_denied" as const] };
    const expected = (await store.listAudit({ ...q, limit: 100_000 })).events.filter((e) => scope.allows(e.subject)).map((e) => e.id);
    expect(expected.length).toBeGreaterThan(10);
    expect(await pageThrough((cursor) => scopedList(audit, { ...q, limit: 4, cursor }, scope))).toEqual(expected);
  });

  it("a page is bounded: at most SCOPED_READS reads and AUDIT_SCAN_LIMIT events asked for, then a short page to follow", async () => {
    // 15 000 events of another tenant, then (older) one of ours: the first pages are empty, each with a cursor.
    const n = 15_000;
    const { audit, reads } = await trail(n, (i) => (i === 0 ? "tenant-a:first" : "tenant-b:x"));
    let pages = 0;
    const ids = await pageThrough(async (cursor) => {
      reads.length = 0;
      const page = await scopedList(audit, { limit: 50, cursor }, scope);
      pages++;
      expect(reads.length).toBeLessThanOrEqual(SCOPED_READS);
      expect(reads.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(AUDIT_SCAN_LIMIT);
      return page;
    });
    expect(ids).toHaveLength(1);
    expect(pages).toBeGreaterThan(n / AUDIT_SCAN_LIMIT - 1);
  });

  it("a dense scope fills a page in one read of the page's size", async () => {
    const { audit, reads } = await trail(200, (i) => `tenant-a:${i}`);
    const page = await scopedList(audit, { limit: 20, cursor: null }, scope);
    expect(page.events).toHaveLength(20);
    expect(reads).toEqual([20]);
  });
});
