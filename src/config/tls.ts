/**
 * TLS settings: TESSERA_TLS_CERT and TESSERA_TLS_KEY (PEM files, both or neither) turn TLS on; TESSERA_TLS_CLIENT_CA
 * (a PEM bundle, needs TLS) makes the server ask for client certificates and trust those it signed. The files are read
 * and checked at start, so a missing file or a key that does not fit the certificate stops the process.
 */
import { readFileSync } from "node:fs";
import { createSecureContext } from "node:tls";
import { X509Certificate } from "node:crypto";
import { ConfigError } from "./errors.js";

export interface TlsConfig {
  cert: Buffer;
  key: Buffer;
  /** Set: client certificates are requested and those this CA signed identify mTLS callers. */
  clientCa: Buffer | undefined;
}

type TlsKey = "TESSERA_TLS_CERT" | "TESSERA_TLS_KEY" | "TESSERA_TLS_CLIENT_CA";

/** The PEM files' paths, as config.ts read them (server.tls); undefined: not set. */
export interface TlsPaths {
  cert: string | undefined;
  key: string | undefined;
  clientCa: string | undefined;
}

export function loadTls(paths: TlsPaths): TlsConfig | undefined {
  const { cert: certPath, key: keyPath, clientCa: caPath } = paths;
  if (certPath === undefined && keyPath === undefined) {
    if (caPath !== undefined) throw new ConfigError("TESSERA_TLS_CLIENT_CA", "needs TLS: set TESSERA_TLS_CERT and TESSERA_TLS_KEY");
    return undefined;
  }
  if (certPath === undefined) throw new ConfigError("TESSERA_TLS_CERT", "must be set together with TESSERA_TLS_KEY");
  if (keyPath === undefined) throw new ConfigError("TESSERA_TLS_KEY", "must be set together with TESSERA_TLS_CERT");

  const cert = certificates("TESSERA_TLS_CERT", certPath);
  const key = pem("TESSERA_TLS_KEY", keyPath);
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError("TESSERA_TLS_KEY", `is not a PEM private key matching TESSERA_TLS_CERT (${(err as Error).message})`);
  }
  const clientCa = caPath === undefined ? undefined : certificates("TESSERA_TLS_CLIENT_CA", caPath);
  return Object.freeze({ cert, key, clientCa });
}

function pem(key: TlsKey, path: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    throw new ConfigError(key, `cannot read "${path}" (${(err as NodeJS.ErrnoException).code ?? "error"})`);
  }
  if (!data.includes("-----BEGIN ")) throw new ConfigError(key, `"${path}" is not a PEM file`);
  return data;
}

function certificates(key: TlsKey, path: string): Buffer {
  const data = pem(key, path);
  try {
    new X509Certificate(data);
  } catch {
    throw new ConfigError(key, `"${path}" does not hold a PEM certificate`);
  }
  return data;
}
