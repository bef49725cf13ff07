/**
 * What a program says about its configuration at start (src/config/variable.ts, src/observability/startup.ts): the
 * unknown TESSERA_* variables with the closest known name, and the effective values without secrets.
 */
import { describe, expect, it } from "vitest";
import { VARIABLES } from "../../src/config/config.js";
import { editDistance, effectiveValues, unknownVariables, variablesOf, withoutPassword } from "../../src/config/variable.js";
import { packageVersion } from "../../src/observability/startup.js";
import { SIDECAR_VARIABLES } from "../../src/sidecar/config.js";

describe("unknown variables", () => {
  it("names the closest declared variable, by edit distance (an adjacent swap counts one)", () => {
    expect(editDistance("TESSERA_ACESS_TTL", "TESSERA_ACCESS_TTL")).toBe(1);
    expect(editDistance("TESSERA_ACCSES_TTL", "TESSERA_ACCESS_TTL")).toBe(1);
    expect(editDistance("abc", "")).toBe(3);
    const env = {
      TESSERA_ACESS_TTL: "5m",
      TESSERA_REFRESH_TTL_MAXX: "1d",
      TESSERA_LISTEN: "127.0.0.1:1",
      TESSERA_AUTHORITY_URL: "http://x",
      OTHER: "1",
      TESSERA_UNSET: undefined,
    };
    expect(unknownVariables(VARIABLES, env, { "the sidecar": SIDECAR_VARIABLES })).toEqual([
      { name: "TESSERA_ACESS_TTL", closest: "TESSERA_ACCESS_TTL", distance: 1, knownTo: undefined },
      { name: "TESSERA_AUTHORITY_URL", closest: expect.any(String), distance: expect.any(Number), knownTo: "the sidecar" },
      { name: "TESSERA_REFRESH_TTL_MAXX", closest: "TESSERA_REFRESH_TTL_MAX", distance: 1, knownTo: undefined },
    ]);
    // The sidecar by its own declarations: the authority's signing algorithm is not one of them.
    expect(unknownVariables(SIDECAR_VARIABLES, { TESSERA_SIGNING_ALG: "EdDSA", TESSERA_ISSUER: "x" }, { "the authority": VARIABLES })).toEqual([
      { name: "TESSERA_SIGNING_ALG", closest: expect.any(String), distance: expect.any(Number), knownTo: "the authority" },
    ]);
  });
});

describe("the effective configuration", () => {
  it("shows every variable, set or defaulted, without a password in the Redis URL", () => {
    const shown = effectiveValues(VARIABLES, {
      TESSERA_REDIS_URL: "rediss://app:hunter2@redis.internal:6380/3",
      TESSERA_CALLERS_FILE: "/etc/tessera/callers.json",
      TESSERA_TLS_KEY: "/etc/tessera/tls.key",
      TESSERA_ACCESS_TTL: " 5m ",
    });
    expect(Object.keys(shown)).toEqual(variablesOf(VARIABLES).map((v) => v.name));
    expect(shown).toMatchObject({
      TESSERA_REDIS_URL: "rediss://app:***@redis.internal:6380/3",
      TESSERA_CALLERS_FILE: "/etc/tessera/callers.json",
      TESSERA_TLS_KEY: "/etc/tessera/tls.key", // a path, not the key
      TESSERA_ACCESS_TTL: "5m",
      TESSERA_REFRESH_TTL: "7d",
      TESSERA_TLS_CERT: null,
    });
    expect(JSON.stringify(shown)).not.toContain("hunter2");
  });

  it("hides passwords however the URL spells them", () => {
    expect(withoutPassword("redis://:s3cret@h:6379/0")).toBe("redis://:***@h:6379/0");
    expect(withoutPassword("redis://s3cret@h:6379")).toBe("redis://***@h:6379");
    expect(withoutPassword("redis://h:6379/0")).toBe("redis://h:6379/0");
    expect(withoutPassword("not a url s3cret")).toBe("[redacted]");
  });

  it("hides the sidecar's API key, and any declared variable named like a secret that is not a path", () => {
    const shown = effectiveValues(SIDECAR_VARIABLES, { TESSERA_AUTHORITY_API_KEY: "tk_secret", TESSERA_AUTHORITY_CLIENT_KEY: "/k.pem" });
    expect(shown).toMatchObject({ TESSERA_AUTHORITY_API_KEY: "[redacted]", TESSERA_AUTHORITY_CLIENT_KEY: "/k.pem" });
    for (const v of [...variablesOf(VARIABLES), ...variablesOf(SIDECAR_VARIABLES)]) {
      if (!/(API_KEY|PASSWORD|SECRET|TOKEN)$/.test(v.name)) continue;
      expect({ name: v.name, shown: v.shown("x-secret-value") }).toEqual({ name: v.name, shown: "[redacted]" });
    }
  });

  it("knows its version", () => {
    expect(packageVersion()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
