/**
 * The wire, with a raw node:http2 client: what the lean unary gRPC path and connect-node answer to well- and
 * ill-formed requests (framing, compression, deadlines, slow bodies, resets, unknown methods, many streams).
 * In-process servers on port 0, memory store, except where a paused Redis is needed.
 */
import http2 from "node:http2";
import net from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code } from "@connectrpc/connect";
import { IntrospectRequestSchema, IntrospectResponseSchema } from "../../gen/tessera/v1/token_pb.js";
import { connectClients } from "../helpers/clients.js";
import { RedisServer } from "../helpers/redis-server.js";
import { spawnAuthority, startServer, type StartedServer } from "../helpers/server.js";
import { until as waitFor } from "../helpers/wait.js";

const INTROSPECT = "/tessera.v1.TokenService/Introspect";
const GRPC = { ":method": "POST", "content-type": "application/grpc", te: "trailers" };

/** One gRPC frame: flags byte, 4-byte length, message. */
function frame(message: Uint8Array, flags = 0, declared = message.length): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(declared, 1);
  out.set(message, 5);
  return out;
}

const introspectBody = (token: string) => toBinary(IntrospectRequestSchema, create(IntrospectRequestSchema, { token }));

interface Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders | undefined;
  body: Buffer;
  /** grpc-status from the trailers, or from the headers of a trailers-only answer. */
  grpcStatus: number | undefined;
  grpcMessage: string;
  /** Whether the status came in the one HEADERS frame (trailers-only). */
  trailersOnly: boolean;
  /** The RST_STREAM code the server ended the stream with (0 if none or NO_ERROR). */
  rstCode: number;
}

/**
 * Sends one request on `session`. `send(stream)` writes the body (default: `body`, then end). Resolves once the
 * stream closes.
 */
function request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: Buffer,
  send?: (stream: http2.ClientHttp2Stream) => void,
): Promise<Answer> {
  return new Promise((resolve) => {
    const stream = session.request({ ":path": INTROSPECT, ...GRPC, ...headers });
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | undefined;
    stream.on("response", (h) => (head = h));
    stream.on("trailers", (t) => (trailers = t));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", () => {});
    stream.on("close", () => {
      const where = trailers ?? head;
      const raw = where["grpc-status"];
      resolve({
        status: Number(head[":status"] ?? 0),
        headers: head,
        trailers,
        body: Buffer.concat(chunks),
        grpcStatus: raw === undefined ? undefined : Number(raw),
        grpcMessage: decodeURIComponent(String(where["grpc-message"] ?? "")),
        trailersOnly: trailers === undefined && head["grpc-status"] !== undefined,
        rstCode: stream.rstCode ?? 0,
      });
    });
    if (send) send(stream);
    else stream.end(body);
  });
}

/** A raw HTTP/1.1 connection: what the server wrote before it closed the connection, and when (bounded at 10 s). */
function rawHttp1(port: number, send: (socket: net.Socket) => void): Promise<{ answer: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let answer = "";
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.on("data", (d: Buffer) => (answer += d.toString()));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ answer, ms: Date.now() - started });
    });
    socket.on("connect", () => send(socket));
  });
}

/**
 * An in-process server with `env`, one valid access token from it and one HTTP/2 connection to it, for the tests of
 * the enclosing describe block (made before them, closed after).
 */
function wireServer(env: Record<string, string>): { server(): StartedServer; session(): http2.ClientHttp2Session; token(): string } {
  let server: StartedServer | undefined;
  let session: http2.ClientHttp2Session | undefined;
  let token = "";
  beforeAll(async () => {
    server = await startServer(env);
    const c = connectClients("connect-h1", server.url);
    token = (await c.tokens.issue({ subject: "wire" })).tokens!.accessToken;
    c.close();
    session = connect(server.url);
  });
  afterAll(async () => {
    session?.close();
    await server?.close();
  });
  return { server: () => server!, session: () => session!, token: () => token };
}

function connect(url: string): http2.ClientHttp2Session {
  const session = http2.connect(url);
  session.on("error", () => {});
  return session;
}

describe("the lean path on the wire", () => {
  // A read timeout short enough to wait for, long enough that 300 streams of one burst on a busy machine fit in it.
  const wire = wireServer({ TESSERA_MAX_REQUEST_BYTES: "4096", TESSERA_READ_TIMEOUT: "1s", TESSERA_MAX_TIMEOUT: "3s" });
  let session: http2.ClientHttp2Session;
  let token = "";
  beforeAll(() => {
    session = wire.session();
    token = wire.token();
  });

  it("answers a call: headers, one message, then trailers with grpc-status 0", async () => {
    const a = await request(session, {}, frame(introspectBody(token)));
    expect(a.status).toBe(200);
    expect(a.headers["content-type"]).toBe("application/grpc");
    expect(a.trailersOnly).toBe(false);
    expect(a.trailers?.["grpc-status"]).toBe("0");
    expect(a.body.readUInt32BE(1)).toBe(a.body.length - 5);
    const res = fromBinary(IntrospectResponseSchema, a.body.subarray(5));
    expect(res.active).toBe(true);
    expect(res.subject).toBe("wire");
  });

  it("answers an error trailers-only, with a spec percent-encoded grpc-message and grpc-status-details-bin", async () => {
    const a = await request(session, {}, frame(introspectBody("")));
    expect(a.trailersOnly).toBe(true);
    expect(a.body.length).toBe(0);
    expect(a.grpcStatus).toBe(Code.InvalidArgument);
    // Printable ASCII stays as it is (the spec encodes only what is outside 0x20-0x7E, and "%").
    expect(a.headers["grpc-message"]).toBe("token: must not be empty");
    const details = decodeStatus(Buffer.from(String(a.headers["grpc-status-details-bin"]), "base64"));
    expect(details).toEqual({ code: Code.InvalidArgument, message: "token: must not be empty", typeUrls: ["type.googleapis.com/google.rpc.BadRequest"] });
  });

  it.each([
    ["no message", Buffer.alloc(0), Code.Unimplemented, /missing input message/],
    ["two messages", Buffer.concat([frame(introspectBody("a")), frame(introspectBody("b"))]), Code.Unimplemented, /extra input message/],
    ["a cut-off envelope", frame(new Uint8Array(3), 0, 10), Code.InvalidArgument, /incomplete envelope/],
    ["a cut-off prefix", Buffer.from([0, 0, 0]), Code.InvalidArgument, /incomplete envelope/],
    ["bytes that are not protobuf", frame(Buffer.from([0xff, 0xff, 0xff, 0xff])), Code.Internal, /parse binary/],
    ["a compressed flag without grpc-encoding", frame(introspectBody(token), 1), Code.Internal, /do not know how to decompress/],
  ])("framing: %s is refused with the code connect-node gives", async (_name, body, code, message) => {
    const a = await request(session, {}, body);
    expect(a.grpcStatus).toBe(code);
    expect(a.grpcMessage).toMatch(message);
  });

  it("refuses a message larger than TESSERA_MAX_REQUEST_BYTES as soon as its prefix says so, without reading it", async () => {
    const a = await request(session, {}, undefined, (stream) => {
      stream.write(frame(new Uint8Array(0), 0, 1_000_000)); // announces 1 MB, sends nothing more, never ends
    });
    expect(a.grpcStatus).toBe(Code.ResourceExhausted);
    expect(a.grpcMessage).toMatch(/larger than configured readMaxBytes 4096/);
  });

  it("inflates gzip within the bound, refuses an inflate bomb, and names gzip for an unknown encoding", async () => {
    const ok = await request(session, { "grpc-encoding": "gzip" }, frame(gzipSync(introspectBody(token)), 1));
    expect(ok.trailers?.["grpc-status"]).toBe("0");
    expect(fromBinary(IntrospectResponseSchema, ok.body.subarray(5)).active).toBe(true);

    // An inflate bomb: 100 KB of zeros in far fewer than the 4096 bytes the request may hold, far more once inflated.
    const small = gzipSync(Buffer.alloc(100_000));
    expect(small.length).toBeLessThan(4096);
    const a = await request(session, { "grpc-encoding": "gzip" }, frame(small, 1));
    expect(a.grpcStatus).toBe(Code.ResourceExhausted);
    expect(a.grpcMessage).toMatch(/after decompression/);

    const br = await request(session, { "grpc-encoding": "br" }, frame(introspectBody(token), 1));
    expect(br.grpcStatus).toBe(Code.Unimplemented);
    expect(br.headers["grpc-accept-encoding"]).toBe("gzip");
  });

  it("takes grpc-timeout in every unit and caps a huge one at TESSERA_MAX_TIMEOUT instead of failing at once", async () => {
    for (const t of ["1H", "5M", "30S", "1500m", "1500000u", "99999999n", "99999999H", "99999999S"]) {
      const a = await request(session, { "grpc-timeout": t }, frame(introspectBody(token)));
      expect([t, a.trailers?.["grpc-status"]]).toEqual([t, "0"]);
    }
    const bad = await request(session, { "grpc-timeout": "1x" }, frame(introspectBody(token)));
    expect(bad.grpcStatus).toBe(Code.InvalidArgument);
    expect(bad.grpcMessage).toMatch(/invalid grpc timeout value/);
  });

  it("counts the time spent receiving the request against the caller's deadline", async () => {
    const started = Date.now();
    const a = await request(session, { "grpc-timeout": "150m" }, undefined, (stream) => stream.write(Buffer.from([0, 0, 0])));
    expect(a.grpcStatus).toBe(Code.DeadlineExceeded);
    expect(a.grpcMessage).toBe("the operation timed out");
    expect(Date.now() - started).toBeLessThan(900); // the caller's 150 ms, not the 1 s read timeout
  });

  it("ends a stalled body and a trickling body at TESSERA_READ_TIMEOUT, without credentials", async () => {
    const stalled = await request(session, {}, undefined, (stream) => stream.write(Buffer.from([0, 0, 0, 0, 20])));
    expect(stalled.grpcStatus).toBe(Code.DeadlineExceeded);
    expect(stalled.grpcMessage).toBe("request not received within 1000ms");

    let timer: NodeJS.Timeout | undefined;
    const trickle = await request(session, {}, undefined, (stream) => {
      stream.write(Buffer.from([0, 0, 0, 0, 100]));
      timer = setInterval(() => {
        if (!stream.closed && !stream.destroyed) stream.write(Buffer.from([0x0a]));
      }, 50);
    });
    clearInterval(timer);
    expect(trickle.grpcStatus).toBe(Code.DeadlineExceeded);
  });

  it("answers UNIMPLEMENTED, as a gRPC status, for an unknown method and an unknown service", async () => {
    const method = await request(session, { ":path": "/tessera.v1.TokenService/Mint" }, frame(new Uint8Array(0)));
    expect(method.grpcStatus).toBe(Code.Unimplemented);
    expect(method.grpcMessage).toBe("unknown method Mint for service tessera.v1.TokenService");
    const service = await request(session, { ":path": "/tessera.v9.Nothing/Do" }, frame(new Uint8Array(0)));
    expect(service.grpcStatus).toBe(Code.Unimplemented);
    expect(service.grpcMessage).toBe("unknown service tessera.v9.Nothing");
  });

  it("answers UNIMPLEMENTED, as a gRPC status, at a path that is no RPC's; a plain route keeps its 405", async () => {
    for (const path of ["/tessera.v1.TokenService/Introspect/", "/tessera.v1.TokenService", "/", `/${"x".repeat(5000)}`]) {
      const a = await request(session, { ":path": path }, frame(introspectBody(token)));
      expect(a.status).toBe(200);
      expect(a.trailersOnly).toBe(true);
      expect(a.grpcStatus).toBe(Code.Unimplemented);
      expect(a.grpcMessage).toMatch(/^no RPC at \/\S*: an RPC's path is \/<package>\.<Service>\/<Method>$/);
      expect(a.grpcMessage.length).toBeLessThan(200);
    }
    const health = await request(session, { ":path": "/healthz" }, frame(introspectBody(token)));
    expect([health.status, health.grpcStatus]).toEqual([405, undefined]);
  });
});

describe("the lean path under many streams", () => {
  // A server of its own with the default read timeout: the bound on reading a request is tested above, and 300 streams
  // of one burst, read by a server sharing the test's event loop on a busy machine, may need more than a short one.
  const wire = wireServer({});

  it("answers 300 concurrent streams on one connection", async () => {
    const token = wire.token();
    const answers = await Promise.all(Array.from({ length: 300 }, () => request(wire.session(), {}, frame(introspectBody(token)))));
    // The status wherever it came (a trailers-only error carries it in the headers), so a failure says which.
    const statuses = answers.map((a) => a.trailers?.["grpc-status"] ?? `${String(a.headers["grpc-status"])} (trailers-only)`);
    expect(statuses).toEqual(answers.map(() => "0"));
  });
});

describe("connect-node's side of the port keeps the same guards", () => {
  const wire = wireServer({ TESSERA_READ_TIMEOUT: "400ms", TESSERA_MAX_TIMEOUT: "2s" });
  let server: StartedServer;
  let session: http2.ClientHttp2Session;
  let token = "";
  beforeAll(() => {
    server = wire.server();
    session = wire.session();
    token = wire.token();
  });

  const connectHeaders = { "content-type": "application/proto", "connect-protocol-version": "1" };

  it("caps a huge connect-timeout-ms and grpc-timeout (gRPC-Web) instead of failing at once", async () => {
    const connect = await request(session, { ...connectHeaders, "connect-timeout-ms": "9999999999" }, Buffer.from(introspectBody(token)));
    expect(connect.status).toBe(200);
    expect(fromBinary(IntrospectResponseSchema, connect.body).active).toBe(true);
    const web = await request(session, { "content-type": "application/grpc-web+proto", "grpc-timeout": "99999999H" }, frame(introspectBody(token)));
    expect(web.status).toBe(200);
    expect(web.headers["grpc-status"] ?? "0").toBe("0");
  });

  it("ends a stalled Connect body (408, deadline_exceeded) and a stalled gRPC-Web body (grpc-status 4)", async () => {
    const c = await request(session, connectHeaders, undefined, (s) => s.write(Buffer.from([0x0a])));
    expect(c.status).toBe(408);
    expect(JSON.parse(c.body.toString())).toEqual({ code: "deadline_exceeded", message: "request not received within 400ms" });
    const web = await request(session, { "content-type": "application/grpc-web+proto" }, undefined, (s) => s.write(Buffer.from([0, 0])));
    expect(web.grpcStatus).toBe(Code.DeadlineExceeded);
  });

  it("answers UNIMPLEMENTED for unknown methods over the Connect protocol (404) and gRPC-Web", async () => {
    const c = await request(session, { ...connectHeaders, ":path": "/tessera.v1.TokenService/Mint" }, Buffer.alloc(0));
    expect(c.status).toBe(404);
    expect(JSON.parse(c.body.toString())).toEqual({ code: "unimplemented", message: "unknown method Mint for service tessera.v1.TokenService" });
    const web = await request(session, { "content-type": "application/grpc-web+proto", ":path": "/x.Y/Z" }, frame(new Uint8Array(0)));
    expect(web.grpcStatus).toBe(Code.Unimplemented);
    // At a path that is no RPC's (a base URL with a prefix): the same, where a bare 405 used to read as "unknown".
    const prefixed = await request(session, { ...connectHeaders, ":path": "/api/tessera.v1.TokenService/Introspect" }, Buffer.alloc(0));
    expect(prefixed.status).toBe(404);
    expect(JSON.parse(prefixed.body.toString())).toEqual({
      code: "unimplemented",
      message: "no RPC at /api/tessera.v1.TokenService/Introspect: an RPC's path is /<package>.<Service>/<Method>",
    });
  });

  it("HTTP/1.1: a stalled body gets 408 at TESSERA_READ_TIMEOUT; headers that trickle in close the connection", async () => {
    const stalled = await rawHttp1(server.port, (socket) =>
      socket.write("POST /tessera.v1.TokenService/Introspect HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"),
    );
    expect(stalled.answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(stalled.answer).toContain('"request not received within 400ms"');
    expect(stalled.ms).toBeLessThan(3_000);

    let trickle: NodeJS.Timeout | undefined;
    const slow = await rawHttp1(server.port, (socket) => {
      socket.write("GET /healthz HTTP/1.1\r\nhost: x\r\n");
      trickle = setInterval(() => socket.writable && socket.write("x-slow: 1\r\n"), 100); // never ends its headers
    });
    clearInterval(trickle);
    expect(slow.answer).toMatch(/^HTTP\/1\.1 408 /); // node's headers timeout (400 ms here), checked every second
    expect(slow.ms).toBeLessThan(4_000);
  });

  it("plain HTTP routes still answer", async () => {
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(200);
    expect((await fetch(`${server.url}/nothing`)).status).toBe(404);
  });
});

describe("a client that goes away", () => {
  let redis: RedisServer;
  let server: StartedServer;

  beforeAll(async () => {
    redis = await RedisServer.start();
    server = await startServer({ TESSERA_REDIS_URL: redis.url, TESSERA_STORE_TIMEOUT: "3s", TESSERA_LOG_LEVEL: "info" });
  });
  afterAll(async () => {
    await server?.close();
    await redis?.stop();
  });

  it.each([
    ["resets the stream", (stream: http2.ClientHttp2Stream) => stream.close(http2.constants.NGHTTP2_CANCEL)],
    ["drops the connection", (stream: http2.ClientHttp2Stream) => stream.session?.destroy()],
  ] as const)("stops the call when the client %s mid-call (lean path)", async (_how, goAway) => {
    const c = connectClients("connect-h1", server.url);
    const token = (await c.tokens.issue({ subject: "gone" })).tokens!.accessToken;
    c.close();
    const session = connect(server.url);
    const canceled = () => server.logs.filter((l) => l.msg === "rpc failed" && l.code === "Canceled").length;
    const before = canceled();
    try {
      // Hold the store: the Introspect below waits on its read, in the pipeline.
      await pauseRedis(redis.url, 2000);
      const stream = session.request({ ":path": INTROSPECT, ...GRPC });
      stream.on("error", () => {});
      stream.end(frame(introspectBody(token)));
      await until(() => server.app.inFlight() > 0);
      const started = Date.now();
      goAway(stream);
      await until(() => canceled() === before + 1);
      expect(Date.now() - started).toBeLessThan(1500); // long before the store answers (2 s) or times out (3 s)
      expect(server.app.inFlight()).toBe(0);
    } finally {
      session.destroy();
    }
  });
});

/** google.rpc.Status read field by field (code 1, message 2, details 3 as Any with type_url 1). */
function decodeStatus(bytes: Uint8Array): { code: number; message: string; typeUrls: string[] } {
  const r = new BinaryReader(bytes);
  const out = { code: 0, message: "", typeUrls: [] as string[] };
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1) out.code = r.int32();
    else if (field === 2) out.message = r.string();
    else if (field === 3) {
      const any = new BinaryReader(r.bytes());
      while (any.pos < any.len) {
        const [f, w] = any.tag();
        if (f === 1) out.typeUrls.push(any.string());
        else any.skip(w);
      }
    } else r.skip(wire);
  }
  return out;
}

async function pauseRedis(url: string, ms: number): Promise<void> {
  const { Redis } = await import("ioredis");
  const r = new Redis(url);
  await r.call("CLIENT", "PAUSE", String(ms), "ALL");
  r.disconnect();
}

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("a real process under many concurrent calls and huge deadlines", () => {
  it("writes nothing but JSON log lines: no TimeoutOverflowWarning, no MaxListenersExceededWarning", async () => {
    const proc = await spawnAuthority({ TESSERA_LOG_LEVEL: "warn" });
    const session = connect(proc.url);
    try {
      const c = connectClients("connect-h1", proc.url);
      const token = (await c.tokens.issue({ subject: "warnings" })).tokens!.accessToken;
      c.close();
      const body = introspectBody(token);
      const calls = Array.from({ length: 40 }, (_, i) => {
        switch (i % 4) {
          case 0: // the lean path
            return request(session, { "grpc-timeout": "99999999H" }, frame(body));
          case 1: // connect-node, gRPC-Web
            return request(session, { "content-type": "application/grpc-web+proto", "grpc-timeout": "99999999H" }, frame(body));
          case 2: // connect-node, Connect protocol (with a gRPC deadline header beside it, which it ignores)
            return request(
              session,
              { "content-type": "application/proto", "connect-timeout-ms": "9999999999", "grpc-timeout": "5S" },
              Buffer.from(body),
            );
          default: // connect-node, gRPC with JSON
            return request(session, { "content-type": "application/grpc+json" }, frame(Buffer.from(JSON.stringify({ token }))));
        }
      });
      // HTTP/1.1 (fetch): the Connect protocol and gRPC-Web with deadlines far past the cap.
      const overHttp1 = await Promise.all([
        fetch(`${proc.url}${INTROSPECT}`, {
          method: "POST",
          headers: { "content-type": "application/proto", "connect-timeout-ms": "9999999999" },
          body: Buffer.from(body),
        }),
        fetch(`${proc.url}${INTROSPECT}`, {
          method: "POST",
          headers: { "content-type": "application/grpc-web+proto", "grpc-timeout": "99999999H" },
          body: frame(body),
        }),
      ]);
      expect(overHttp1.map((r) => r.status)).toEqual([200, 200]);
      expect(fromBinary(IntrospectResponseSchema, new Uint8Array(await overHttp1[0]!.arrayBuffer())).active).toBe(true);
      expect(overHttp1[1]!.headers.get("grpc-status") ?? "0").toBe("0");
      await overHttp1[1]!.arrayBuffer();
      const answers = await Promise.all(calls);
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 200));
      expect(answers.map((a) => a.trailers?.["grpc-status"] ?? a.headers["grpc-status"] ?? "0")).toEqual(answers.map(() => "0"));
      await proc.kill("SIGTERM");
      const notJson = [...proc.stdout, ...proc.stderr].filter((line) => line.trim() !== "" && !isJson(line));
      expect(notJson).toEqual([]);
    } finally {
      session.close();
      await proc.kill("SIGKILL");
    }
  });
});

function isJson(line: string): boolean {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
}

describe("connections", () => {
  it("accepts at most TESSERA_MAX_CONNECTIONS at once, and takes new ones again once others close", async () => {
    const server = await startServer({ TESSERA_MAX_CONNECTIONS: "2" });
    const sessions: http2.ClientHttp2Session[] = [];
    const ok = async (session: http2.ClientHttp2Session) => (await request(session, {}, frame(new Uint8Array(0)))).grpcStatus;
    try {
      for (let i = 0; i < 2; i++) sessions.push(connect(server.url));
      // An empty Introspect request is INVALID_ARGUMENT (token required): an answer, so the connection is served.
      expect(await Promise.all(sessions.map(ok))).toEqual([Code.InvalidArgument, Code.InvalidArgument]);
      const third = connect(server.url);
      sessions.push(third);
      const refused = await request(third, {}, frame(new Uint8Array(0)));
      expect(refused.status).toBe(0); // no answer: the connection was closed
      await new Promise<void>((resolve) => (third.closed ? resolve() : third.once("close", () => resolve())));

      sessions[0]!.close();
      await waitFor(() => sessions[0]!.closed);
      const again = await waitFor(async () => {
        const s = connect(server.url);
        sessions.push(s);
        return (await ok(s)) === Code.InvalidArgument;
      });
      expect(again).toBe(true);
    } finally {
      for (const s of sessions) s.destroy();
      await server.close();
    }
  });
});

describe("bodies not yet complete stay within TESSERA_MAX_PENDING_BYTES, on every path", () => {
  // 1 MiB holds 17 stalled bodies of 60 000 bytes; the read timeout outlasts the test's streams.
  const wire = wireServer({ TESSERA_MAX_PENDING_BYTES: "1048576", TESSERA_MAX_REQUEST_BYTES: "65536", TESSERA_READ_TIMEOUT: "20s" });
  const PART = 60_000;
  const pendingBytes = async () => {
    const { values } = await wire.server().app.metrics.registry.getSingleMetric("tessera_pending_request_bytes")!.get();
    return values[0]!.value;
  };
  /** A gRPC stream that sends PART bytes of a 65 000-byte message and stalls; resolves once the server holds them. */
  async function stalled(session: http2.ClientHttp2Session): Promise<http2.ClientHttp2Stream> {
    const before = await pendingBytes();
    const stream = session.request({ ":path": INTROSPECT, ...GRPC });
    stream.on("error", () => {});
    stream.write(frame(Buffer.alloc(PART - 5), 0, 65_000));
    await waitFor(async () => (await pendingBytes()) >= before + PART, 10_000, "the server to hold the stalled body");
    return stream;
  }

  it("refuses the stream that would go past the bound (RESOURCE_EXHAUSTED; Connect 429), serves whole calls, and frees it all", async () => {
    const attacker = connect(wire.server().url);
    try {
      const held: http2.ClientHttp2Stream[] = [];
      for (let i = 0; i < 17; i++) held.push(await stalled(attacker));
      expect(await pendingBytes()).toBe(17 * PART);

      // The 18th: gRPC (the lean path's method) and the Connect protocol (connect-node's side) are both refused.
      const grpc = await request(wire.session(), {}, undefined, (s) => s.write(frame(Buffer.alloc(PART - 5), 0, 65_000)));
      expect(grpc.grpcStatus).toBe(Code.ResourceExhausted);
      expect(grpc.grpcMessage).toBe("server busy: too many request bytes pending, retry later");
      const connectProto = { "content-type": "application/proto", "connect-protocol-version": "1" };
      const c = await request(wire.session(), connectProto, undefined, (s) => s.write(Buffer.alloc(PART)));
      expect(c.status).toBe(429);
      expect(JSON.parse(c.body.toString())).toEqual({ code: "resource_exhausted", message: "server busy: too many request bytes pending, retry later" });
      const web = await request(wire.session(), { "content-type": "application/grpc-web+proto" }, undefined, (s) =>
        s.write(frame(Buffer.alloc(PART - 5), 0, 65_000)),
      );
      expect(web.grpcStatus).toBe(Code.ResourceExhausted);
      // What the refused streams took is given back; a whole call within what is left is served.
      expect(await pendingBytes()).toBe(17 * PART);
      const whole = await request(wire.session(), {}, frame(introspectBody(wire.token())));
      expect(whole.grpcStatus).toBe(0);
      expect(fromBinary(IntrospectResponseSchema, whole.body.subarray(5)).active).toBe(true);

      // The stalled streams go (a reset, as a client gives up): their bytes are free again.
      for (const s of held) s.close(http2.constants.NGHTTP2_CANCEL);
      await waitFor(async () => (await pendingBytes()) === 0, 10_000, "the held bytes to be given back");
      // A streaming method's request (reflection) is not counted: its messages are bounded one by one. Its partial
      // message goes first on the connection, so once the unary stream after it is counted, it has arrived too.
      const reflection = attacker.request({ ":path": "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", ...GRPC });
      reflection.on("error", () => {});
      reflection.write(frame(Buffer.alloc(PART - 5), 0, 65_000));
      const again = await stalled(attacker);
      expect(await pendingBytes()).toBe(PART);
      reflection.close(http2.constants.NGHTTP2_CANCEL);
      again.close(http2.constants.NGHTTP2_CANCEL);
      await waitFor(async () => (await pendingBytes()) === 0, 10_000, "the last stream's bytes to be given back");
    } finally {
      attacker.destroy();
    }
  });
});

describe("PendingBytes", () => {
  it("takes within the bound, refuses past it unless the stream is the only holder, and gives back", async () => {
    const { PendingBytes } = await import("../../src/server/dispatch.js");
    const p = new PendingBytes(100);
    expect(p.take(60, 0)).toBe(true);
    expect(p.take(50, 0)).toBe(false); // another stream holds 60
    expect(p.held).toBe(60);
    expect(p.take(50, 60)).toBe(true); // the only holder may complete its request
    expect(p.held).toBe(110);
    p.give(110);
    expect(p.take(100, 0)).toBe(true);
    expect(p.take(1, 0)).toBe(false);
    p.give(100);
    expect(p.held).toBe(0);
  });
});
