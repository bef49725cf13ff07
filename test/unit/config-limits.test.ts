/** Configuration of rate limits and the refresh lockout: defaults, parsing, and errors that name the variable. */
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/config.js";

describe("rate limit and lockout configuration", () => {
  it("defaults: every rate limit off, lockout after 20 failures of a session or 100 of a subject in 15m, for 15m", () => {
    const c = loadConfig({});
    expect(c.limits).toEqual({
      caller: undefined,
      subject: undefined,
      ip: undefined,
      lockout: { after: 20, subjectAfter: 100, windowMs: 900_000, lockMs: 900_000 },
    });
  });

  it("reads calls/window and the lockout variables", () => {
    const c = loadConfig({
      TESSERA_RATE_CALLER: "1000/1s",
      TESSERA_RATE_SUBJECT: "30/1m",
      TESSERA_RATE_IP: "600/1h",
      TESSERA_REFRESH_LOCKOUT_AFTER: "5",
      TESSERA_REFRESH_LOCKOUT_SUBJECT_AFTER: "0",
      TESSERA_REFRESH_LOCKOUT_WINDOW: "10m",
      TESSERA_REFRESH_LOCKOUT_TIME: "1s",
    });
    expect(c.limits).toEqual({
      caller: { points: 1000, windowMs: 1000 },
      subject: { points: 30, windowMs: 60_000 },
      ip: { points: 600, windowMs: 3_600_000 },
      lockout: { after: 5, subjectAfter: 0, windowMs: 600_000, lockMs: 1000 },
    });
  });

  it.each([
    ["TESSERA_RATE_CALLER", "1000", /^TESSERA_RATE_CALLER: "1000" is not calls\/window/],
    ["TESSERA_RATE_CALLER", "0/1s", /^TESSERA_RATE_CALLER: "0\/1s" is not calls\/window/],
    ["TESSERA_RATE_SUBJECT", "10/soon", /^TESSERA_RATE_SUBJECT: "10\/soon" is not calls\/window/],
    ["TESSERA_RATE_SUBJECT", "-1/1s", /^TESSERA_RATE_SUBJECT: /],
    ["TESSERA_RATE_IP", "10/500ms", /^TESSERA_RATE_IP: the window must be a whole number of seconds/],
    ["TESSERA_RATE_IP", "10/1500ms", /^TESSERA_RATE_IP: the window must be a whole number of seconds/],
    ["TESSERA_REFRESH_LOCKOUT_AFTER", "many", /^TESSERA_REFRESH_LOCKOUT_AFTER: "many" is not a whole number/],
    ["TESSERA_REFRESH_LOCKOUT_SUBJECT_AFTER", "-3", /^TESSERA_REFRESH_LOCKOUT_SUBJECT_AFTER: /],
    ["TESSERA_REFRESH_LOCKOUT_WINDOW", "0s", /^TESSERA_REFRESH_LOCKOUT_WINDOW: must be at least 1s/],
    ["TESSERA_REFRESH_LOCKOUT_TIME", "1500ms", /^TESSERA_REFRESH_LOCKOUT_TIME: "1500ms" is not a whole number of seconds/],
  ])("%s=%j is refused, naming the variable", (key, value, message) => {
    expect(() => loadConfig({ [key]: value })).toThrow(message);
  });
});
