/**
 * The sidecar's composition root (`npm run sidecar`): a process next to a service that answers Introspect for access
 * tokens locally, from the authority's JWKS and a live copy of its revocation feed, and Envoy's ext_authz Check. It
 * shares with the authority the listener and both request paths (src/server/serve.ts), the pipeline (caller
 * authentication, deadlines, metrics, the rpc log line) and the Introspector; only where the revocation state comes
 * from differs. It fails closed: NOT_SERVING, and UNAVAILABLE for every answer that needs the feed, until the first
 * snapshot is in and whenever the feed has been silent longer than TESSERA_SIDECAR_MAX_STALENESS.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Gauge } from "prom-client";
import { Authorization } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { RevocationService } from "../../gen/tessera/v1/revocation_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { callerAuth } from "../api/auth.js";
import { Pipeline } from "../api/pipeline.js";
import { entry } from "../api/routes.js";
import { systemClock, type Clock } from "../domain/clock.js";
import { TesseraError } from "../domain/errors.js";
import { Introspector } from "../domain/introspect.js";
import { TokenVerifier } from "../domain/tokens.js";
import { createLogger, type Logger } from "../observability/logger.js";
import { Metrics } from "../observability/metrics.js";
import { Readiness } from "../server/readiness.js";
import { serve } from "../server/serve.js";
import type { SidecarConfig } from "./config.js";
import { envoyAuthorization } from "./envoy.js";
import { FeedFollower, authorityTransport } from "./feed.js";
import { JwksKeys } from "./jwks.js";
import { RevocationIndex } from "./revocations.js";
import { sidecarTokenService } from "./token-service.js";

export interface Sidecar {
  listen(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  readonly follower: FeedFollower;
  readonly index: RevocationIndex;
  readonly jwks: JwksKeys;
  readonly readiness: Readiness;
  readonly metrics: Metrics;
  readonly logger: Logger;
}

export async function createSidecar(config: SidecarConfig, opts: { logger?: Logger; clock?: Clock } = {}): Promise<Sidecar> {
  const logger = opts.logger ?? createLogger(config.logLevel);
  const clock = opts.clock ?? systemClock;
  const metrics = new Metrics();
  const authorityUrl = config.authority.url.href;
  const transport = authorityTransport(config.authority);
  const index = new RevocationIndex(() => clock.now(), config.tokens.clockSkewMs);
  let jwksFailing = false;
  let jwksEmpty = false;
  const jwks = new JwksKeys({
    url: config.authority.url,
    tls: config.authority.tls,
    // An authority signing with HS256 publishes no key: nothing it signs can be verified here.
    onLoaded: (kids) => {
      if (kids.length === 0 && !jwksEmpty) {
        logger.warn(
          { authority: authorityUrl },
          "the authority's JWKS holds no key this sidecar can verify with (an authority on TESSERA_SIGNING_ALG=HS256 publishes none): its tokens read as inactive here (UNKNOWN_KEY); send them to the authority's Introspect",
        );
      }
      jwksEmpty = kids.length === 0;
    },
    onError: (err) => {
      if (!jwksFailing) logger.warn({ err, authority: authorityUrl }, "cannot fetch the authority's JWKS: keeping the keys held");
      jwksFailing = true;
    },
  });
  const follower = new FeedFollower({
    index,
    client: createClient(RevocationService, transport),
    maxStalenessMs: config.maxStalenessMs,
    now: () => clock.now(),
    onEvent: (e) => {
      if (e.type === "current") logger.info({ authority: authorityUrl, held: index.size }, "revocation feed snapshot in: serving");
      else if (e.type === "snapshot_restart") logger.warn("revocation feed cursor too old: taking a new snapshot");
      else if (e.type === "disconnected") logger.warn({ err: e.err, retryInMs: e.retryInMs }, "revocation feed lost: reconnecting");
    },
  });
  const introspector = new Introspector({
    // The JWKS's keys, less any the feed says were revoked (before the next JWKS fetch drops them too).
    verifier: new TokenVerifier({ lookup: (kid) => jwks.lookup(kid), isRevoked: (kid) => index.keyRevoked(kid) }, config.tokens),
    clock,
    state: {
      // Without a fresh feed there is no answer that cannot miss a revocation: UNAVAILABLE, as the authority answers
      // when its store is down.
      tokenState: async (q) => {
        if (!follower.fresh()) {
          throw new TesseraError("unavailable", "revocation feed stale: the sidecar has not heard from the authority in time");
        }
        return index.stateOf(q);
      },
    },
  });
  sidecarMetrics(metrics, follower, index);
  const readiness = new Readiness({
    store: {
      ping: async () => {
        if (!jwks.loaded) throw new Error("no JWKS from the authority yet");
        if (!follower.fresh()) throw new Error("revocation feed not current");
      },
    },
    intervalMs: 100,
    onStoreChange: (up) => (up ? logger.info("serving") : logger.warn("not serving: JWKS or revocation feed missing or stale")),
  });
  const onIntrospect = metrics.countIntrospection;
  const api = [
    entry(
      TokenService,
      sidecarTokenService({
        introspector,
        authority: createClient(TokenService, transport),
        authorityUrl,
        maxTokenLength: config.tokens.maxTokenLength,
        onIntrospect,
      }),
    ),
    entry(
      Authorization,
      envoyAuthorization({
        introspect: async (token, audience) => {
          const r = await introspector.introspect(token, "access", audience ?? config.envoyAudience);
          onIntrospect(r.active ? "active" : r.reason);
          if (!r.active) return { active: false, reason: r.reason };
          return { active: true, subject: r.token.subject, scopes: r.token.scopes, sessionId: r.token.sessionId };
        },
      }),
    ),
  ];
  const pipeline = new Pipeline({
    logger,
    authorize: callerAuth(config.access.callers ? { callers: config.access.callers } : { open: true }),
    metrics,
    maxTimeoutMs: config.server.maxTimeoutMs,
  });
  const { listener, cancelCalls } = serve(config.server, { api, pipeline, jwks: () => jwks.publicKeys(), jwksMaxAgeSeconds: 60, readiness, metrics });
  if (config.access.callers === undefined) logger.warn({ auth: "open" }, "no TESSERA_CALLERS_FILE: every caller is let in");

  let closed: Promise<void> | undefined;
  return {
    follower,
    index,
    jwks,
    readiness,
    metrics,
    logger,
    async listen() {
      readiness.start();
      void jwks.refresh().catch(() => {});
      follower.start();
      return listener.listen();
    },
    close() {
      closed ??= (async () => {
        // As the authority: NOT_SERVING while still answering for TESSERA_SHUTDOWN_DELAY, then the drain (health
        // Watch streams end UNAVAILABLE, new calls refused, connections asked to close).
        readiness.stop();
        const delayMs = config.server.shutdownDelayMs;
        if (delayMs > 0) logger.info({ delayMs }, "not ready: serving on for TESSERA_SHUTDOWN_DELAY, then draining");
        await readiness.notServingFor(delayMs);
        readiness.drain();
        pipeline.close();
        listener.drain();
        await Promise.race([pipeline.idle(), new Promise((r) => setTimeout(r, config.server.shutdownGraceMs).unref())]);
        cancelCalls(new ConnectError("server is shutting down", Code.Unavailable));
        await follower.stop();
        jwks.close();
        index.close();
        await Promise.race([listener.closed(), new Promise((r) => setTimeout(r, 2_000).unref())]);
        listener.destroy();
      })();
      return closed;
    },
  };
}

/** The sidecar's own gauges, read when /metrics is scraped. */
function sidecarMetrics(metrics: Metrics, follower: FeedFollower, index: RevocationIndex): void {
  const registers = [metrics.registry];
  const seconds = (ms: number) => (Number.isFinite(ms) ? ms / 1000 : -1);
  new Gauge({
    name: "tessera_sidecar_feed_silence_seconds",
    help: "Seconds since the revocation feed last left the sidecar current (a change or a heartbeat); -1 before the first time.",
    registers,
    collect() {
      this.set(seconds(follower.sinceCurrentMs));
    },
  });
  new Gauge({
    name: "tessera_sidecar_last_revocation_seconds",
    help: "Seconds since the last revocation arrived from the feed; -1 if none has.",
    registers,
    collect() {
      this.set(seconds(follower.sinceEventMs));
    },
  });
  new Gauge({
    name: "tessera_sidecar_feed_lag_seconds",
    help: "Receive time of the last feed message minus the authority's time of reading it (includes clock offset).",
    registers,
    collect() {
      this.set(follower.feedLagMs / 1000);
    },
  });
  new Gauge({
    name: "tessera_sidecar_revocations_held",
    help: "Revocations held in memory, by kind (jti, session or key); each leaves at its expiry.",
    labelNames: ["kind"] as const,
    registers,
    collect() {
      const { jtis, sessions, keys } = index.size;
      this.set({ kind: "jti" }, jtis);
      this.set({ kind: "session" }, sessions);
      this.set({ kind: "key" }, keys);
    },
  });
  new Gauge({
    name: "tessera_sidecar_fresh",
    help: "1 while the sidecar answers (snapshot in, feed within TESSERA_SIDECAR_MAX_STALENESS), 0 otherwise.",
    registers,
    collect() {
      this.set(follower.fresh() ? 1 : 0);
    },
  });
}
