/**
 * bench/procs.ts RssSampler: a window's RSS sampler that nobody stopped (its run failed mid-window) must not keep the
 * benchmark's process alive: a failed run used to print its failure and then never exit.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { describe, expect, it } from "vitest";

describe("RssSampler", () => {
  it("left running, does not keep its process alive, and has sampled meanwhile", async () => {
    const script = `
      const { RssSampler } = await import("./bench/procs.ts");
      const sampler = new RssSampler(process.pid);
      setTimeout(() => console.log("peak " + sampler.peak), 300); // the sampler is never stopped
    `;
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const [code, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
    clearTimeout(killer);
    expect({ code, signal }).toEqual({ code: 0, signal: null }); // exited by itself, not killed
    expect(Number(/peak (\d+)/.exec(out)?.[1])).toBeGreaterThan(1024 * 1024); // it did sample its own RSS
  }, 30_000);
});
