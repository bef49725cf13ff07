/** Small helpers for writing gRPC answers on raw HTTP/2 streams, shared by the lean path, dispatch and the routes. */
import type { ServerHttp2Stream } from "node:http2";

/**
 * grpc-message as the spec spells it: bytes of the UTF-8 encoding outside printable ASCII (0x20-0x7E), and "%",
 * as %XX; everything else as it is.
 */
export function percentEncode(message: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(message)) return message;
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * Writes to a stream that its connection may have dropped meanwhile (node throws then, e.g. ERR_HTTP2_INVALID_STREAM):
 * such a failure ends the stream, never the process.
 */
export function guarded(stream: ServerHttp2Stream, write: () => void): void {
  try {
    write();
  } catch {
    if (!stream.destroyed) stream.destroy();
  }
}
