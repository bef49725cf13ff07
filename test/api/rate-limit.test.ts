/**
 * Direct calls of src/api/rate-limit.ts: which refresh failures count towards the lockout, what a success clears,
 * how IPs are keyed, and that a limiter whose Redis is unreachable fails closed (UNAVAILABLE, never "let through").
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { toConnectError } from "../../src/api/errors.js";
import { ipKey, Limits, type LimitKind, type RefreshHolder } from "../../src/api/rate-limit.js";
import { TesseraError } from "../../src/domain/errors.js";
import { counterStore } from "../../src/store/counters.js";
import { createRedisClient } from "../../src/store/redis.js";
import { freePort } from "../helpers/redis-server.js";
import { until } from "../helpers/wait.js";

const LOCKOUT = { after: 3, subjectAfter: 5, windowMs: 60_000, lockMs: 2_000 };

function limits(extra: Partial<ConstructorParameters<typeof Limits>[0]> = {}) {
  const limited: [LimitKind, string][] = [];
  const l = new Limits({
    counters: counterStore({ memory: true }),
    lockout: LOCKOUT,
    onLimited: (what, key) => limited.push([what, key]),
    ...extra,
  });
  return { l, limited };
}

/** One refresh through the limits: "admitted" reaches admit and then ends as `outcome`; "forged" never reaches it. */
async function refresh(l: Limits, holder: RefreshHolder, outcome: "ok" | "unauthenticated" | "unavailable" | "forged"): Promise<Code | "ok"> {
  try {
    await l.refresh(async (admit) => {
      if (outcome === "forged") throw new TesseraError("unauthenticated", "invalid refresh token");
      await admit(holder);
      if (outcome === "ok") return;
      throw new TesseraError(outcome, outcome);
    });
    return "ok";
  } catch (err) {
    return toConnectError(err).code;
  }
}

const alice1 = { subject: "alice", sessionId: "S1" };
const alice2 = { subject: "alice", sessionId: "S2" };
const alice3 = { subject: "alice", sessionId: "S3" };
const bob = { subject: "bob", sessionId: "B1" };

describe("refresh lockout", () => {
  it("locks a session after `after` failures of validly signed tokens, with a RetryInfo up to the lock time", async () => {
    const { l, limited } = limits();
    for (let i = 0; i < 3; i++) expect(await refresh(l, alice1, "unauthenticated")).toBe(Code.Unauthenticated);
    const err = await l.refresh(async (admit) => admit(alice1)).catch((e: unknown) => e as ConnectError);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
    const [info] = (err as ConnectError).findDetails(RetryInfoSchema);
    const delayMs = Number(info!.retryDelay!.seconds) * 1000 + info!.retryDelay!.nanos / 1e6;
    expect(delayMs).toBeGreaterThan(0);
    expect(delayMs).toBeLessThanOrEqual(LOCKOUT.lockMs);
    expect(limited).toEqual([["session_lockout", "S1"]]);
    // Another session of the same subject is not locked (3 subject failures < 5); another subject neither.
    expect(await refresh(l, alice2, "ok")).toBe("ok");
    expect(await refresh(l, bob, "ok")).toBe("ok");
  });

  it("does not count forged tokens or an unreachable store", async () => {
    const { l } = limits();
    for (let i = 0; i < 10; i++) expect(await refresh(l, alice1, "forged")).toBe(Code.Unauthenticated);
    for (let i = 0; i < 10; i++) expect(await refresh(l, alice1, "unavailable")).toBe(Code.Unavailable);
    expect(await refresh(l, alice1, "ok")).toBe("ok");
  });

  it("a successful refresh clears its session's count", async () => {
    const { l } = limits({ lockout: { ...LOCKOUT, subjectAfter: 0 } });
    for (let i = 0; i < 2; i++) await refresh(l, alice1, "unauthenticated");
    expect(await refresh(l, alice1, "ok")).toBe("ok");
    for (let i = 0; i < 2; i++) expect(await refresh(l, alice1, "unauthenticated")).toBe(Code.Unauthenticated);
    expect(await refresh(l, alice1, "ok")).toBe("ok");
    await refresh(l, alice1, "unauthenticated");
    expect(await refresh(l, alice1, "ok")).toBe("ok");
  });

  it("locks a subject after `subjectAfter` failures across its sessions, before its sessions are touched", async () => {
    const { l, limited } = limits();
    for (const s of [alice1, alice2, alice1, alice2, alice3]) expect(await refresh(l, s, "unauthenticated")).toBe(Code.Unauthenticated);
    let touched = false;
    const code = await l
      .refresh(async (admit) => {
        await admit({ subject: "alice", sessionId: "S9" });
        touched = true;
      })
      .catch((e: unknown) => toConnectError(e).code);
    expect(code).toBe(Code.ResourceExhausted);
    expect(touched).toBe(false);
    expect(limited).toEqual([["subject_lockout", "alice"]]);
    expect(await refresh(l, bob, "ok")).toBe("ok");
  });

  it("ends after the lock time", async () => {
    const { l } = limits({ lockout: { ...LOCKOUT, lockMs: 1_000 } });
    let lockedAt = 0; // just before the failure that locks the session
    for (let i = 0; i < 3; i++) {
      lockedAt = Date.now();
      expect(await refresh(l, alice1, "unauthenticated")).toBe(Code.Unauthenticated);
    }
    expect(await refresh(l, alice1, "ok")).toBe(Code.ResourceExhausted);
    // Refused (and not counted) until the lock time is over, then let through.
    const unlocked = await until(
      async () => {
        const outcome = await refresh(l, alice1, "ok");
        return outcome === Code.ResourceExhausted ? undefined : { outcome };
      },
      10_000,
      "the lock to end",
    );
    expect(unlocked.outcome).toBe("ok");
    expect(Date.now() - lockedAt).toBeGreaterThanOrEqual(900); // lockMs 1s, less timer slack
  });

  it("is off with `after` and `subjectAfter` 0", async () => {
    const { l } = limits({ lockout: { ...LOCKOUT, after: 0, subjectAfter: 0 } });
    for (let i = 0; i < 20; i++) expect(await refresh(l, alice1, "unauthenticated")).toBe(Code.Unauthenticated);
  });
});

describe("per-subject and per-IP limits", () => {
  it("count Issue per subject and per IP, and Refresh per subject apart from Issue", async () => {
    const { l, limited } = limits({ subject: { points: 2, windowMs: 5_000 }, ip: { points: 3, windowMs: 5_000 } });
    await l.issue("carol", "192.0.2.1");
    await l.issue("carol", "192.0.2.1");
    await expect(l.issue("carol", "192.0.2.2")).rejects.toMatchObject({ code: Code.ResourceExhausted });
    await l.issue("dave", "192.0.2.1"); // third from this IP
    await expect(l.issue("erin", "192.0.2.1")).rejects.toMatchObject({ code: Code.ResourceExhausted });
    await l.issue("erin", ""); // no IP given: only the subject counts
    expect(await refresh(l, { subject: "carol", sessionId: "C1" }, "ok")).toBe("ok");
    expect(limited).toEqual([
      ["subject", "carol"],
      ["ip", "192.0.2.1"],
    ]);
  });

  it("key IPv6 addresses by /64 and IPv4-mapped addresses as IPv4", () => {
    expect(ipKey("192.0.2.7")).toBe("192.0.2.7");
    expect(ipKey("2001:DB8:0:0:1::1")).toBe("2001:db8:0:0::/64");
    expect(ipKey("2001:db8::ffff:1")).toBe("2001:db8:0:0::/64");
    expect(ipKey("2001:db8:0:1::1")).toBe("2001:db8:0:1::/64");
    expect(ipKey("::1")).toBe("0:0:0:0::/64");
    expect(ipKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(ipKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
  });
});

describe("fail closed", () => {
  it("a limiter that cannot reach Redis answers UNAVAILABLE, never lets the call through", async () => {
    const port = await freePort(); // nothing listens there
    const client = createRedisClient(`redis://127.0.0.1:${port}/0`, { commandTimeoutMs: 200 });
    try {
      const { l } = limits({ counters: counterStore({ redis: client, prefix: "t:" }), subject: { points: 100, windowMs: 1_000 } });
      await expect(l.issue("alice", "")).rejects.toMatchObject({ code: "unavailable" });
      expect(await refresh(l, alice1, "ok")).toBe(Code.Unavailable);
    } finally {
      client.disconnect();
    }
  });
});
