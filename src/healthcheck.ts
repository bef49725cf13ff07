/**
 * The container's health check (the image's HEALTHCHECK runs `node dist/src/healthcheck.js`): GET /healthz on the port
 * TESSERA_LISTEN names, read with the same declaration the server reads, so it follows the configuration:
 *
 * - plain http, or https when TESSERA_TLS_CERT is set, trusting exactly that certificate (the one the server serves:
 *   the probe compares fingerprints, so neither a CA nor a host name has to match; an impostor on the port fails);
 * - a wildcard listen address (`0.0.0.0`, `::`) is probed on loopback, any other on itself;
 * - the authority and the sidecar alike (they share these variables; the image sets TESSERA_LISTEN for both).
 *
 * Exit 0 if the answer is 200 within 2 s, else 1 with one line on stderr (Docker keeps it in the health log).
 * `--ready`: GET /readyz instead (not ready while the store or the feed is unreachable, or during shutdown).
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { TLSSocket } from "node:tls";
import { pathToFileURL } from "node:url";
import { VARIABLES } from "./config/config.js";

const TIMEOUT_MS = 2_000;

export interface Probe {
  host: string;
  port: number;
  path: "/healthz" | "/readyz";
  /** The server's certificate (PEM; the first one is the leaf) when it speaks TLS. */
  cert: Buffer | undefined;
}

/** What to probe, from the environment (the same declarations, defaults and parsing as the server). */
export function probeOf(env: Record<string, string | undefined>, ready = false): Probe {
  const { host, port } = VARIABLES.server.listen.read(env.TESSERA_LISTEN);
  const certPath = VARIABLES.server.tls.cert.read(env.TESSERA_TLS_CERT);
  return {
    host: host === "0.0.0.0" ? "127.0.0.1" : host === "::" ? "::1" : host,
    port,
    path: ready ? "/readyz" : "/healthz",
    cert: certPath === undefined ? undefined : readFileSync(certPath),
  };
}

/** Resolves with the HTTP status, or rejects saying why there is none. */
export function probe(p: Probe): Promise<number> {
  return new Promise((resolve, reject) => {
    const options = { host: p.host, port: p.port, path: p.path, method: "GET", timeout: TIMEOUT_MS, agent: false } as const;
    const req =
      p.cert === undefined
        ? http.request(options)
        : https.request({ ...options, rejectUnauthorized: false }); // verified below, by fingerprint
    if (p.cert !== undefined) {
      const want = new X509Certificate(p.cert).fingerprint256;
      req.once("socket", (socket) => {
        socket.once("secureConnect", () => {
          const got = (socket as TLSSocket).getPeerCertificate().fingerprint256;
          if (got !== want) req.destroy(new Error(`the server's certificate is not TESSERA_TLS_CERT's (${got})`));
        });
      });
    }
    req.once("timeout", () => req.destroy(new Error(`no answer within ${TIMEOUT_MS}ms`)));
    req.once("error", reject);
    req.once("response", (res) => {
      res.resume();
      res.once("end", () => resolve(res.statusCode ?? 0));
    });
    req.end();
  });
}

async function main(): Promise<void> {
  const ready = process.argv.includes("--ready");
  let p: Probe;
  try {
    p = probeOf(process.env, ready);
  } catch (err) {
    process.stderr.write(`healthcheck: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  const where = `${p.cert ? "https" : "http"}://${p.host.includes(":") ? `[${p.host}]` : p.host}:${p.port}${p.path}`;
  try {
    const status = await probe(p);
    if (status === 200) process.exit(0);
    process.stderr.write(`healthcheck: ${where} answered ${status}\n`);
  } catch (err) {
    process.stderr.write(`healthcheck: ${where}: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  process.exit(1);
}

// Run when executed (node dist/src/healthcheck.js), not when imported by a test.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) void main();
