/**
 * Lean client transports for the load generator: unary calls only, straight on node:http2. The gRPC one sends one
 * length-prefixed protobuf message each way and reads grpc-status from the trailers; the Connect one (the Connect
 * protocol's unary POST, binary protobuf or JSON) sends the serialized request as the body and reads the answer from a
 * 200, a JSON error otherwise. They plug into connect's createClient like createGrpcTransport does, but cost the
 * generator a fraction of the CPU per call, so that on a machine whose cores the generator shares with the server, the
 * server and not the generator sets the pace. BENCH_CLIENT=connect switches the generator to connect-node's own
 * transports for comparison.
 */
import http2 from "node:http2";
import {
  create,
  fromBinary,
  fromJsonString,
  toBinary,
  toJsonString,
  type DescMessage,
  type DescMethodUnary,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import type { UnaryResponse } from "@connectrpc/connect";

const { NGHTTP2_CANCEL } = http2.constants;

type LeanTransport = Transport & { close(): void };

/** One HTTP/2 connection, opened on first use and opened again if it closes. */
function connection(baseUrl: string): { session(): http2.ClientHttp2Session; close(): void } {
  let current: http2.ClientHttp2Session | undefined;
  return {
    session() {
      if (current && !current.closed && !current.destroyed) return current;
      const fresh = http2.connect(baseUrl);
      fresh.on("error", () => {}); // each stream reports its own failure
      current = fresh;
      return fresh;
    },
    close() {
      current?.close();
    },
  };
}

function notStreaming(): Promise<never> {
  return Promise.reject(new ConnectError("streaming is not supported by the lean transport", Code.Unimplemented));
}

/** A gRPC transport over one HTTP/2 connection (opened on first use, opened again if it closes). */
export function createLeanGrpcTransport(baseUrl: string): LeanTransport {
  const conn = connection(baseUrl);
  const session = () => conn.session();

  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      _signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      _header: unknown,
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      const body = toBinary(method.input, create(method.input, input));
      const frame = Buffer.allocUnsafe(5 + body.length);
      frame.writeUInt8(0, 0);
      frame.writeUInt32BE(body.length, 1);
      frame.set(body, 5);
      return new Promise((resolve, reject) => {
        const stream = session().request({
          ":method": "POST",
          ":path": `/${method.parent.typeName}/${method.name}`,
          "content-type": "application/grpc+proto",
          te: "trailers",
          ...(timeoutMs === undefined ? {} : { "grpc-timeout": `${timeoutMs}m` }),
        });
        const chunks: Buffer[] = [];
        let status: string | undefined;
        let message = "";
        const onMeta = (h: http2.IncomingHttpHeaders) => {
          if (h["grpc-status"] !== undefined) {
            status = String(h["grpc-status"]);
            message = decodeURIComponent(String(h["grpc-message"] ?? ""));
          }
        };
        stream.on("response", onMeta); // a trailers-only answer (an error) carries the status in the headers
        stream.on("trailers", onMeta);
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("error", (err) => reject(ConnectError.from(err, Code.Unavailable)));
        if (timeoutMs !== undefined) stream.setTimeout(timeoutMs, () => stream.close(NGHTTP2_CANCEL));
        stream.on("close", () => {
          if (status !== "0") {
            const code = status === undefined ? Code.Unavailable : (Number(status) as Code);
            return reject(new ConnectError(message || `no grpc-status (stream closed with ${stream.rstCode})`, code));
          }
          const data = Buffer.concat(chunks);
          if (data.length < 5 || data[0] !== 0 || data.readUInt32BE(1) !== data.length - 5) {
            return reject(new ConnectError("expected exactly one uncompressed message", Code.Internal));
          }
          resolve({
            stream: false,
            service: method.parent,
            method,
            header: new Headers(),
            trailer: new Headers(),
            message: fromBinary(method.output, data.subarray(5)),
          });
        });
        stream.end(frame);
      });
    },
    stream: notStreaming,
    close: () => conn.close(),
  };
}

/** Code.InvalidArgument from "invalid_argument", as the Connect protocol spells codes in its JSON errors. */
function codeFromString(value: unknown): Code {
  const name = String(value).replace(/(?:^|_)([a-z])/g, (_, c: string) => c.toUpperCase());
  const code = (Code as unknown as Record<string, unknown>)[name];
  return typeof code === "number" ? (code as Code) : Code.Unknown;
}

/** The Connect protocol's code for an error answer without a JSON body (a proxy's, or a route that does not exist). */
function codeFromHttpStatus(status: number): Code {
  const codes: Record<number, Code> = {
    400: Code.Internal,
    401: Code.Unauthenticated,
    403: Code.PermissionDenied,
    404: Code.Unimplemented,
    429: Code.Unavailable,
    502: Code.Unavailable,
    503: Code.Unavailable,
    504: Code.Unavailable,
  };
  return codes[status] ?? Code.Unknown;
}

/**
 * A Connect-protocol transport over one HTTP/2 connection: a unary call is a POST to /<service>/<method> with
 * content-type application/proto (`format` "proto") or application/json ("json") and `connect-protocol-version: 1`;
 * the body is the serialized request; a 200's body is the serialized response, any other status carries a JSON error
 * {code, message}.
 */
export function createLeanConnectTransport(baseUrl: string, format: "proto" | "json"): LeanTransport {
  const conn = connection(baseUrl);
  const contentType = format === "proto" ? "application/proto" : "application/json";
  return {
    unary<I extends DescMessage, O extends DescMessage>(
      method: DescMethodUnary<I, O>,
      _signal: AbortSignal | undefined,
      timeoutMs: number | undefined,
      _header: unknown,
      input: MessageInitShape<I>,
    ): Promise<UnaryResponse<I, O>> {
      const message = create(method.input, input);
      const body = format === "proto" ? toBinary(method.input, message) : toJsonString(method.input, message);
      return new Promise((resolve, reject) => {
        const stream = conn.session().request({
          ":method": "POST",
          ":path": `/${method.parent.typeName}/${method.name}`,
          "content-type": contentType,
          "connect-protocol-version": "1",
          ...(timeoutMs === undefined ? {} : { "connect-timeout-ms": String(timeoutMs) }),
        });
        const chunks: Buffer[] = [];
        let status: number | undefined;
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("error", (err) => reject(ConnectError.from(err, Code.Unavailable)));
        if (timeoutMs !== undefined) stream.setTimeout(timeoutMs, () => stream.close(NGHTTP2_CANCEL));
        stream.on("close", () => {
          const data = Buffer.concat(chunks);
          if (status !== 200) {
            if (status === undefined) return reject(new ConnectError(`no response (stream closed with ${stream.rstCode})`, Code.Unavailable));
            let error: { code?: unknown; message?: unknown } = {};
            try {
              error = JSON.parse(data.toString("utf8")) as typeof error;
            } catch {
              // not JSON: the HTTP status is all there is
            }
            const code = error.code === undefined ? codeFromHttpStatus(status) : codeFromString(error.code);
            return reject(new ConnectError(typeof error.message === "string" ? error.message : `HTTP ${status}`, code));
          }
          try {
            resolve({
              stream: false,
              service: method.parent,
              method,
              header: new Headers(),
              trailer: new Headers(),
              message:
                format === "proto"
                  ? fromBinary(method.output, data)
                  : fromJsonString(method.output, data.toString("utf8"), { ignoreUnknownFields: true }),
            });
          } catch (err) {
            reject(ConnectError.from(err, Code.Internal));
          }
        });
        stream.end(body);
      });
    },
    stream: notStreaming,
    close: () => conn.close(),
  };
}
