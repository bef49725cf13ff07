/**
 * Plain HTTP routes beside the RPCs: liveness, readiness, metrics and the JWKS. A request that looks like an RPC to a
 * service or method this server does not have is UNIMPLEMENTED in its protocol's own form (gRPC and gRPC-Web: a
 * trailers-only status; Connect: 404 with a Connect error body), so every client reports it as such. Everything else
 * is 404.
 */
import { createHash } from "node:crypto";
import type { JWK } from "jose";
import { guarded, percentEncode } from "./stream-writes.js";
import type { RequestHandler } from "./listener.js";

export interface HttpRouteDeps {
  jwks: () => JWK[];
  /** Whether to take traffic now (store reachable, not shutting down): GET /readyz. */
  ready: () => boolean;
  /** Prometheus exposition: GET /metrics. */
  metrics?: { render(): Promise<string>; readonly contentType: string };
  /** The RPC services this server has (type names), to tell an unknown method from an unknown service. */
  services?: () => ReadonlySet<string>;
}

const RPC_PATH = /^\/([A-Za-z_][\w.]*)\/([A-Za-z_]\w*)$/;
const GRPC = /^application\/grpc(?:-web(?:-text)?)?(?:[+;].*)?$/i;
const CONNECT = /^application\/(?:connect\+)?(?:proto|json)(?:;.*)?$/i;

export function httpRoutes(deps: HttpRouteDeps): RequestHandler {
  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const rpc = RPC_PATH.exec(path);
    const contentType = String(req.headers["content-type"] ?? "");
    if (rpc && req.method === "POST" && (GRPC.test(contentType) || CONNECT.test(contentType))) {
      const [, service = "", method = ""] = rpc;
      const message = deps.services?.().has(service) ? `unknown method ${method} for service ${service}` : `unknown service ${service}`;
      if (GRPC.test(contentType)) {
        const headers = { "content-type": contentType, "grpc-status": "12", "grpc-message": percentEncode(message) };
        // HTTP/2: trailers-only, the status in a HEADERS frame that ends the stream (grpc-js reads it only so).
        if ("stream" in res) return guarded(res.stream, () => res.stream.respond({ ":status": 200, ...headers }, { endStream: true }));
        res.writeHead(200, headers);
        return void res.end();
      }
      return send(res, 404, { code: "unimplemented", message });
    }
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, { error: "method not allowed" });
    switch (path) {
      case "/healthz":
        return send(res, 200, { status: "ok" });
      case "/metrics": {
        const metrics = deps.metrics;
        if (!metrics) return send(res, 404, { error: "not found" });
        metrics.render().then(
          (body) => {
            res.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" });
            res.end(body);
          },
          () => send(res, 500, { error: "metrics unavailable" }),
        );
        return;
      }
      case "/readyz":
        return deps.ready() ? send(res, 200, { status: "ready" }) : send(res, 503, { status: "not ready" });
      case "/.well-known/jwks.json": {
        const body = JSON.stringify({ keys: deps.jwks() });
        const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
        if (req.headers["if-none-match"] === etag) {
          res.writeHead(304, { etag, "cache-control": "public, max-age=300" });
          return void res.end();
        }
        res.writeHead(200, { "content-type": "application/jwk-set+json", etag, "cache-control": "public, max-age=300" });
        return void (req.method === "HEAD" ? res.end() : res.end(body));
      }
      default:
        return send(res, 404, { error: "not found" });
    }
  };
}

function send(res: Parameters<RequestHandler>[1], status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}
