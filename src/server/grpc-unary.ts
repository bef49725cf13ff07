/**
 * The lean unary gRPC path: a unary gRPC call (`content-type: application/grpc` or `application/grpc+proto`) to one
 * of Tessera's own unary methods is served straight on its node:http2 stream, without connect-node's per-call
 * streaming machinery. Everything else (Connect protocol, gRPC-Web, gRPC+JSON, streaming methods, health,
 * reflection, plain HTTP) goes to connect-node (src/server/dispatch.ts decides). Both run the same call pipeline
 * (src/api/pipeline.ts) and the same service implementations, so they answer alike; test/e2e/paths.e2e.test.ts
 * holds them to it.
 *
 * gRPC over HTTP/2 (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md), as connect-node answers it:
 * - one length-prefixed message in, at most TESSERA_MAX_REQUEST_BYTES (RESOURCE_EXHAUSTED as soon as the prefix
 *   says more); none is UNIMPLEMENTED, two are UNIMPLEMENTED, a cut-off one INVALID_ARGUMENT, an unparseable one
 *   INTERNAL (connect-node's codes);
 * - `grpc-encoding: gzip` inflates within the same bound; any other encoding is UNIMPLEMENTED with
 *   `grpc-accept-encoding`; responses are not compressed;
 * - `grpc-timeout` in every unit; a deadline beyond TESSERA_MAX_TIMEOUT (however large) is capped to it and the time
 *   spent receiving the request counts against it (the dispatcher, src/server/dispatch.ts, drops a deadline header
 *   past the cap and ends a request not complete by its deadline or TESSERA_READ_TIMEOUT, on every path);
 * - a client's RST_STREAM or disconnect ends the call (CANCELLED in the log); nothing more is written;
 * - answers (encoded by ./proto-encode.ts): headers, one message, trailers with `grpc-status: 0`; errors
 *   trailers-only, with `grpc-status`, a percent-encoded `grpc-message` and `grpc-status-details-bin`
 *   (google.rpc.Status with the details).
 */
import http2, { type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { create, fromBinary, isMessage } from "@bufbuild/protobuf";
import { configureTextEncoding } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createContextValues, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import { compressionNegotiate, type Compression } from "@connectrpc/connect/protocol";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { compressionGzip } from "@connectrpc/connect-node";
import type { Call, CallSignal, Pipeline } from "../api/pipeline.js";
import type { UnaryMethod } from "../api/routes.js";
import { encodeMessage } from "./proto-encode.js";
import { decodeFast } from "./proto-decode.js";
import { guarded, percentEncode } from "./stream-writes.js";

export interface GrpcUnaryOptions {
  /** Tessera's unary methods by path (src/api/routes.ts unaryMethods). */
  methods: ReadonlyMap<string, UnaryMethod>;
  pipeline: Pipeline;
  /** Largest request message, after decompression (TESSERA_MAX_REQUEST_BYTES). */
  maxRequestBytes: number;
  /** The per-call values the transport provides (the peer's certificate identity). */
  contextValues: (stream: ServerHttp2Stream) => ContextValues;
}

/** Takes the stream if it is a unary gRPC call to one of `methods`; returns false (untouched) otherwise. */
export type StreamHandler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => boolean;

const CONTENT_TYPE = /^application\/grpc(?:\+proto)?$/i;

// protobuf-es encodes strings with TextEncoder and checks them with encodeURIComponent; Buffer does both faster
// for the short strings of tokens and claims (measured: about 2.5 of 15 µs to encode an IntrospectResponse). The
// setting is process-wide, so connect-node's path gets it too. Strict decoding (utf8Validation) keeps TextDecoder.
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
configureTextEncoding({
  encodeUtf8: (text) => Buffer.from(text, "utf8") as Uint8Array<ArrayBuffer>,
  decodeUtf8: (bytes, strict) =>
    strict ? strictUtf8.decode(bytes) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"),
  checkUtf8: (text) => (text as unknown as { isWellFormed(): boolean }).isWellFormed(), // Node 20 has it; the TS lib does not
});
const ACCEPT = [compressionGzip];
const ACCEPT_ENCODING = ACCEPT.map((c) => c.name).join(",");
const { NGHTTP2_NO_ERROR } = http2.constants;

export function grpcUnaryHandler(opts: GrpcUnaryOptions): StreamHandler {
  return (stream, headers) => {
    if (headers[":method"] !== "POST") return false;
    const target = opts.methods.get(headers[":path"] ?? "");
    const contentType = headers["content-type"];
    if (target === undefined || contentType === undefined || !CONTENT_TYPE.test(contentType)) return false;
    serve(stream, headers, target, contentType, opts);
    return true;
  };
}

/** One call, from the stream's headers to its answer. */
function serve(stream: ServerHttp2Stream, headers: IncomingHttpHeaders, target: UnaryMethod, contentType: string, opts: GrpcUnaryOptions): void {
  const arrived = performance.now();
  const signal = new StreamSignal();
  let answered = false;
  const body = new Envelope(opts.maxRequestBytes);
  const onData = (chunk: Buffer) => {
    if (answered) return;
    const err = body.add(chunk);
    if (err !== undefined) fail(err);
  };
  // Only listeners that hold nothing of the call stay on the stream once it closes: node may keep a closed stream
  // object until a full garbage collection, and all a listener reaches would stay with it (measured at 5 000
  // Introspect/s: 2.3-2.4 KB a call promoted to the old generation with these two listeners left on, 1.3-1.4 KB
  // without, near node:http2's own 1.0-1.1 KB).
  stream.on("error", ignore); // a reset or a broken connection: 'close' below ends the call
  stream.once("close", () => {
    stream.removeListener("data", onData);
    // Also after the dispatcher's read bound answered for us: the call ends either way.
    if (!answered) signal.abort(new ConnectError(closedMessage(stream.rstCode), Code.Canceled));
  });

  const fail = (err: ConnectError) => {
    if (answered) return;
    answered = true;
    respondError(stream, err, contentType);
  };

  // The deadline: the caller's (the dispatcher has dropped one past the server's cap, which the pipeline applies).
  const timeout = parseTimeout(header(headers, "grpc-timeout"), Number.MAX_SAFE_INTEGER);
  if (timeout.error !== undefined) return fail(timeout.error);
  const callerMs = timeout.timeoutMs;
  if (callerMs !== undefined && callerMs <= 0) return fail(new ConnectError("the operation timed out", Code.DeadlineExceeded));
  const compression = compressionNegotiate(ACCEPT, header(headers, "grpc-encoding"), null, "grpc-accept-encoding");
  if (compression.error !== undefined) return fail(compression.error);

  stream.on("data", onData);
  stream.once("end", () => {
    if (answered) return;
    const done = body.finish();
    if (done instanceof ConnectError) return fail(done);
    run(done).catch((err: unknown) => fail(new ConnectError("internal error", Code.Internal, undefined, undefined, err)));
  });

  /** Decodes the message, runs the pipeline and the implementation, writes the answer. */
  async function run(env: { flags: number; data: Uint8Array }): Promise<void> {
    const message = await decode(env, compression.request, target, opts.maxRequestBytes);
    if (message instanceof ConnectError) return fail(message);
    if (answered) return;
    const left = callerMs === undefined ? undefined : callerMs - (performance.now() - arrived);
    if (left !== undefined && left <= 0) return fail(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    const values = opts.contextValues(stream);
    const call: Call = { method: target.method, header: new NodeHeaders(headers), values, message, signal, timeoutMs: left };
    let res: Uint8Array;
    try {
      res = await opts.pipeline.run(call, async () => answer(target, await target.impl(message, new LeanContext(call, headers))));
    } catch (err) {
      return fail(ConnectError.from(err));
    }
    if (answered || stream.destroyed) return;
    answered = true;
    respondMessage(stream, res, contentType);
  }
}

/** The request body: one length-prefixed message, checked against the size bound as it arrives. */
class Envelope {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private declared = -1;

  constructor(private readonly maxBytes: number) {}

  /** Takes a chunk; an error as soon as the body is known to be too large or to hold a second message. */
  add(chunk: Buffer): ConnectError | undefined {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.declared < 0 && this.size >= 5) {
      const head = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks);
      this.declared = head.readUInt32BE(1);
      if (this.declared > this.maxBytes) {
        return new ConnectError(
          `message size ${this.declared} is larger than configured readMaxBytes ${this.maxBytes}`,
          Code.ResourceExhausted,
        );
      }
    }
    if (this.declared >= 0 && this.size >= 5 + this.declared + 5) {
      return new ConnectError("protocol error: received extra input message for unary method", Code.Unimplemented);
    }
    return undefined;
  }

  /** At the end of the body: the flags byte and the message bytes, or what is wrong. */
  finish(): { flags: number; data: Uint8Array } | ConnectError {
    if (this.size === 0) return new ConnectError("protocol error: missing input message for unary method", Code.Unimplemented);
    // Fewer bytes than the prefix promised, or a second prefix cut short: connect-node's "incomplete envelope".
    if (this.declared < 0 || this.size !== 5 + this.declared) {
      return new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.size);
    return { flags: all[0]!, data: all.subarray(5, 5 + this.declared) };
  }
}

/** The request message, inflated and parsed, or the error connect-node would answer. */
async function decode(
  env: { flags: number; data: Uint8Array },
  compression: Compression | null,
  target: UnaryMethod,
  maxBytes: number,
): Promise<unknown> {
  let data = env.data;
  if ((env.flags & 1) === 1) {
    if (compression === null) {
      return new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
    }
    try {
      data = await compression.decompress(data, maxBytes);
    } catch (err) {
      return ConnectError.from(err, Code.Internal);
    }
  }
  try {
    return decodeFast(target.method.input, data) ?? fromBinary(target.method.input, data);
  } catch (err) {
    return new ConnectError(`parse binary: ${err instanceof Error ? err.message : String(err)}`, Code.Internal);
  }
}

/**
 * Encodings of frozen answers: a handler that hands out the same frozen message again and again (Introspect's answer
 * for a token it has seen, src/api/token-service.ts) has it encoded once. A frozen message cannot change, so its
 * bytes cannot go stale; the entry goes with the message.
 */
const frozenAnswers = new WeakMap<object, Uint8Array>();

/** What an implementation returned, as the method's output message. */
function answer(target: UnaryMethod, out: unknown): Uint8Array {
  const output = target.method.output;
  if (typeof out === "object" && out !== null && Object.isFrozen(out) && isMessage(out, output)) {
    let bytes = frozenAnswers.get(out);
    if (bytes === undefined) frozenAnswers.set(out, (bytes = encodeMessage(output, out)));
    return bytes;
  }
  return encodeMessage(output, isMessage(out, output) ? out : create(output, out as never));
}

function respondMessage(stream: ServerHttp2Stream, body: Uint8Array, contentType: string): void {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  guarded(stream, () => {
    stream.respond({ ":status": 200, "content-type": contentType, "grpc-accept-encoding": ACCEPT_ENCODING }, { waitForTrailers: true });
    stream.once("wantTrailers", sendOkTrailers);
    stream.end(frame);
  });
}

/**
 * The trailers of an answered call, as a 'wantTrailers' listener of the module's own: a client that resets the stream
 * before they go leaves the listener on the closed stream, and it holds nothing (not the answer's bytes).
 */
function sendOkTrailers(this: ServerHttp2Stream): void {
  guarded(this, () => this.sendTrailers({ "grpc-status": "0" }));
}

/** Trailers-only: the status in the one HEADERS frame, then the stream ends (and stops the request if still open). */
function respondError(stream: ServerHttp2Stream, err: ConnectError, contentType: string): void {
  if (stream.destroyed || stream.closed || stream.headersSent) return;
  const status = setTrailerStatus(new Headers(), err);
  const out: http2.OutgoingHttpHeaders = { ":status": 200, "content-type": contentType, "grpc-accept-encoding": ACCEPT_ENCODING };
  status.forEach((value, key) => (out[key] = value));
  out["grpc-message"] = percentEncode(err.rawMessage);
  guarded(stream, () => {
    stream.respond(out, { endStream: true });
    // The request may still be arriving (too large, timed out): tell the client to stop sending.
    if (!stream.readableEnded) stream.close(NGHTTP2_NO_ERROR);
  });
}


/** HTTP/2 error codes by number (RFC 9113, section 7). */
const H2_ERRORS = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];

/** What the log says of a stream the client ended, in connect-node's words ("... CANCEL (0x8)"). */
function closedMessage(rstCode: number | undefined): string {
  if (rstCode === undefined || rstCode === NGHTTP2_NO_ERROR) return "the client closed the stream before the answer";
  return `http/2 stream closed with error code ${H2_ERRORS[rstCode] ?? "UNKNOWN"} (0x${rstCode.toString(16)})`;
}

function ignore(): void {}

function header(headers: IncomingHttpHeaders, name: string): string | null {
  const v = headers[name];
  return v === undefined ? null : Array.isArray(v) ? v.join(", ") : v;
}

/** The pipeline's view of node's header object. */
class NodeHeaders {
  constructor(private readonly headers: IncomingHttpHeaders) {}
  get(name: string): string | null {
    return header(this.headers, name);
  }
}

/** A call's end, without an AbortController: the pipeline listens, and a handler's AbortSignal if one asks for it. */
class StreamSignal implements CallSignal {
  aborted = false;
  reason: unknown = undefined;
  private listeners: Array<() => void> = [];

  addEventListener(_type: "abort", listener: () => void): void {
    this.listeners.push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    this.listeners = this.listeners.filter((l) => l !== listener);
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    for (const l of this.listeners.splice(0)) l();
  }
}

/**
 * The HandlerContext the implementations get on the lean path. They read `values`; the rest is made only if read
 * (an AbortSignal, Headers objects).
 */
class LeanContext implements HandlerContext {
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  private controller: AbortController | undefined;
  private lazyHeaders: { request?: Headers; response?: Headers; trailer?: Headers } = {};
  private readonly deadline: number | undefined;

  constructor(
    private readonly call: Call,
    private readonly headers: IncomingHttpHeaders,
  ) {
    this.deadline = call.timeoutMs === undefined ? undefined : performance.now() + call.timeoutMs;
  }

  get method() {
    return this.call.method;
  }
  get service() {
    return this.call.method.parent;
  }
  get values() {
    return this.call.values;
  }
  get url() {
    return String(this.headers[":path"] ?? "");
  }
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      const controller = new AbortController();
      const signal = this.call.signal;
      if (signal.aborted) controller.abort(signal.reason);
      else signal.addEventListener("abort", () => controller.abort(signal.reason));
      this.controller = controller;
    }
    return this.controller.signal;
  }
  /** What is left of the caller's deadline. */
  timeoutMs(): number | undefined {
    return this.deadline === undefined ? undefined : this.deadline - performance.now();
  }
  get requestHeader(): Headers {
    return (this.lazyHeaders.request ??= new Headers(
      Object.entries(this.headers).flatMap(([k, v]) => (k.startsWith(":") || v === undefined ? [] : [[k, String(v)] as [string, string]])),
    ));
  }
  get responseHeader(): Headers {
    return (this.lazyHeaders.response ??= new Headers());
  }
  get responseTrailer(): Headers {
    return (this.lazyHeaders.trailer ??= new Headers());
  }
}
