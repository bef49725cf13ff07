/**
 * A mixed load for the failover tests: workers that loop Issue, Introspect, Refresh and Revoke-by-session on one
 * authority, recording every success (by operation and time), every failure by gRPC code, and the access tokens
 * whose session revocation was acknowledged (to check afterwards that none of them reads active).
 */
import { expect } from "vitest";
import { Code, ConnectError, statusOf, type TesseraClient } from "./clients.js";

const PHONE = { deviceId: "phone-failover", userAgent: "tessera-e2e/1.0" };

export interface MixedLoad {
  /** Access tokens of sessions whose revocation was acknowledged. */
  readonly revoked: string[];
  /** Failures by gRPC code name. */
  readonly failures: Map<string, number>;
  /** Every successful call: its operation and when it answered. */
  readonly oks: { op: string; at: number }[];
  /** Stops the workers and waits for them. */
  stop(): Promise<void>;
}

/** Starts `workers` workers on `subjects` subjects per worker (named from `label`). */
export function mixedLoad(client: TesseraClient, label: string, opts: { workers?: number; subjects?: number } = {}): MixedLoad {
  const revoked: string[] = [];
  const failures = new Map<string, number>();
  const oks: { op: string; at: number }[] = [];
  let stopped = false;
  let n = 0;
  const step = async <T>(op: string, call: () => Promise<T>): Promise<T> => {
    const result = await call();
    oks.push({ op, at: Date.now() });
    return result;
  };
  const worker = async (w: number) => {
    while (!stopped) {
      try {
        const issued = await step("issue", () => client.issue({ subject: `${label}-${w}-${n++ % (opts.subjects ?? 50)}`, client: PHONE }));
        await step("introspect", () => client.introspect(issued.tokens.accessToken));
        const next = await step("refresh", () => client.refresh(issued.tokens.refreshToken, PHONE));
        const r = await step("revoke", () => client.revoke({ sessionId: issued.sessionId }));
        if (r.sessionsRevoked === 1) revoked.push(next.tokens.accessToken);
      } catch (err) {
        const code = Code[ConnectError.from(err).code];
        failures.set(code, (failures.get(code) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  };
  const running = Array.from({ length: opts.workers ?? 4 }, (_, w) => worker(w));
  return {
    revoked,
    failures,
    oks,
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
  };
}

/**
 * What a failover under `load` must leave, once the load has stopped: it failed closed, and only so (every failure
 * UNAVAILABLE, at least one); nothing acknowledged was lost (every token of a session whose revocation was
 * acknowledged reads REVOKED); the authority (its stderr) met nothing unhandled.
 */
export async function expectClosedAndNothingLost(load: MixedLoad, client: TesseraClient, stderr: readonly string[]): Promise<void> {
  expect([...load.failures.keys()].filter((c) => c !== "Unavailable")).toEqual([]);
  expect(load.failures.get("Unavailable") ?? 0).toBeGreaterThan(0);
  const states = await Promise.all(load.revoked.map((t) => statusOf(client, t)));
  expect(states.filter((s) => s !== "REVOKED")).toEqual([]);
  expect(stderr.join("\n")).not.toMatch(/uncaught|unhandled/i);
}
