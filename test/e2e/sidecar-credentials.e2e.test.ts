/**
 * How a sidecar reaches an authority that checks its callers, over TLS: with an API key (TESSERA_AUTHORITY_API_KEY)
 * or a client certificate (TESSERA_AUTHORITY_CLIENT_CERT/KEY), trusting the authority through TESSERA_AUTHORITY_CA,
 * for both the revocation feed and the JWKS. A caller without `revocations.watch` never gets a feed: that sidecar
 * stays NOT_SERVING and answers UNAVAILABLE, never "active" on a feed it does not have.
 */
import { createHash } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Serving } from "../../gen/grpc/health/v1/health_pb.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { Code, codeOf, statusOf, tesseraClient } from "../helpers/clients.js";
import { spawnSidecar, startServer, type SpawnedAuthority, type StartedServer } from "../helpers/server.js";
import { until } from "../helpers/wait.js";

const sha256 = (key: string) => createHash("sha256").update(key).digest("hex");
const WATCH_KEY = "sidecar-key-0123456789abcdef";
const NO_WATCH_KEY = "introspect-only-key-0123456789";
const PHONE = { deviceId: "phone-c", userAgent: "sidecar-credentials/1.0", ip: "10.0.0.9", platform: "ios" };

let pki: TestPki;
let authority: StartedServer;
const sidecars: SpawnedAuthority[] = [];

function healthOf(url: string): Promise<Serving> {
  return createClient(Health, createGrpcTransport({ baseUrl: url }))
    .check({ service: "" }, { timeoutMs: 2000 })
    .then(
      (r) => r.status,
      () => Serving.UNKNOWN,
    );
}

beforeAll(async () => {
  pki = await makePki();
  const callersFile = join(pki.dir, "callers.json");
  await writeFile(
    callersFile,
    JSON.stringify({
      callers: [
        { name: "sidecar-by-key", api_keys: [{ sha256: sha256(WATCH_KEY) }], permissions: ["revocations.watch", "introspect"] },
        { name: "sidecar-by-cert", mtls: { uri: "spiffe://test/gateway" }, permissions: ["revocations.watch"] },
        { name: "introspect-only", api_keys: [{ sha256: sha256(NO_WATCH_KEY) }], permissions: ["introspect"] },
      ],
    }),
  );
  authority = await startServer({
    TESSERA_TLS_CERT: pki.server.certPath,
    TESSERA_TLS_KEY: pki.server.keyPath,
    TESSERA_TLS_CLIENT_CA: pki.caPath,
    TESSERA_CALLERS_FILE: callersFile,
    TESSERA_CLOCK_SKEW: "0s",
  });
}, 60_000);

afterAll(async () => {
  await Promise.all(sidecars.map((s) => s.kill("SIGKILL")));
  await authority?.close();
  await pki?.remove();
});

async function sidecarWith(env: Record<string, string>): Promise<SpawnedAuthority> {
  const s = await spawnSidecar({
    TESSERA_AUTHORITY_URL: `https://127.0.0.1:${authority.port}`,
    TESSERA_AUTHORITY_CA: pki.caPath,
    TESSERA_CLOCK_SKEW: "0s",
    TESSERA_SIDECAR_MAX_STALENESS: "1500ms",
    ...env,
  });
  sidecars.push(s);
  return s;
}

describe("a sidecar and an authority that checks its callers, over TLS", () => {
  it("follows the feed and reads the JWKS with an API key, and with a client certificate", async () => {
    const byKey = await sidecarWith({ TESSERA_AUTHORITY_API_KEY: WATCH_KEY });
    const byCert = await sidecarWith({ TESSERA_AUTHORITY_CLIENT_CERT: pki.gateway.certPath, TESSERA_AUTHORITY_CLIENT_KEY: pki.gateway.keyPath });
    for (const s of [byKey, byCert]) await until(async () => (await healthOf(s.url)) === Serving.SERVING, 15_000);

    const issued = await authority.app.authority.issue({ subject: "cred-user", audience: [], scopes: ["read"], claims: {}, client: PHONE });
    const clients = [byKey, byCert].map((s) => tesseraClient("grpc-js", s.url));
    try {
      for (const c of clients) expect(await statusOf(c, issued.pair.accessToken)).toBe("ACTIVE");
      await authority.app.authority.revokeSession(issued.sessionId, "test");
      for (const c of clients) await until(async () => (await statusOf(c, issued.pair.accessToken)) === "REVOKED", 3000);
    } finally {
      for (const c of clients) c.close();
    }
    const callers = authority.logs.filter((l) => (l.rpc as { method?: string } | undefined)?.method === "WatchRevocations").map((l) => l.caller);
    expect(new Set(callers)).toEqual(new Set(["sidecar-by-key", "sidecar-by-cert"]));
  }, 60_000);

  it("without revocations.watch gets no feed: NOT_SERVING, and Introspect UNAVAILABLE", async () => {
    const denied = await sidecarWith({ TESSERA_AUTHORITY_API_KEY: NO_WATCH_KEY });
    await until(
      () =>
        authority.logs.some(
          (l) => (l.rpc as { method?: string } | undefined)?.method === "WatchRevocations" && l.caller === "introspect-only" && l.code === "PermissionDenied",
        ),
      10_000,
    );
    expect(await healthOf(denied.url)).toBe(Serving.NOT_SERVING);
    const issued = await authority.app.authority.issue({ subject: "cred-user-2", audience: [], scopes: [], claims: {}, client: PHONE });
    const c = tesseraClient("grpc-js", denied.url);
    try {
      expect(await codeOf(c.introspect(issued.pair.accessToken))).toBe(Code.Unavailable);
    } finally {
      c.close();
    }
  }, 30_000);
});
