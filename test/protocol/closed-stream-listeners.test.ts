/**
 * The lean gRPC path leaves nothing of a call on its HTTP/2 stream once the stream closes (src/server/grpc-unary.ts):
 * node may keep a closed stream object until a full garbage collection, and whatever its listeners reach would stay
 * with it. Checked on a real node:http2 server, for answered calls, a refused one and one the client reset.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { createContextValues } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IntrospectRequestSchema, IntrospectResponseSchema, TokenService } from "../../gen/tessera/v1/token_pb.js";
import { Pipeline } from "../../src/api/pipeline.js";
import { grpcUnaryHandler } from "../../src/server/grpc-unary.js";
import { createLogger } from "../../src/observability/logger.js";
import { until } from "../helpers/wait.js";

const PATH = "/tessera.v1.TokenService/Introspect";
let server: http2.Http2Server;
let client: http2.ClientHttp2Session;
/** Every server stream the lean path took, once it closed. */
const closed: http2.ServerHttp2Stream[] = [];
/** Every 'error' and 'wantTrailers' listener added to those streams, as added. */
const added: Array<[string, Function]> = [];
/** Lets a test hold a call's answer back (the reset case). */
let hold: Promise<void> = Promise.resolve();

beforeAll(async () => {
  const handler = grpcUnaryHandler({
    methods: new Map([
      [PATH, { method: TokenService.method.introspect, impl: async () => (await hold, create(IntrospectResponseSchema, { active: true })) }],
    ]),
    pipeline: new Pipeline({ logger: createLogger("silent") }),
    maxRequestBytes: 1024,
    contextValues: () => createContextValues(),
  });
  server = http2.createServer();
  server.on("stream", (stream, headers) => {
    stream.once("close", () => setImmediate(() => closed.push(stream))); // after every 'close' listener ran
    stream.on("newListener", (name: string | symbol, f: Function) => {
      if (name === "error" || name === "wantTrailers") added.push([name, f]);
    });
    if (!handler(stream, headers)) stream.close();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});

afterAll(async () => {
  client.close();
  await new Promise((r) => server.close(r));
});

function send(body: Buffer, reset = false): Promise<void> {
  return new Promise((resolve) => {
    const s = client.request({ ":method": "POST", ":path": PATH, "content-type": "application/grpc", te: "trailers" });
    s.on("response", () => {});
    s.on("data", () => {});
    s.on("error", () => {});
    s.on("close", () => resolve());
    s.end(body);
    if (reset) setTimeout(() => s.close(http2.constants.NGHTTP2_CANCEL), 50);
  });
}

function frame(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

describe("the lean path on a closed stream", () => {
  it("keeps no 'data' listener, and adds only shared 'error' and 'wantTrailers' listeners, whatever the call's end", async () => {
    const good = frame(toBinary(IntrospectRequestSchema, create(IntrospectRequestSchema, { token: "t" })));
    await send(good); // answered
    await send(good); // answered
    await send(Buffer.from([0, 0, 0, 0x10, 0])); // refused: an incomplete envelope
    let release!: () => void;
    hold = new Promise((r) => (release = r));
    await send(good, true); // reset by the client while the answer is held back
    await until(() => closed.length === 4);
    release();
    for (const stream of closed) expect(stream.listeners("data")).toEqual([]);
    // What may stay on a closed stream ('error'; 'wantTrailers' when the client resets before the trailers go) is the
    // same function on every stream: a module's, closing over no call.
    const byName = (name: string) => new Set(added.filter(([n]) => n === name).map(([, f]) => f));
    expect(added.filter(([n]) => n === "error")).toHaveLength(4);
    expect(byName("error").size).toBe(1);
    expect(added.filter(([n]) => n === "wantTrailers")).toHaveLength(2);
    expect(byName("wantTrailers").size).toBe(1);
  });
});
