/**
 * domain/ids.ts digest (with its kept digests) and domain/audit.ts riskSignalsBySubject: the two pieces of the Issue
 * path that run for every call's subject, IP and device id.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { NO_CONTEXT, riskSignalsBySubject, riskTag, type AuditEvent, type AuditType } from "../../src/domain/audit.js";
import { digest, keptDigests, newSessionId, isSessionIdOf, subjectTag } from "../../src/domain/ids.js";

const sha = (s: string) => createHash("sha256").update(s).digest("base64url");

describe("digest", () => {
  it("is the SHA-256 of the parts joined by NUL, the first time and every time after", () => {
    for (let round = 0; round < 3; round++) {
      expect(digest("alice")).toBe(sha("alice"));
      expect(digest("a", "b")).toBe(sha("a\0b"));
      expect(digest("a\0b")).toBe(sha("a\0b"));
      expect(digest("")).toBe(sha(""));
    }
  });

  it("answers long inputs without keeping them", () => {
    const long = "x".repeat(10_000);
    expect(digest(long)).toBe(sha(long));
    expect(digest(long)).toBe(sha(long));
  });

  it("keeps at most 4096 digests, however many inputs it sees, and still answers the forgotten ones", () => {
    for (let i = 0; i < 10_000; i++) expect(digest(`subject-${i}`)).toBe(sha(`subject-${i}`));
    expect(keptDigests()).toBeLessThanOrEqual(4096);
    expect(keptDigests()).toBeGreaterThan(0);
    expect(digest("subject-0")).toBe(sha("subject-0"));
  });

  it("gives session ids their subject's tag, and tells them from another subject's", () => {
    const id = newSessionId("alice");
    expect(id.startsWith(subjectTag("alice"))).toBe(true);
    expect(isSessionIdOf(id, "alice")).toBe(true);
    expect(isSessionIdOf(id, "bob")).toBe(false);
  });
});

describe("riskSignalsBySubject", () => {
  const event = (type: AuditType, subject: string, at: number, ip = "203.0.113.9"): AuditEvent => ({
    ...NO_CONTEXT,
    type,
    severity: "info",
    at,
    subject,
    sessionId: "",
    ip,
    deviceId: "device-1",
    detail: {},
  });

  it("groups each subject's signals in event order, and leaves out events that carry none", () => {
    const events = [
      event("token_issued", "alice", 1),
      event("token_refreshed", "bob", 2),
      event("session_evicted", "alice", 3),
      event("token_refreshed", "alice", 4, "198.51.100.7"),
      event("token_issued", "", 5),
      event("refresh_reuse_detected", "bob", 6),
      event("token_issued", "alice", 7),
    ];
    const out = riskSignalsBySubject(events);
    expect([...out.keys()]).toEqual(["alice", "bob"]);
    expect(out.get("alice")!.map((s) => [s.at, s.count ?? null, s.ip])).toEqual([
      [1, null, riskTag("203.0.113.9")],
      [4, "refresh", riskTag("198.51.100.7")],
      [7, null, riskTag("203.0.113.9")],
    ]);
    expect(out.get("bob")!.map((s) => [s.at, s.count])).toEqual([
      [2, "refresh"],
      [6, "reuse"],
    ]);
  });

  it("takes a batch of one subject's thousands of events in one pass", () => {
    const events = Array.from({ length: 5_000 }, (_, i) => event("token_issued", "alice", i));
    const out = riskSignalsBySubject(events);
    expect(out.get("alice")!.map((s) => s.at)).toEqual(events.map((e) => e.at));
  });
});
