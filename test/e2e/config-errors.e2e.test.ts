/**
 * The real entry point refuses a bad configuration: it exits 2 before listening, and stderr names the
 * variable at fault.
 */
import { describe, expect, it } from "vitest";
import { runMain } from "../helpers/server.js";

describe("configuration errors at start", () => {
  it.concurrent.each([
    ["TESSERA_ACCESS_TTL", "banana"],
    ["TESSERA_REDIS_URL", "http://127.0.0.1:6379"],
  ])("%s=%s: exits 2 and names the variable", async (key, value) => {
    const run = runMain({ TESSERA_LISTEN: "127.0.0.1:0", [key]: value });
    const code = await run.exited;
    expect(code).toBe(2); // src/main.ts: a ConfigError exits 2 (1 is any other failure to start)
    expect(typeof code).toBe("number");
    expect(run.stderr.join("\n")).toContain(key);
    expect(run.stdout.join("\n")).not.toMatch(/listening on/);
  });
});
