/**
 * Hostile HTTP/2 traffic against a real authority process: random paths, content types, deadline and encoding
 * headers, random (often lying) frame prefixes, bodies cut short, streams reset mid-call, connections destroyed
 * mid-stream, extra bytes after a message. Bounded in time and count; a fixed seed makes a failure repeatable. The
 * process must stay up, keep answering, and write nothing but its JSON log lines.
 */
import http2 from "node:http2";
import { describe, expect, it } from "vitest";
import { connectClients } from "../helpers/clients.js";
import { spawnAuthority } from "../helpers/server.js";

const PATHS = [
  "/tessera.v1.TokenService/Introspect",
  "/tessera.v1.TokenService/Issue",
  "/tessera.v1.TokenService/Refresh",
  "/tessera.v1.SessionService/ListSessions",
  "/grpc.health.v1.Health/Check",
  "/x.Y/Z",
  "/healthz",
];
const CONTENT_TYPES = ["application/grpc", "application/grpc+proto", "application/grpc-web+proto", "application/proto", "application/json", "application/grpc+json", "text/plain"];

/** xorshift32: the same seed, the same traffic. */
function prng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

function hostileStream(session: http2.ClientHttp2Session, rnd: (n: number) => number): Promise<void> {
  return new Promise((resolve) => {
    const headers: http2.OutgoingHttpHeaders = {
      ":method": rnd(5) ? "POST" : "GET",
      ":path": PATHS[rnd(PATHS.length)]!,
      "content-type": CONTENT_TYPES[rnd(CONTENT_TYPES.length)]!,
    };
    if (rnd(3) === 0) headers["grpc-timeout"] = ["1m", "99999999H", "0m", "x", "5S", "-1m"][rnd(6)]!;
    if (rnd(4) === 0) headers["grpc-encoding"] = ["gzip", "br", "identity", "zz"][rnd(4)]!;
    if (rnd(6) === 0) headers["connect-timeout-ms"] = ["0", "9999999999", "abc"][rnd(3)]!;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = session.request(headers);
    } catch {
      return resolve(); // the session is already gone
    }
    stream.on("error", () => {});
    stream.on("data", () => {});
    const timer = setTimeout(() => stream.close(), 2_000);
    stream.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
    const body = Buffer.alloc(rnd(64));
    for (let i = 0; i < body.length; i++) body[i] = rnd(256);
    if (rnd(2) && body.length >= 5) {
      body[0] = rnd(3); // flags: 0, compressed, or an unknown bit
      body.writeUInt32BE(rnd(2) ? body.length - 5 : rnd(1 << 30), 1); // an honest or a lying length
    }
    switch (rnd(6)) {
      case 0:
        return void stream.end(body);
      case 1:
        stream.write(body);
        return void setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), rnd(50));
      case 2:
        stream.write(body);
        return void setTimeout(() => session.destroy(), rnd(30));
      case 3:
        return void stream.end(Buffer.concat([body, body, body]));
      case 4:
        return void stream.write(body); // never ends: the read timeout's business
      default:
        return void stream.end();
    }
  });
}

describe("hostile HTTP/2 traffic", () => {
  it("leaves the process up, answering, and writing only JSON log lines", async () => {
    const proc = await spawnAuthority({ TESSERA_READ_TIMEOUT: "500ms", TESSERA_LOG_LEVEL: "warn" });
    try {
      const rnd = prng(0x7e55e7a);
      const until = Date.now() + 4_000;
      let streams = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (Date.now() < until) {
            const session = http2.connect(proc.url);
            session.on("error", () => {});
            await Promise.all(Array.from({ length: 10 }, () => hostileStream(session, rnd).then(() => void streams++)));
            session.destroy();
          }
        }),
      );
      expect(streams).toBeGreaterThan(500);

      const health = await fetch(`${proc.url}/healthz`);
      expect(health.status).toBe(200);
      const c = connectClients("connect-grpc", proc.url);
      try {
        const token = (await c.tokens.issue({ subject: "after-the-storm" })).tokens!.accessToken;
        expect((await c.tokens.introspect({ token })).active).toBe(true);
      } finally {
        c.close();
      }
      await proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      const notJson = [...proc.stdout, ...proc.stderr].filter((line) => line.trim() !== "" && !line.startsWith("{"));
      expect(notJson).toEqual([]);
    } finally {
      await proc.kill("SIGKILL");
    }
  });
});
