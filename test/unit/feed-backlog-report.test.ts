/**
 * What the authority makes of the revocation feed's backlog reports (src/app.ts feedBacklogReporter): one log line
 * each, at the level its meaning calls for, and the entries a full backlog dropped counted in
 * tessera_feed_backlog_dropped_total. The failed append's error is logged without the command's arguments (an
 * ioredis error carries them: the entries, which name tokens).
 */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { feedBacklogReporter } from "../../src/app.js";
import { createLogger } from "../../src/observability/logger.js";
import { Metrics } from "../../src/observability/metrics.js";

function reporter() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  const metrics = new Metrics();
  const dropped = async () => (await metrics.registry.getSingleMetric("tessera_feed_backlog_dropped_total")!.get()).values[0]?.value;
  return { report: feedBacklogReporter(createLogger("info", sink), metrics), lines, dropped };
}

/** An error as ioredis makes one for a failed script: its command, with the arguments, attached. */
function scriptError(): Error {
  return Object.assign(new Error("WRONGTYPE Operation against a key holding the wrong kind of value"), {
    command: { name: "evalsha", args: ["sha", "2", "feed", "meta", "jti-secret-0123456789"] },
  });
}

describe("the feed backlog's reports", () => {
  it("kept: a warning; kept with entries dropped: an error, and the dropped counted", async () => {
    const { report, lines, dropped } = reporter();
    report({ event: "kept", entries: 2, pending: 2, dropped: 0, error: scriptError() });
    expect(lines.at(-1)).toMatchObject({ level: "warn", feed: "backlog", entries: 2, pending: 2 });
    expect(lines.at(-1)!.err).toMatchObject({ message: expect.stringContaining("WRONGTYPE") });
    expect(await dropped()).toBe(0);

    report({ event: "kept", entries: 5, pending: 10_000, dropped: 3, error: scriptError() });
    report({ event: "kept", entries: 1, pending: 10_000, dropped: 1, error: scriptError() });
    expect(lines.slice(-2)).toEqual([
      expect.objectContaining({ level: "error", feed: "backlog full", entries: 5, pending: 10_000, dropped: 3 }),
      expect.objectContaining({ level: "error", feed: "backlog full", dropped: 1 }),
    ]);
    expect(await dropped()).toBe(4);
    expect(JSON.stringify(lines)).not.toContain("jti-secret");
  });

  it("appended: information; abandoned at close: an error naming how many never reached the feed", async () => {
    const { report, lines, dropped } = reporter();
    report({ event: "appended", appended: 7, expired: 2 });
    report({ event: "abandoned", pending: 4 });
    expect(lines).toEqual([
      expect.objectContaining({ level: "info", feed: "backlog appended", appended: 7, expired: 2 }),
      expect.objectContaining({ level: "error", feed: "backlog abandoned", pending: 4 }),
    ]);
    expect(await dropped()).toBe(0);
  });
});
