/**
 * The one port of a Tessera server (the authority, or a sidecar): every HTTP/2 stream goes to the lean unary gRPC path
 * when it takes it (TESSERA_GRPC_FAST_PATH), everything else to connect-node, with health, reflection and the plain
 * HTTP routes. Both paths run the same pipeline.
 */
import { setMaxListeners } from "node:events";
import { createContextValues, type ConnectError } from "@connectrpc/connect";
import { compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import type { JWK } from "jose";
import { peerIdentityKey } from "../api/auth.js";
import { peerAddressKey } from "../api/context.js";
import { connectInterceptor, type Pipeline } from "../api/pipeline.js";
import { routes, unaryMethods, type ServiceEntry } from "../api/routes.js";
import type { ServerConfig } from "../config/config.js";
import type { Metrics } from "../observability/metrics.js";
import { capDeadline, PendingBytes, streamDispatcher } from "./dispatch.js";
import { grpcUnaryHandler } from "./grpc-unary.js";
import { httpRoutes, refuseNonPost, type HttpRouteDeps } from "./http-routes.js";
import { Listener } from "./listener.js";
import { peerIdentity, socketIdentity } from "./peer.js";
import type { Readiness } from "./readiness.js";
import { standardRoutes } from "./standard-routes.js";

export function serve(
  config: ServerConfig,
  parts: {
    api: ServiceEntry[];
    pipeline: Pipeline;
    jwks: () => JWK[];
    /** Cache-Control max-age of the JWKS route (TESSERA_JWKS_MAX_AGE; the sidecar: its own refresh interval). */
    jwksMaxAgeSeconds?: number;
    readiness: Readiness;
    metrics: Metrics;
    /** The operator console's route (src/server/console.ts); the authority has one, the sidecar none. */
    console?: HttpRouteDeps["console"];
  },
): { listener: Listener; cancelCalls: (err: ConnectError) => void } {
  const { api, pipeline, jwks, jwksMaxAgeSeconds, readiness, metrics, console: operatorConsole } = parts;
  const { maxRequestBytes, maxTimeoutMs, readTimeoutMs } = config;
  const shutdown = new AbortController();
  setMaxListeners(0, shutdown.signal); // connect-node links every call's signal to it
  let streamingRequestPaths = new Set<string>();
  let rpcServices = new Set<string>();
  let rpcPaths = new Set<string>();
  const connectHandler = connectNodeAdapter({
    routes: (router) => {
      routes(api)(router);
      standardRoutes({ readiness })(router); // last: health and reflection cover every service registered before
      rpcServices = new Set(router.handlers.map((h) => h.service.typeName));
      rpcPaths = new Set(router.handlers.map((h) => h.requestPath));
      streamingRequestPaths = new Set(
        router.handlers.filter((h) => h.method.methodKind === "client_streaming" || h.method.methodKind === "bidi_streaming").map((h) => h.requestPath),
      );
    },
    interceptors: [connectInterceptor(pipeline)],
    contextValues: (req) =>
      createContextValues().set(peerIdentityKey, peerIdentity(req)).set(peerAddressKey, req.socket?.remoteAddress ?? ""),
    acceptCompression: [compressionGzip],
    readMaxBytes: maxRequestBytes,
    shutdownSignal: shutdown.signal,
    fallback: httpRoutes({ jwks, jwksMaxAgeSeconds, ready: () => readiness.serving, metrics, services: () => rpcServices, console: operatorConsole }),
  });
  const lean = config.grpcFastPath
    ? grpcUnaryHandler({
        methods: unaryMethods(api),
        pipeline,
        maxRequestBytes,
        contextValues: (stream) => {
          const socket = stream.session?.socket;
          return createContextValues().set(peerIdentityKey, socketIdentity(socket)).set(peerAddressKey, socket?.remoteAddress ?? "");
        },
      })
    : undefined;
  const pending = new PendingBytes(config.maxPendingBytes);
  metrics.pendingRequestBytes(() => pending.held);
  const listener = new Listener({
    ...config.listen,
    tls: config.tls,
    readTimeoutMs,
    maxConnections: config.maxConnections,
    // Both sets are read when a stream arrives, after connect-node has built its router.
    stream: streamDispatcher({ lean, readTimeoutMs, maxTimeoutMs, streamsRequests: (path) => streamingRequestPaths.has(path), pending }),
    handler: (req, res) => {
      if (refuseNonPost(req, res, rpcPaths)) return; // no RPC by GET: tokens stay out of URLs (both HTTP versions)
      if (req.httpVersionMajor === 1) capDeadline(req.headers, maxTimeoutMs); // HTTP/2 streams: by the dispatcher
      connectHandler(req as never, res as never);
    },
  });
  return {
    listener,
    cancelCalls: (err) => {
      pipeline.cancelAll(err);
      shutdown.abort(err);
    },
  };
}

