/**
 * Preloaded into a server under test (`node --import tsx --import ./bench/loop-delay-hook.ts ...`) when
 * BENCH_LOOP_DELAY=1: the first SIGUSR2 starts measuring its event-loop delay (bench/loop-delay.ts), the second stops
 * and prints one line on stdout, `{"benchLoopDelay":{...LoopDelay}}`, which the orchestrator reads; and so on for the
 * next window. Nothing runs between windows. Not to be combined with bench/profile-hook.ts (also SIGUSR2).
 */
import { startLoopDelay } from "./loop-delay.js";
import type { LoopDelay } from "./spec.js";

if (process.env.BENCH_LOOP_DELAY === "1") {
  let stop: (() => LoopDelay) | undefined;
  process.on("SIGUSR2", () => {
    if (stop === undefined) {
      stop = startLoopDelay();
      return;
    }
    const benchLoopDelay = stop();
    stop = undefined;
    process.stdout.write(`${JSON.stringify({ benchLoopDelay })}\n`);
  });
}
