/**
 * A throwaway PKI made with the `openssl` command at test time: a CA, a server certificate for 127.0.0.1/localhost,
 * client certificates (one with a URI SAN, one with only a CN, one nobody is configured for) and a client certificate
 * from a second, untrusted CA. ECDSA P-256, valid for one day, in a fresh temp directory.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface CertFiles {
  certPath: string;
  keyPath: string;
  cert: Buffer;
  key: Buffer;
}

export interface TestPki {
  dir: string;
  caPath: string;
  ca: Buffer;
  server: CertFiles;
  /** For servers that are also each other's clients (a Redis Cluster's bus over TLS): serverAuth and clientAuth. */
  peer: CertFiles;
  /** URI SAN spiffe://test/gateway (and CN gateway-client, which must not count). */
  gateway: CertFiles;
  /** CN ops-console, no SAN. */
  ops: CertFiles;
  /** CN stranger: signed by the trusted CA, but no caller has it. */
  stranger: CertFiles;
  /** URI SAN spiffe://test/gateway, signed by another CA. */
  rogue: CertFiles;
  remove(): Promise<void>;
}

export async function makePki(): Promise<TestPki> {
  const dir = await mkdtemp(join(tmpdir(), "tessera-pki-"));
  const ca = await makeCa(dir, "ca", "tessera-test-ca");
  const rogueCa = await makeCa(dir, "rogue-ca", "rogue-ca");
  const leaf = (name: string, cn: string, ext: string, issuer = ca) => makeLeaf(dir, name, cn, ext, issuer);
  return {
    dir,
    caPath: ca.certPath,
    ca: ca.cert,
    server: await leaf("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
    peer: await leaf("peer", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth"),
    gateway: await leaf("gateway", "gateway-client", "subjectAltName=URI:spiffe://test/gateway\nextendedKeyUsage=clientAuth"),
    ops: await leaf("ops", "ops-console", "extendedKeyUsage=clientAuth"),
    stranger: await leaf("stranger", "stranger", "extendedKeyUsage=clientAuth"),
    rogue: await leaf("rogue", "gateway-client", "subjectAltName=URI:spiffe://test/gateway\nextendedKeyUsage=clientAuth", rogueCa),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

async function makeCa(dir: string, name: string, cn: string): Promise<CertFiles> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  await run("openssl", [
    "req", "-x509", ...EC, "-keyout", keyPath, "-out", certPath, "-days", "1", "-subj", `/CN=${cn}`,
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return files(certPath, keyPath);
}

async function makeLeaf(dir: string, name: string, cn: string, ext: string, issuer: CertFiles): Promise<CertFiles> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  const extPath = join(dir, `${name}.ext`);
  await writeFile(extPath, `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n${ext}\n`);
  await run("openssl", ["req", ...EC, "-keyout", keyPath, "-out", csrPath, "-subj", `/CN=${cn}`]);
  await run("openssl", [
    "x509", "-req", "-in", csrPath, "-CA", issuer.certPath, "-CAkey", issuer.keyPath, "-set_serial", `0x${randomSerial()}`,
    "-days", "1", "-out", certPath, "-extfile", extPath,
  ]);
  return files(certPath, keyPath);
}

async function files(certPath: string, keyPath: string): Promise<CertFiles> {
  return { certPath, keyPath, cert: await readFile(certPath), key: await readFile(keyPath) };
}

function randomSerial(): string {
  return Array.from({ length: 16 }, () => Math.floor(Math.random() * 16).toString(16)).join("").replace(/^0/, "1");
}
