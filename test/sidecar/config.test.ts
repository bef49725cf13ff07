/** The sidecar's configuration: required and refused values name their variable; shared ones read as the authority's. */
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config/config.js";
import { loadSidecarConfig } from "../../src/sidecar/config.js";

const BASE = { TESSERA_AUTHORITY_URL: "http://127.0.0.1:8080" };

function refusal(env: Record<string, string>): string {
  try {
    loadSidecarConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error("expected a configuration error");
}

describe("the sidecar's configuration", () => {
  it("has the documented defaults", () => {
    const c = loadSidecarConfig(BASE);
    expect(c.server.listen).toEqual({ host: "127.0.0.1", port: 8081 });
    expect(c.maxStalenessMs).toBe(5000);
    expect(c.authority).toEqual({ url: new URL("http://127.0.0.1:8080"), apiKey: undefined, tls: {} });
    expect(c.envoyAudience).toBeUndefined();
    expect(c.access.callers).toBeUndefined();
  });

  it("reads the variables it shares with the authority exactly as the authority does", () => {
    const shared = { TESSERA_ISSUER: "https://auth.example", TESSERA_CLOCK_SKEW: "2s", TESSERA_MAX_TOKEN_LENGTH: "4096", TESSERA_MAX_TIMEOUT: "7s" };
    const sidecar = loadSidecarConfig({ ...BASE, ...shared });
    const authority = loadConfig(shared);
    expect(sidecar.tokens).toEqual({
      issuer: authority.tokens.issuer,
      clockSkewMs: authority.tokens.clockSkewMs,
      maxTokenLength: authority.tokens.maxTokenLength,
      verifiedCacheSize: authority.tokens.verifiedCacheSize,
    });
    expect(sidecar.server.maxTimeoutMs).toBe(7000);
  });

  it("needs the authority's URL, as http:// or https:// without credentials, query or fragment", () => {
    expect(refusal({})).toMatch(/^TESSERA_AUTHORITY_URL: must be set/);
    expect(refusal({ TESSERA_AUTHORITY_URL: "ftp://x" })).toMatch(/^TESSERA_AUTHORITY_URL: must start with http/);
    expect(refusal({ TESSERA_AUTHORITY_URL: "not a url" })).toMatch(/^TESSERA_AUTHORITY_URL: "not a url" is not a URL/);
    expect(refusal({ TESSERA_AUTHORITY_URL: "http://u:p@x:1" })).toMatch(/^TESSERA_AUTHORITY_URL: must not carry credentials/);
    expect(refusal({ TESSERA_AUTHORITY_URL: "http://x:1/?k=v" })).toMatch(/^TESSERA_AUTHORITY_URL: must not carry a query/);
  });

  it("refuses half an mTLS pair, TLS settings for an http:// authority, and a staleness bound under 300ms", () => {
    expect(refusal({ TESSERA_AUTHORITY_URL: "https://x:1", TESSERA_AUTHORITY_CLIENT_CERT: "/c.pem" })).toMatch(/^TESSERA_AUTHORITY_CLIENT_CERT: /);
    expect(refusal({ ...BASE, TESSERA_AUTHORITY_CA: "/ca.pem" })).toMatch(/^TESSERA_AUTHORITY_URL: is http:\/\//);
    expect(refusal({ ...BASE, TESSERA_SIDECAR_MAX_STALENESS: "200ms" })).toMatch(/^TESSERA_SIDECAR_MAX_STALENESS: must be at least 300ms/);
    expect(refusal({ TESSERA_AUTHORITY_URL: "https://x:1", TESSERA_AUTHORITY_CA: "/no/such/file.pem" })).toMatch(/^TESSERA_AUTHORITY_CA: cannot read/);
  });

  it("runs open only on loopback, like the authority", () => {
    expect(refusal({ ...BASE, TESSERA_LISTEN: "0.0.0.0:8081" })).toMatch(/^TESSERA_CALLERS_FILE: is not set and TESSERA_LISTEN/);
    expect(loadSidecarConfig({ ...BASE, TESSERA_LISTEN: "0.0.0.0:8081", TESSERA_ALLOW_UNAUTHENTICATED: "true" }).access.allowUnauthenticated).toBe(true);
  });
});
