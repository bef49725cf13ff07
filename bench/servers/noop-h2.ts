/**
 * Reference for the fixed-rate latency: node:http2 alone, as bare as a unary gRPC server can be. Every POST stream
 * is read to its end, then answered as a gRPC call with an empty message: headers, one 5-byte frame (a message of
 * 0 bytes, which decodes as any empty message, IntrospectResponse{} included), trailers `grpc-status: 0`. No
 * parsing, no routing, no framework: what is left of its latency is node:http2's and V8's own (the streams it makes
 * and the garbage collection of them), the floor under any gRPC server on this runtime and machine.
 * `node --import tsx bench/servers/noop-h2.ts <port>`; prints "ready" once bound.
 */
import http2 from "node:http2";

const EMPTY_MESSAGE = Buffer.from([0, 0, 0, 0, 0]);

const server = http2.createServer();
server.on("stream", (stream) => {
  stream.on("error", () => {});
  stream.on("data", () => {});
  stream.on("end", () => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(EMPTY_MESSAGE);
  });
});
server.listen(Number(process.argv[2]), "127.0.0.1", () => process.stdout.write("ready\n"));
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
