/**
 * Folding repeated refusals (src/domain/audit-trail.ts): every refusal is a log line, but of one fold key's refusals
 * within the window only the first is stored at once and the rest become one stored count, when the window closes
 * (the next refusal after it, a flush, or close); the open keys are capped, and what finds no room is counted under
 * one overflow key, so neither memory nor the stored trail grows with the number of peers.
 */
import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/domain/audit.js";
import { Audit, type AuditInput, type AuditTrailConfig } from "../../src/domain/audit-trail.js";
import { ManualClock } from "../../src/domain/clock.js";
import { MemoryStore } from "../../src/store/memory.js";

const T0 = Date.UTC(2026, 0, 1);
const WINDOW = 60_000;

function setup(config: Partial<AuditTrailConfig> = {}) {
  const store = new MemoryStore();
  const clock = new ManualClock(T0);
  const logged: AuditEvent[] = [];
  const audit = new Audit({
    store,
    clock,
    config: { maxEvents: 100, maxAgeMs: 86_400_000, riskWindowMs: 900_000, riskThreshold: 50, foldWindowMs: WINDOW, ...config },
    log: (e) => logged.push(e),
  });
  const stored = async () => {
    await audit.flush();
    return (await store.listAudit({ limit: 10_000 })).events.reverse();
  };
  return { audit, clock, logged, stored };
}

/** A refusal from `peer` as audit-context.ts records one (the key: peer, code, caller, rpc). */
function refusal(peer: string, n = 0, code = "unauthenticated"): AuditInput {
  return {
    type: "caller_denied",
    context: { caller: "", ip: "", userAgent: "", deviceId: "", requestId: `r${n}` },
    detail: { rpc: "TokenService.Introspect", code, reason: "missing credentials", peer },
    foldKey: JSON.stringify(["caller_denied", peer, code, "", "TokenService.Introspect"]),
  };
}

describe("folding refusals", () => {
  it("stores the first refusal at once and the rest as one count when the window closes; the log has every one", async () => {
    const { audit, clock, logged, stored } = setup();
    for (let i = 0; i < 500; i++) {
      audit.record(refusal("203.0.113.9", i));
      clock.advance(10);
    }
    expect(logged).toHaveLength(500);
    expect(logged.map((e) => e.requestId)).toEqual(Array.from({ length: 500 }, (_, i) => `r${i}`));
    // Inside the window: the first refusal only.
    expect((await stored()).map((e) => [e.requestId, e.detail.count])).toEqual([["r0", undefined]]);
    clock.advance(WINDOW);
    const events = await stored();
    expect(events.map((e) => [e.requestId, e.detail.count])).toEqual([
      ["r0", undefined],
      ["r499", "499"],
    ]);
    expect(events[1]!.detail).toMatchObject({
      peer: "203.0.113.9",
      code: "unauthenticated",
      rpc: "TokenService.Introspect",
      first_at: new Date(T0).toISOString(),
      last_at: new Date(T0 + 4990).toISOString(),
    });
    expect(logged).toHaveLength(500); // the count is no log line of its own
    expect(audit.folding).toBe(0);
  });

  it("a refusal after the window stores the count and opens the next window, itself stored", async () => {
    const { audit, clock, stored } = setup();
    audit.record(refusal("p", 1));
    audit.record(refusal("p", 2));
    audit.record(refusal("p", 3));
    clock.advance(WINDOW);
    audit.record(refusal("p", 4)); // the window is over: the count of 2, then this one as the first of the next
    audit.record(refusal("p", 5));
    expect((await stored()).map((e) => [e.requestId, e.detail.count])).toEqual([
      ["r1", undefined],
      ["r3", "2"],
      ["r4", undefined],
    ]);
    await audit.close(); // the open window's count is stored on the way out
    expect((await stored()).map((e) => [e.requestId, e.detail.count]).at(-1)).toEqual(["r5", "1"]);
  });

  it("keeps keys apart (peer, code), and real events are stored as always", async () => {
    const { audit, stored } = setup();
    for (let i = 0; i < 50; i++) {
      audit.record(refusal("a", i));
      audit.record(refusal("b", i));
      audit.record(refusal("a", i, "permission_denied"));
    }
    audit.record({ type: "token_issued", subject: "alice" });
    audit.record({ type: "token_issued", subject: "alice" });
    const types = (await stored()).map((e) => `${e.type}:${e.detail.peer ?? ""}:${e.detail.code ?? ""}`);
    expect(types).toEqual([
      "caller_denied:a:unauthenticated",
      "caller_denied:b:unauthenticated",
      "caller_denied:a:permission_denied",
      "token_issued::",
      "token_issued::",
    ]);
  });

  it("caps the open keys: refusals from more peers than that are counted under one overflow key", async () => {
    const { audit, clock, logged, stored } = setup({ foldKeys: 10, maxEvents: 1000 });
    for (let round = 0; round < 3; round++) {
      for (let peer = 0; peer < 1000; peer++) audit.record(refusal(`10.0.${peer >> 8}.${peer & 255}`, peer));
    }
    expect(logged).toHaveLength(3000);
    expect(audit.folding).toBe(11); // 10 keys and the overflow key, whatever the number of peers
    const during = await stored();
    expect(during).toHaveLength(11); // the first refusal of each, and the first that overflowed
    clock.advance(WINDOW);
    const after = await stored();
    const counts = after.slice(11).map((e) => [e.detail.overflow ?? "", e.detail.count]);
    // Each of the 10 peers with a key came back twice; everything else (2970 refusals, the first stored) overflowed.
    expect(counts).toEqual([...Array.from({ length: 10 }, () => ["", "2"]), ["true", "2969"]]);
    expect(audit.folding).toBe(0);
  });
});
