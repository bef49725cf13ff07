/**
 * Event-loop delay of the current process over a window, from perf_hooks.monitorEventLoopDelay. The histogram records
 * the time between two firings of a repeating `resolutionMs` timer; the figures here subtract the resolution, so they
 * say how late the timer was: 0 on an idle loop, ~30 for a 30 ms stretch of JavaScript (or GC) that held the loop.
 * Alongside, the garbage collector's pauses over the same window (PerformanceObserver "gc" entries), to tell a GC
 * pause from JavaScript that ran long.
 */
import { constants, monitorEventLoopDelay, PerformanceObserver, type PerformanceEntry } from "node:perf_hooks";
import type { LoopDelay } from "./spec.js";

/** Fine enough to see a few-millisecond stall, coarse enough to cost next to nothing (500 timer firings a second). */
export const LOOP_DELAY_RESOLUTION_MS = 2;

/** Starts measuring; the function returned stops and returns the figures (milliseconds). */
export function startLoopDelay(resolutionMs = LOOP_DELAY_RESOLUTION_MS): () => LoopDelay {
  const h = monitorEventLoopDelay({ resolution: resolutionMs });
  const gc = { count: 0, totalMs: 0, maxMs: 0, major: 0 };
  const count = (entries: PerformanceEntry[]) => {
    for (const e of entries) {
      gc.count++;
      gc.totalMs += e.duration;
      gc.maxMs = Math.max(gc.maxMs, e.duration);
      if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++;
    }
  };
  const observer = new PerformanceObserver((list) => count(list.getEntries()));
  observer.observe({ entryTypes: ["gc"] });
  h.enable();
  return () => {
    h.disable();
    count(observer.takeRecords()); // entries not delivered yet
    observer.disconnect();
    const late = (ns: number) => (h.count > 0 ? Math.max(0, ns / 1e6 - resolutionMs) : NaN);
    return { resolutionMs, mean: late(h.mean), p99: late(h.percentile(99)), max: late(h.max), gc };
  };
}
