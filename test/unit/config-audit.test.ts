/** Configuration of the audit trail and the risk score: defaults, parsing, and errors that name the variable. */
import { describe, expect, it } from "vitest";
import { ConfigError, DEFAULTS, loadConfig } from "../../src/config/config.js";

describe("audit and risk configuration", () => {
  it("defaults: about 100 000 events, kept 30 days; risk counted over 15 minutes, alert at 50", () => {
    const c = loadConfig({});
    expect(c.audit).toEqual({ maxEvents: 100_000, maxAgeMs: 30 * 86_400_000, riskWindowMs: 900_000, riskThreshold: 50 });
    expect(DEFAULTS).toMatchObject({
      TESSERA_AUDIT_MAX_EVENTS: "100000",
      TESSERA_AUDIT_MAX_AGE: "30d",
      TESSERA_RISK_WINDOW: "15m",
      TESSERA_RISK_THRESHOLD: "50",
    });
  });

  it("reads the four variables", () => {
    const c = loadConfig({
      TESSERA_AUDIT_MAX_EVENTS: "5000",
      TESSERA_AUDIT_MAX_AGE: "7d",
      TESSERA_RISK_WINDOW: "1h",
      TESSERA_RISK_THRESHOLD: "80",
    });
    expect(c.audit).toEqual({ maxEvents: 5000, maxAgeMs: 7 * 86_400_000, riskWindowMs: 3_600_000, riskThreshold: 80 });
  });

  it.each([
    ["TESSERA_AUDIT_MAX_EVENTS", "10"],
    ["TESSERA_AUDIT_MAX_EVENTS", "lots"],
    ["TESSERA_AUDIT_MAX_AGE", "30s"],
    ["TESSERA_AUDIT_MAX_AGE", "forever"],
    ["TESSERA_RISK_WINDOW", "500ms"],
    ["TESSERA_RISK_WINDOW", "soon"],
    ["TESSERA_RISK_THRESHOLD", "0"],
    ["TESSERA_RISK_THRESHOLD", "101"],
    ["TESSERA_RISK_THRESHOLD", "high"],
  ])("%s=%s is refused, naming the variable", (key, value) => {
    expect(() => loadConfig({ [key]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [key]: value })).toThrow(new RegExp(`^${key}: `));
  });
});
