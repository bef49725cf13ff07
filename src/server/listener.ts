/**
 * One TCP port, two protocols without TLS: a connection that opens with the HTTP/2 preface goes to the HTTP/2
 * server (gRPC, Connect, gRPC-Web over h2c), anything else to the HTTP/1.1 server (Connect, gRPC-Web, curl, probes).
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";

/** The request handler shape connect-node produces and accepts as a fallback (http or http2). */
export type RequestHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;

export interface ListenerOptions {
  host: string;
  port: number;
  handler: RequestHandler;
  /** HTTP/2 settings: at most this many concurrent streams per connection. */
  maxConcurrentStreams?: number;
  /** Connections with no traffic for this long are closed. */
  idleTimeoutMs?: number;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export class Listener {
  private readonly tcp: net.Server;
  private readonly h2: http2.Http2Server;
  private readonly h1: http.Server;
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly opts: ListenerOptions) {
    this.h2 = http2.createServer(
      {
        settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 },
        maxSessionMemory: 32,
      },
      opts.handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    this.h2.on("session", (s) => {
      this.sessions.add(s);
      s.once("close", () => this.sessions.delete(s));
    });
    this.h1 = http.createServer(
      { requestTimeout: 30_000, headersTimeout: 10_000 },
      opts.handler as (req: http.IncomingMessage, res: http.ServerResponse) => void,
    );
    this.h1.keepAliveTimeout = 5_000;
    this.tcp = net.createServer((socket) => this.route(socket));
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.tcp.once("error", reject);
      this.tcp.listen(this.opts.port, this.opts.host, () => {
        this.tcp.off("error", reject);
        const addr = this.tcp.address() as net.AddressInfo;
        resolve({ host: addr.address, port: addr.port });
      });
    });
  }

  /** Stops accepting connections and asks open ones to finish (HTTP/2 GOAWAY, HTTP/1.1 close when idle). */
  drain(): void {
    this.tcp.close();
    for (const s of this.sessions) if (!s.closed) s.close();
    this.h1.closeIdleConnections();
  }

  /** Closes every connection now. */
  destroy(): void {
    this.tcp.close();
    for (const s of this.sessions) s.destroy();
    for (const sock of this.sockets) sock.destroy();
    this.h1.closeAllConnections();
  }

  /** Open connections (for shutdown bookkeeping). */
  get connections(): number {
    return this.sockets.size;
  }

  private route(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    socket.setTimeout(this.opts.idleTimeoutMs ?? 120_000, () => socket.destroy());
    socket.on("error", () => socket.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, PREFACE.length);
      const isH2 = head.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isH2 && head.length < PREFACE.length) return; // need more bytes to decide
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      // node:http2 feeds bytes already buffered on the socket to the new session itself; HTTP/1.1 needs a resume.
      if (isH2) this.h2.emit("connection", socket);
      else {
        this.h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  }
}
