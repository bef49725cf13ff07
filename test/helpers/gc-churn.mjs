// A child process for test/unit/gc-pauses.test.ts: with argv[2] = "short", applies shortMajorPauses (src/observability/
// process.ts) first; then keeps ~20 MB alive while objects pass through a ring (old enough to be promoted, then
// dropped), and prints how many full (major) collections it took.
import v8 from "node:v8";
import { PerformanceObserver, constants } from "node:perf_hooks";
import { shortMajorPauses } from "../../src/observability/process.ts";

if (process.argv[2] === "short") shortMajorPauses(process.execArgv, (flags) => v8.setFlagsFromString(flags));
let majors = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors++;
}).observe({ entryTypes: ["gc"] });
const live = Array.from({ length: 200_000 }, (_, i) => ({ i, s: `live-${i}` }));
const ring = new Array(100_000);
for (let n = 0; n < 5_000_000; n++) ring[n % ring.length] = { n, s: `churn-${n}`, a: [n, n + 1] };
// The observer reports after the collections: give it a turn.
setTimeout(() => process.stdout.write(`${majors} ${live.length}\n`), 50);
