/**
 * The image's health check (src/healthcheck.ts, the Dockerfile's HEALTHCHECK) run as Docker runs it, a process with
 * the container's environment, against real servers: plain http on a port other than 8080, a wildcard listen address,
 * TLS (trusting the server's own certificate, whatever CA signed it; an impostor's certificate fails), the sidecar,
 * and `--ready` during shutdown. It fails when nothing answers.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadSidecarConfig } from "../../src/sidecar/config.js";
import { createSidecar } from "../../src/sidecar/app.js";
import { createLogger } from "../../src/observability/logger.js";
import { makePki, type TestPki } from "../helpers/certs.js";
import { freePort } from "../helpers/redis-server.js";
import { startServer } from "../helpers/server.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);

/** Runs the health check with exactly this environment (as the container's); its exit code and stderr. */
async function healthcheck(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await run(process.execPath, ["--import", "tsx", "src/healthcheck.ts", ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", ...env },
      timeout: 20_000,
    });
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, stderr: e.stderr ?? "" };
  }
}

describe("the image's health check", () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makePki();
  });
  afterAll(async () => {
    await pki?.remove();
  });

  it("plain http on a port other than 8080, and a wildcard address probed on loopback; nothing there fails", async () => {
    const srv = await startServer({});
    try {
      expect(await healthcheck({ TESSERA_LISTEN: `127.0.0.1:${srv.port}` })).toEqual({ code: 0, stderr: "" });
      expect(await healthcheck({ TESSERA_LISTEN: `0.0.0.0:${srv.port}` })).toEqual({ code: 0, stderr: "" });
    } finally {
      await srv.close();
    }
    const gone = await healthcheck({ TESSERA_LISTEN: `127.0.0.1:${srv.port}` });
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/ECONNREFUSED/);
  });

  it("TLS: https, trusting the server's own certificate; another certificate, or plain http, fails", async () => {
    const tls = { TESSERA_TLS_CERT: pki.server.certPath, TESSERA_TLS_KEY: pki.server.keyPath };
    const srv = await startServer(tls);
    try {
      const listen = `127.0.0.1:${srv.port}`;
      expect(await healthcheck({ TESSERA_LISTEN: listen, ...tls })).toEqual({ code: 0, stderr: "" });
      // Told to trust another certificate (an impostor on the port, as far as the probe knows): refused.
      const impostor = await healthcheck({ TESSERA_LISTEN: listen, TESSERA_TLS_CERT: pki.ops.certPath, TESSERA_TLS_KEY: pki.ops.keyPath });
      expect(impostor.code).toBe(1);
      expect(impostor.stderr).toMatch(/not TESSERA_TLS_CERT's/);
      // The old check's assumption, plain http, gets nowhere on a TLS port.
      expect((await healthcheck({ TESSERA_LISTEN: listen })).code).toBe(1);
    } finally {
      await srv.close();
    }
  });

  it("--ready probes /readyz: 1 once shutdown has begun, while /healthz still passes", async () => {
    const srv = await startServer({});
    try {
      const env = { TESSERA_LISTEN: `127.0.0.1:${srv.port}` };
      expect((await healthcheck(env, "--ready")).code).toBe(0);
      srv.app.readiness.beginShutdown();
      const notReady = await healthcheck(env, "--ready");
      expect(notReady).toEqual({ code: 1, stderr: `healthcheck: http://127.0.0.1:${srv.port}/readyz answered 503\n` });
      expect((await healthcheck(env)).code).toBe(0);
    } finally {
      await srv.close();
    }
  });

  it("the sidecar (same variables, same probe), over TLS", async () => {
    const authority = await startServer({});
    const port = await freePort();
    const tls = { TESSERA_TLS_CERT: pki.server.certPath, TESSERA_TLS_KEY: pki.server.keyPath };
    const config = loadSidecarConfig({ TESSERA_AUTHORITY_URL: authority.url, TESSERA_LISTEN: `127.0.0.1:${port}`, ...tls });
    const sidecar = await createSidecar(config, { logger: createLogger("silent") });
    try {
      await sidecar.listen();
      expect(await healthcheck({ TESSERA_LISTEN: `0.0.0.0:${port}`, ...tls })).toEqual({ code: 0, stderr: "" });
    } finally {
      await sidecar.close();
      await authority.close();
    }
  });
});
