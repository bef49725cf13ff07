/**
 * Preloaded into a process to be profiled (`node --import tsx --import ./bench/profile-hook.ts ...`): the first
 * SIGUSR2 starts V8's CPU profiler through the inspector, the second stops it, writes the profile (.cpuprofile, as
 * Chrome DevTools reads it) to $BENCH_CPU_PROFILE and prints "bench-profile-written" on stdout. So the profile covers
 * exactly the measurement window, not start-up or set-up.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";

const out = process.env.BENCH_CPU_PROFILE;
if (out) {
  const session = new Session();
  session.connect();
  let running = false;
  process.on("SIGUSR2", () => {
    running = !running;
    const step = running ? start() : stop(out);
    step.catch((err: unknown) => process.stderr.write(`profile-hook: ${String(err)}\n`));
  });

  async function start(): Promise<void> {
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 250 });
    await session.post("Profiler.start");
  }

  async function stop(path: string): Promise<void> {
    const { profile } = await session.post("Profiler.stop");
    writeFileSync(path, JSON.stringify(profile));
    process.stdout.write("bench-profile-written\n");
  }
}
