/**
 * What the orchestrator (bench/run.ts) asks of the load generator (bench/load.ts) and what it gets back. The spec goes
 * in as the generator's one argument (JSON); events come back as JSON lines on its stdout.
 */

/** The confidential client bench/servers/oidc-peer.ts registers and the generator authenticates as. */
export const OIDC_CLIENT = { clientId: "bench", clientSecret: "bench-secret-0123456789abcdef" };

/** What the generator sends: which server, which calls, how hard and for how long. */
export interface LoadSpec {
  /** The server: gRPC over HTTP/2 (Tessera, the no-op ceilings) or RFC 7662 over HTTP/1.1 (oidc-provider). */
  target: { kind: "grpc"; url: string } | { kind: "oidc"; url: string; clientId: string; clientSecret: string };
  workload: WorkloadName;
  /** Calls in flight at once (closed loop), or the cap on calls in flight (fixed rate). */
  concurrency: number;
  /** gRPC client: the lean transport of bench/lean-transport.ts, or connect-node's createGrpcTransport. */
  client: "lean" | "connect";
  /**
   * Wire protocol for "grpc" targets (default "grpc": gRPC with binary protobuf); "connect-proto" and "connect-json":
   * the Connect protocol's unary POST over HTTP/2 with application/proto or application/json bodies.
   */
  protocol?: Protocol;
  /** HTTP/2 connections the calls are spread over (gRPC targets; HTTP/1.1 uses one connection per call in flight). */
  connections: number;
  /** Calls made before the measurement starts, not recorded. */
  warmupMs: number;
  /** Length of the measurement window. */
  durationMs: number;
  /** Open loop at this many calls per second instead of a closed loop; latency counts from the planned send time. */
  rate?: number;
  /** Make exactly this many calls (no warm-up) and record them all, instead of a timed window. */
  count?: number;
}

export type Protocol = "grpc" | "connect-proto" | "connect-json";

/**
 * Event-loop delay over a measurement window (perf_hooks.monitorEventLoopDelay): how much later than due a repeating
 * timer of `resolutionMs` fired, in milliseconds (the resolution itself subtracted).
 */
export interface LoopDelay {
  resolutionMs: number;
  mean: number;
  p99: number;
  max: number;
  /** Garbage-collector pauses over the same window: how many, their sum and the longest (ms), how many were major. */
  gc: { count: number; totalMs: number; maxMs: number; major: number };
}

export type WorkloadName =
  /** TokenService.Introspect on a no-op server: the same request a valid Introspect sends, an empty answer. */
  | "noop"
  /** Introspect of valid access tokens only. */
  | "introspect-valid"
  /** Introspect, 80 % valid, 10 % revoked, 5 % bad signature, 5 % not a JWT at all. */
  | "introspect-mix"
  /** Issue for a new subject on each call (one session per user, realistic client info). */
  | "issue"
  /** Refresh: each in-flight slot rotates its own session's refresh token chain. */
  | "refresh"
  /** oidc-provider: POST /token/introspection of opaque client-credentials access tokens. */
  | "oidc-introspect";

/** Figures of one measurement. Latencies in milliseconds. */
export interface LoadResult {
  workload: WorkloadName;
  /** Calls completed inside the window (successful or not). */
  requests: number;
  /** Calls that failed or got a wrong answer (an active token reported inactive, ...). */
  errors: number;
  errorSamples: string[];
  seconds: number;
  /** The measurement window, milliseconds since the epoch (to match other processes' records against it). */
  window: { start: number; end: number };
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  max: number;
  /** Answers by outcome (active, or the inactive reason), to show the mix is what it claims. */
  outcomes: Record<string, number>;
  /** Fixed-rate mode: the rate asked for, and the calls not sent because `concurrency` calls were already in flight. */
  offeredRps?: number;
  skipped?: number;
  /** The generator's own event-loop delay over the window. */
  loopDelay?: LoopDelay;
}

/** One line of the generator's stdout. */
export type LoadEvent =
  | { type: "measuring" }
  | { type: "measured" }
  | { type: "result"; result: LoadResult };
