/**
 * One TCP port, two protocols without TLS: a connection that opens with the HTTP/2 preface goes to the HTTP/2
 * server (gRPC, Connect, gRPC-Web over h2c), anything else to the HTTP/1.1 server (Connect, gRPC-Web, curl, probes).
 * With TLS, every connection goes to one TLS server that picks HTTP/2 or HTTP/1.1 by ALPN; with a client CA it asks
 * for a client certificate but lets connections without a valid one through (src/server/peer.ts decides identity).
 */
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { interceptStreams } from "./dispatch.js";
import type { StreamHandler } from "./grpc-unary.js";

/** The request handler shape connect-node produces and accepts as a fallback (http or http2). */
export type RequestHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;

export interface ListenerOptions {
  host: string;
  port: number;
  handler: RequestHandler;
  /** Sees every HTTP/2 stream first (src/server/dispatch.ts); true: it took the stream, `handler` never sees it. */
  stream?: StreamHandler | undefined;
  /** HTTP/1.1: the longest time from a request to its complete body (boundHttp1Body); headers get at most 10 s of it. */
  readTimeoutMs?: number | undefined;
  /** HTTP/2 settings: at most this many concurrent streams per connection. */
  maxConcurrentStreams?: number;
  /** Connections with no traffic for this long are closed. */
  idleTimeoutMs?: number;
  /** Open connections at most; one more is closed as soon as it is accepted. */
  maxConnections?: number | undefined;
  /** PEM certificate chain and key; with clientCa, client certificates are requested (never required). */
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer | undefined } | undefined;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * HTTP/1.1, plaintext and over TLS: a request whose body is not complete within `ms` gets 408 (a Connect error body)
 * and its connection closes. (node's own requestTimeout is enforced only on servers that listen themselves, which
 * neither of ours does.)
 */
function boundHttp1Body(req: http.IncomingMessage, res: http.ServerResponse, ms: number): void {
  const timer = setTimeout(() => {
    if (!res.headersSent) {
      res.writeHead(408, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify({ code: "deadline_exceeded", message: `request not received within ${ms}ms` }));
    }
    res.once("finish", () => req.socket.destroy());
    if (res.writableFinished) req.socket.destroy();
  }, ms);
  const clear = () => clearTimeout(timer);
  req.once("end", clear);
  res.once("close", clear);
}

export class Listener {
  private readonly tcp: net.Server;
  private readonly h2: http2.Http2Server;
  private readonly h1: http.Server;
  private readonly secure: http2.Http2SecureServer | undefined;
  /** HTTP/1.1-over-TLS connections -> responses in progress (the secure server has no closeIdleConnections). */
  private readonly tlsHttp1 = new Map<net.Socket, number>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly sockets = new Set<net.Socket>();
  private draining = false;

  constructor(private readonly opts: ListenerOptions) {
    const readTimeoutMs = opts.readTimeoutMs ?? 30_000;
    // node's checks of HTTP/1.1 header time, every second (bodies: boundHttp1Body). node starts them when its server
    // listens, and neither HTTP/1.1 server here does (the TCP server hands them their connections), so 'listening' is
    // emitted for each below: without that, neither timeout was enforced at all.
    const http1Timeouts = { requestTimeout: 0, headersTimeout: Math.min(10_000, readTimeoutMs), connectionsCheckingInterval: 1_000 };
    const h2Options = { settings: { maxConcurrentStreams: opts.maxConcurrentStreams ?? 1000 }, maxSessionMemory: 32 };
    this.h2 = http2.createServer(
      h2Options,
      opts.handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void,
    );
    const track = (s: http2.ServerHttp2Session) => {
      this.sessions.add(s);
      s.once("close", () => this.sessions.delete(s));
    };
    this.h2.on("session", track);
    if (opts.stream) interceptStreams(this.h2, opts.stream);
    if (opts.tls) {
      this.secure = http2.createSecureServer(
        {
          ...h2Options,
          allowHTTP1: true, // ALPN offers h2 and http/1.1
          cert: opts.tls.cert,
          key: opts.tls.key,
          minVersion: "TLSv1.2",
          handshakeTimeout: 10_000,
          ...(opts.tls.clientCa ? { ca: opts.tls.clientCa, requestCert: true, rejectUnauthorized: false } : {}),
        },
        (req, res) => {
          // HTTP/1.1 over TLS (ALPN http/1.1): like this.h1, no keep-alive once draining.
          if (res instanceof http.ServerResponse) {
            if (this.draining) res.shouldKeepAlive = false;
            this.trackTlsHttp1(req.socket, res);
            boundHttp1Body(req as unknown as http.IncomingMessage, res, readTimeoutMs);
          }
          (opts.handler as (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void)(req, res);
        },
      );
      this.secure.on("session", track);
      if (opts.stream) interceptStreams(this.secure, opts.stream);
      // Read by node's HTTP/1.1 code path (allowHTTP1).
      Object.assign(this.secure, { keepAliveTimeout: 5_000, ...http1Timeouts });
      this.secure.emit("listening");
    }
    const h1Handler = opts.handler as (req: http.IncomingMessage, res: http.ServerResponse) => void;
    this.h1 = http.createServer(http1Timeouts, (req, res) => {
      boundHttp1Body(req, res, readTimeoutMs);
      // While draining, HTTP/1.1 keep-alive connections close after their current response.
      if (this.draining) res.shouldKeepAlive = false;
      h1Handler(req, res);
    });
    this.h1.keepAliveTimeout = 5_000;
    this.h1.emit("listening");
    this.tcp = net.createServer((socket) => this.route(socket));
    if (opts.maxConnections !== undefined) this.tcp.maxConnections = opts.maxConnections;
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
    this.draining = true;
    this.tcp.close();
    for (const s of this.sessions) if (!s.closed) s.close();
    this.h1.closeIdleConnections();
    for (const [socket, busy] of this.tlsHttp1) if (busy === 0) socket.end();
  }

  /** Closes every connection now. */
  destroy(): void {
    this.tcp.close();
    for (const s of this.sessions) s.destroy();
    for (const sock of this.sockets) sock.destroy();
    this.h1.closeAllConnections();
    this.h1.close(); // stops node's header-timeout checks (the server itself never listened)
    this.secure?.close();
  }

  /** Resolves once every connection has closed (after drain(), as their last responses are written). */
  closed(): Promise<void> {
    if (this.sockets.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.sockets.size > 0) return;
        clearInterval(poll);
        resolve();
      };
      const poll = setInterval(() => {
        this.h1.closeIdleConnections();
        check();
      }, 20);
    });
  }

  private trackTlsHttp1(socket: net.Socket, res: http.ServerResponse): void {
    if (!this.tlsHttp1.has(socket)) socket.once("close", () => this.tlsHttp1.delete(socket));
    this.tlsHttp1.set(socket, (this.tlsHttp1.get(socket) ?? 0) + 1);
    res.once("close", () => {
      const busy = this.tlsHttp1.get(socket);
      if (busy !== undefined) this.tlsHttp1.set(socket, busy - 1);
    });
  }

  private route(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => this.sockets.delete(socket));
    socket.setTimeout(this.opts.idleTimeoutMs ?? 120_000, () => socket.destroy());
    socket.on("error", () => socket.destroy());
    if (this.secure) return void this.secure.emit("connection", socket);
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
