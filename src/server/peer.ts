/**
 * The client certificate identity of a request's TLS connection: its URI SAN (e.g. a SPIFFE ID) when it has exactly
 * one, else its subject CN. Only a certificate the server verified against TESSERA_TLS_CLIENT_CA counts
 * (`socket.authorized`); the listener lets connections without a valid certificate through so API-key callers work.
 */
import type { Http2ServerRequest } from "node:http2";
import type { IncomingMessage } from "node:http";
import type { TLSSocket } from "node:tls";
import type { MtlsIdentity } from "../config/callers.js";

/** The fields of tls.PeerCertificate this module reads (an empty object when the peer sent none). */
export interface CertificateNames {
  subject?: { CN?: string | string[] } | undefined;
  subjectaltname?: string | undefined;
}

export function peerIdentity(req: IncomingMessage | Http2ServerRequest): MtlsIdentity | undefined {
  return socketIdentity("stream" in req ? req.stream.session?.socket : req.socket);
}

/** Identities by connection: a certificate is read once per connection, not once per call. */
const identities = new WeakMap<object, MtlsIdentity | null>();

/** The verified client certificate identity of a connection's socket (undefined without TLS or a valid one). */
export function socketIdentity(socket: unknown): MtlsIdentity | undefined {
  const tls = socket as Partial<TLSSocket> | undefined;
  if (tls?.authorized !== true || typeof tls.getPeerCertificate !== "function") return undefined;
  let id = identities.get(tls);
  if (id === undefined) {
    id = certificateIdentity(tls.getPeerCertificate()) ?? null;
    identities.set(tls, id);
  }
  return id ?? undefined;
}

/**
 * The identity a certificate names. Several URI SANs, or several CNs, are ambiguous and name nobody (an X.509 SVID
 * has exactly one URI SAN).
 */
export function certificateIdentity(cert: CertificateNames): MtlsIdentity | undefined {
  const uris = subjectAltNames(cert.subjectaltname ?? "")
    .filter((n) => n.type === "URI")
    .map((n) => n.value);
  if (uris.length > 1) return undefined;
  if (uris[0] !== undefined) return uris[0] === "" ? undefined : { kind: "uri", value: uris[0] };
  const cn = cert.subject?.CN;
  return typeof cn === "string" && cn !== "" ? { kind: "cn", value: cn } : undefined;
}

// Node writes subjectaltname as `DNS:a, IP Address:127.0.0.1, URI:spiffe://x`, with a value JSON-quoted when it
// holds a comma, a quote or other special characters (`URI:"spiffe://a,b"`).
const SAN_ENTRY = /([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/y;

/** Parses Node's subjectaltname string; an unparseable string yields no names at all. */
export function subjectAltNames(text: string): { type: string; value: string }[] {
  const names: { type: string; value: string }[] = [];
  SAN_ENTRY.lastIndex = 0;
  while (SAN_ENTRY.lastIndex < text.length) {
    const start = SAN_ENTRY.lastIndex;
    const m = SAN_ENTRY.exec(text);
    if (m === null || SAN_ENTRY.lastIndex === start) return [];
    const [, type = "", raw = ""] = m;
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        return [];
      }
    }
    names.push({ type, value });
  }
  return names;
}
