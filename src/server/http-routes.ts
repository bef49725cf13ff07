/**
 * Plain HTTP routes beside the RPCs: liveness, readiness, metrics, the JWKS and (on the authority) the operator
 * console's static files (src/server/console.ts). An RPC (a POST in a gRPC, gRPC-Web or Connect content type) to a
 * service or method this server does not have, or to a path that is not an RPC's at all (a client given a base URL
 * with a path prefix, a method name with a slash too many), is UNIMPLEMENTED in its protocol's own form (gRPC and
 * gRPC-Web: a trailers-only status; Connect: 404 with a Connect error body), so every client reports it as such,
 * where a bare 405 reads as "unknown". Everything else is 404, or 405 for a method a route does not take.
 */
import { createHash } from "node:crypto";
import type { JWK } from "jose";
import { guarded, percentEncode } from "./stream-writes.js";
import type { RequestHandler } from "./listener.js";

export interface HttpRouteDeps {
  jwks: () => JWK[];
  /** How long verifiers may cache the JWKS (TESSERA_JWKS_MAX_AGE), announced as Cache-Control max-age; default 300. */
  jwksMaxAgeSeconds?: number | undefined;
  /** Whether to take traffic now (store reachable, not shutting down): GET /readyz. */
  ready: () => boolean;
  /** Prometheus exposition: GET /metrics. */
  metrics?: { render(): Promise<string>; readonly contentType: string };
  /** The RPC services this server has (type names), to tell an unknown method from an unknown service. */
  services?: () => ReadonlySet<string>;
  /** The operator console (src/server/console.ts): answers every /console path, and only those. */
  console?: (req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1]) => boolean;
}

const RPC_PATH = /^\/([A-Za-z_][\w.]*)\/([A-Za-z_]\w*)$/;
const GRPC = /^application\/grpc(?:-web(?:-text)?)?(?:[+;].*)?$/i;
const CONNECT = /^application\/(?:connect\+)?(?:proto|json)(?:;.*)?$/i;
/** The plain routes' paths: a POST to one of them is 405 whatever its content type. */
const PLAIN_PATHS = new Set(["/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"]);
/** How much of a path that is no RPC's an UNIMPLEMENTED message repeats. */
const PATH_SHOWN = 100;

export function httpRoutes(deps: HttpRouteDeps): RequestHandler {
  return (req, res) => {
    const path = (req.url ?? "/").split("?", 1)[0] ?? "/";
    const contentType = String(req.headers["content-type"] ?? "");
    const isRpc = req.method === "POST" && (GRPC.test(contentType) || CONNECT.test(contentType));
    const rpc = isRpc ? RPC_PATH.exec(path) : null;
    if (rpc) {
      const [, service = "", method = ""] = rpc;
      return unimplemented(req, res, deps.services?.().has(service) ? `unknown method ${method} for service ${service}` : `unknown service ${service}`);
    }
    if (deps.console?.(req, res)) return;
    if (isRpc && !PLAIN_PATHS.has(path)) {
      const shown = path.length > PATH_SHOWN ? `${path.slice(0, PATH_SHOWN)}...` : path;
      return unimplemented(req, res, `no RPC at ${shown}: an RPC's path is /<package>.<Service>/<Method>`);
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
        const cacheControl = `public, max-age=${deps.jwksMaxAgeSeconds ?? 300}`;
        const body = JSON.stringify({ keys: deps.jwks() });
        const etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
        if (req.headers["if-none-match"] === etag) {
          res.writeHead(304, { etag, "cache-control": cacheControl });
          return void res.end();
        }
        res.writeHead(200, { "content-type": "application/jwk-set+json", etag, "cache-control": cacheControl });
        return void (req.method === "HEAD" ? res.end() : res.end(body));
      }
      default:
        return send(res, 404, { error: "not found" });
    }
  };
}

/**
 * Every RPC takes POST only. connect-node serves the Connect protocol's GET form for a method marked
 * `idempotency_level = NO_SIDE_EFFECTS` (Introspect, ListSessions, GetSession, ...): the request, a token or a
 * subject among it, then travels in the URL, which access logs, proxies and browser
 * histories keep, and a shared cache may answer it again after a revocation. No client of Tessera needs GET, so a
 * request for an RPC path (`rpcPaths`: the paths connect-node routes, matched exactly as it matches them) with any
 * method but POST is answered here, before connect-node reads anything: HTTP 405 with `Allow: POST` (RFC 9110 15.5.6)
 * and a Connect error body with code "unimplemented" (what Connect clients report; a bare 405, connect-node's own
 * answer, reads as "unknown"). The idempotency option stays in the protos: clients use it to retry. Returns whether it
 * answered.
 */
export function refuseNonPost(req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1], rpcPaths: ReadonlySet<string>): boolean {
  if (req.method === "POST" || !rpcPaths.has((req.url ?? "").split("?", 1)[0] ?? "")) return false;
  res.writeHead(405, { allow: "POST", "content-type": "application/json", "cache-control": "no-store" });
  if (req.method === "HEAD") res.end();
  else res.end(JSON.stringify({ code: "unimplemented", message: `${req.method} is not allowed: RPCs take POST` }));
  return true;
}

/** UNIMPLEMENTED in the request's protocol: gRPC and gRPC-Web a trailers-only status, Connect 404 and an error body. */
function unimplemented(req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1], message: string): void {
  const contentType = String(req.headers["content-type"]);
  if (!GRPC.test(contentType)) return send(res, 404, { code: "unimplemented", message });
  const headers = { "content-type": contentType, "grpc-status": "12", "grpc-message": percentEncode(message) };
  // HTTP/2: trailers-only, the status in a HEADERS frame that ends the stream (grpc-js reads it only so).
  if ("stream" in res) return guarded(res.stream, () => res.stream.respond({ ":status": 200, ...headers }, { endStream: true }));
  res.writeHead(200, headers);
  res.end();
}

function send(res: Parameters<RequestHandler>[1], status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}
