/**
 * bench/h2load.ts: a fixed-rate run times its window itself from h2load's start. When h2load ends before that window
 * closes (it sends faster than the rate to catch up after the machine stalled it), the run says so with WindowMissed
 * (the bench then measures again), after closing the window it opened, so the probes on the server end as they began.
 * h2load here is a stand-in script (BENCH_H2LOAD) that prints a summary after a set time and exits.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const dir = mkdtempSync(join(os.tmpdir(), "tessera-fake-h2load-"));
const fake = join(dir, "h2load");
const body = join(dir, "body.bin");

beforeAll(() => {
  // Sleeps $FAKE_H2LOAD_MS, writes a one-line log where --log-file says, prints h2load's summary lines.
  writeFileSync(
    fake,
    `#!/bin/sh
if [ "$1" = "--version" ]; then echo "h2load nghttp2/0.0-fake"; exit 0; fi
for a in "$@"; do case "$a" in --log-file=*) log="\${a#--log-file=}";; esac; done
sleep "$FAKE_H2LOAD_S"
now=$(date +%s%6N)
printf '%s\\t0\\t1000\\n' "$now" > "$log"
echo "finished in 1.00s, 100.00 req/s, 1.00MB/s"
echo "requests: 100 total, 100 started, 100 done, 100 succeeded, 0 failed, 0 errored, 0 timeout"
echo "status codes: 100 2xx, 0 3xx, 0 4xx, 0 5xx"
`,
  );
  chmodSync(fake, 0o755);
  writeFileSync(body, "x");
  process.env.BENCH_H2LOAD = fake;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(seconds: number) {
  process.env.FAKE_H2LOAD_S = String(seconds);
  const { runH2load } = await import("../../bench/h2load.js");
  const events: string[] = [];
  const result = runH2load(
    "noop",
    { http: "h2c", url: "http://127.0.0.1:1/x", headers: {}, body: new Uint8Array(1) },
    body,
    { connections: 1, streams: 1, warmupMs: 1000, durationMs: 2000, rate: 100 },
    { onOpen: () => void events.push("open"), onClose: () => void events.push("close") },
  );
  return { result, events };
}

describe("a fixed-rate h2load run", () => {
  it("that ends before its window closes is WindowMissed, with the window it opened closed", async () => {
    const { WindowMissed } = await import("../../bench/h2load.js");
    const { result, events } = await run(2); // the window: from 1 010 to 3 010 ms
    await expect(result).rejects.toBeInstanceOf(WindowMissed);
    expect(events).toEqual(["open", "close"]);
  });

  it("that ends before its window opens is WindowMissed, and opens nothing", async () => {
    const { WindowMissed } = await import("../../bench/h2load.js");
    const { result, events } = await run(0);
    await expect(result).rejects.toBeInstanceOf(WindowMissed);
    expect(events).toEqual([]);
  });

  it("that outlasts its window reports it", async () => {
    const { result, events } = await run(3.8);
    const { stats } = await result;
    expect(events).toEqual(["open", "close"]);
    expect(stats.done).toBe(100);
  });
});
