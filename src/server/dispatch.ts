/**
 * Per-stream dispatch on one port. Every HTTP/2 stream is looked at once, by its headers, before node's
 * request/response compatibility layer sees it: a unary gRPC call to one of Tessera's own unary methods goes to the
 * lean path (src/server/grpc-unary.ts); anything else continues to connect-node (Connect protocol, gRPC-Web,
 * streaming, health, reflection) and to the plain HTTP routes, with two guards that hold on every path and protocol:
 *
 * - the request must be complete within TESSERA_READ_TIMEOUT of its headers (TESSERA_MAX_TIMEOUT for methods that
 *   stream requests, such as reflection), so a stalled or trickling body cannot hold a stream; HTTP/1.1 has the
 *   same bound through node's requestTimeout (src/server/listener.ts);
 * - the bytes of unary request bodies not yet complete, over every stream of the port, stay within
 *   TESSERA_MAX_PENDING_BYTES (PendingBytes), so many such streams at once cannot pin the process's memory either
 *   (HTTP/1.1 reads one request per connection at a time; a streaming method's messages are bounded one by one by
 *   TESSERA_MAX_REQUEST_BYTES, and its stream in time by TESSERA_MAX_TIMEOUT);
 * - a deadline header beyond TESSERA_MAX_TIMEOUT (`grpc-timeout`, `connect-timeout-ms`) is dropped, so the server's
 *   cap applies (src/api/pipeline.ts) and no deadline can overflow a timer.
 */
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import type { StreamHandler } from "./grpc-unary.js";
import { guarded } from "./stream-writes.js";

const { NGHTTP2_INTERNAL_ERROR, NGHTTP2_NO_ERROR } = http2.constants;

export interface DispatchOptions {
  /** The lean path; absent (TESSERA_GRPC_FAST_PATH=false): every stream goes to connect-node. */
  lean?: StreamHandler | undefined;
  /** TESSERA_READ_TIMEOUT. */
  readTimeoutMs: number;
  /** TESSERA_MAX_TIMEOUT. */
  maxTimeoutMs: number;
  /** Whether a path is a method whose request is a stream (client or bidi streaming): bounded by maxTimeoutMs. */
  streamsRequests: (path: string) => boolean;
  /** The port's bound on the bytes of unary request bodies not yet complete (TESSERA_MAX_PENDING_BYTES). */
  pending: PendingBytes;
}

/**
 * The bytes that the streams of one port hold in unary request bodies not yet complete. A stream takes its bytes as
 * they arrive and gives them all back when its request is complete or the stream closes. Taking more than the bound
 * allows is refused, unless no other stream holds any: one request can always complete.
 */
export class PendingBytes {
  held = 0;

  constructor(readonly max: number) {}

  /** Takes `n` more bytes for a stream that holds `own` already; false, and nothing taken, past the bound. */
  take(n: number, own: number): boolean {
    if (this.held + n > this.max && this.held > own) return false;
    this.held += n;
    return true;
  }

  give(n: number): void {
    this.held -= n;
  }
}

/**
 * The stream handler for the listener: caps the deadline headers and bounds the request time of every stream, then
 * returns true if the lean path took it, false to hand it to connect-node.
 */
export function streamDispatcher(opts: DispatchOptions): StreamHandler {
  return (stream, headers) => {
    const callerMs = capDeadline(headers, opts.maxTimeoutMs);
    const path = String(headers[":path"] ?? "");
    const streaming = opts.streamsRequests(path);
    // The lean path first: the bound then finds its data listener there (nothing is emitted in between).
    const taken = opts.lean?.(stream, headers) ?? false;
    boundRequest(stream, headers, streaming ? opts.maxTimeoutMs : opts.readTimeoutMs, callerMs, streaming ? undefined : opts.pending);
    return taken;
  };
}

/**
 * Drops a deadline header that asks for more than maxTimeoutMs (the server's cap then applies). An unparseable one
 * stays, for the protocol's handler to refuse with INVALID_ARGUMENT. Returns the caller's deadline in ms, if it set
 * one.
 */
export function capDeadline(headers: Record<string, string | string[] | undefined>, maxTimeoutMs: number): number | undefined {
  let callerMs: number | undefined;
  for (const [name, parse] of DEADLINE_HEADERS) {
    const value = headers[name];
    if (typeof value !== "string") continue;
    const ms = parse(value, maxTimeoutMs).timeoutMs;
    if (ms === undefined) continue;
    if (ms > maxTimeoutMs) delete headers[name];
    else callerMs = Math.min(callerMs ?? ms, ms);
  }
  return callerMs;
}

/** The deadline headers of the protocols connect-node serves, and their parsers (each checks its own syntax). */
const DEADLINE_HEADERS = [
  ["grpc-timeout", parseGrpcTimeout],
  ["connect-timeout-ms", parseConnectTimeout],
] as const;

/**
 * Ends a stream whose request body is not complete within readMs of its headers, or by the caller's deadline if that
 * comes first, with DEADLINE_EXCEEDED; and one whose body's next bytes would take `pending` past its bound, with
 * RESOURCE_EXHAUSTED (see `refuse`). The lean path and connect-node see their request end and write nothing more.
 * (connect-node's own deadline ends the handler, not the reading of the body.) Called once the stream has gone to
 * its path.
 */
function boundRequest(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  readMs: number,
  callerMs: number | undefined,
  pending: PendingBytes | undefined,
): void {
  const byCaller = callerMs !== undefined && callerMs < readMs;
  const ms = byCaller ? Math.max(0, callerMs) : readMs;
  const timer = setTimeout(() => {
    const message = byCaller ? "the operation timed out" : `request not received within ${ms}ms`;
    refuse(stream, headers, { grpc: "4", http: 408, connect: "deadline_exceeded" }, message);
  }, ms);
  const release = pending === undefined ? undefined : countBody(stream, headers, pending);
  const done = () => {
    clearTimeout(timer);
    release?.();
  };
  stream.once("end", done); // the whole request has been read
  stream.once("close", done);
}

/**
 * Counts a stream's body bytes into `pending` as the server reads them, refusing the stream (RESOURCE_EXHAUSTED) whose
 * next bytes `pending` will not take; returns what gives them all back and stops the count. Counted from when the
 * body's reader listens for data (the lean path has by now; connect-node's request object does once it starts
 * reading), never before, which would start the flow of data with no one to take it. Bytes not read yet wait in
 * node:http2, bounded by the stream's flow-control window.
 */
function countBody(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, pending: PendingBytes): () => void {
  let held = 0;
  const onData = (chunk: Buffer) => {
    if (pending.take(chunk.length, held)) {
      held += chunk.length;
      return;
    }
    stream.removeListener("data", onData);
    refuse(stream, headers, { grpc: "8", http: 429, connect: "resource_exhausted" }, "server busy: too many request bytes pending, retry later");
  };
  let watch: ((event: string | symbol) => void) | undefined;
  if (stream.listenerCount("data") > 0) stream.on("data", onData);
  else {
    watch = (event) => {
      if (event !== "data") return;
      stream.removeListener("newListener", watch!);
      stream.on("data", onData);
    };
    stream.on("newListener", watch);
  }
  return () => {
    if (watch !== undefined) stream.removeListener("newListener", watch);
    stream.removeListener("data", onData);
    pending.give(held);
    held = 0;
  };
}

/**
 * Answers a stream in its protocol's own form if no answer has started (gRPC and gRPC-Web: a trailers-only status;
 * otherwise the HTTP status with a Connect error body), then closes it (RST_STREAM).
 */
function refuse(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  code: { grpc: string; http: number; connect: string },
  message: string,
): void {
  if (stream.destroyed) return;
  guarded(stream, () => {
    if (!stream.headersSent) {
      const contentType = String(headers["content-type"] ?? "");
      if (/^application\/grpc/i.test(contentType)) {
        stream.respond({ ":status": 200, "content-type": contentType, "grpc-status": code.grpc, "grpc-message": message }, { endStream: true });
      } else {
        stream.respond({ ":status": code.http, "content-type": "application/json" });
        stream.end(JSON.stringify({ code: code.connect, message }));
      }
    }
    stream.close(NGHTTP2_NO_ERROR);
  });
}

/**
 * Routes a server's HTTP/2 streams through `take` before node's compatibility layer: a stream `take` returns true
 * for is never seen as a request. (node's Http2Server turns each 'stream' event into a 'request' event; overriding
 * `emit` for that one event is the one place where a stream can be claimed first.)
 */
export function interceptStreams(server: http2.Http2Server | http2.Http2SecureServer, take: StreamHandler): void {
  const emit = server.emit.bind(server) as (event: string | symbol, ...args: unknown[]) => boolean;
  server.emit = ((event: string | symbol, ...args: unknown[]) => {
    if (event !== "stream") return emit(event, ...args);
    const stream = args[0] as ServerHttp2Stream;
    try {
      if (take(stream, args[1] as IncomingHttpHeaders)) return true;
    } catch {
      // A bug in a stream handler must not take the process down: the stream ends, the connection lives on.
      if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
      return true;
    }
    return emit(event, ...args);
  }) as typeof server.emit;
}
