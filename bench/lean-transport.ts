/**
 * A lean gRPC client transport for the load generator: unary calls only, straight on node:http2 (one request, one
 * length-prefixed protobuf message each way, grpc-status from the trailers). It plugs into connect's createClient
 * like createGrpcTransport does, but costs the generator a fraction of the CPU per call, so that on a machine whose
 * cores the generator shares with the server, the server and not the generator sets the pace. BENCH_CLIENT=connect
 * switches the generator to connect-node's own createGrpcTransport for comparison.
 */
import http2 from "node:http2";
import { create, fromBinary, toBinary, type DescMessage, type DescMethodUnary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import type { UnaryResponse } from "@connectrpc/connect";

const { NGHTTP2_CANCEL } = http2.constants;

/** A transport over one HTTP/2 connection (opened on first use, opened again if it closes). */
export function createLeanGrpcTransport(baseUrl: string): Transport & { close(): void } {
  let current: http2.ClientHttp2Session | undefined;
  const session = (): http2.ClientHttp2Session => {
    if (current && !current.closed && !current.destroyed) return current;
    const fresh = http2.connect(baseUrl);
    fresh.on("error", () => {}); // each stream reports its own failure
    current = fresh;
    return fresh;
  };

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
    stream() {
      return Promise.reject(new ConnectError("streaming is not supported by the lean transport", Code.Unimplemented));
    },
    close() {
      current?.close();
    },
  };
}
