/**
 * grpc.health.v1.Health (https://github.com/grpc/grpc/blob/master/doc/health-checking.md), driven by Readiness.
 *
 * - "" (the whole server) and every service that needs the store: SERVING while the store answers and the process is
 *   not shutting down, NOT_SERVING otherwise.
 * - Services that answer without the store (health, reflection): NOT_SERVING only while shutting down.
 * - Any other name: Check fails NOT_FOUND; Watch sends SERVICE_UNKNOWN and stays open (the set of services is fixed,
 *   so it never becomes known); List gives every known name, "" included.
 * - Shutdown: NOT_SERVING first (Watch streams send it; the port still serves for TESSERA_SHUTDOWN_DELAY), then, when
 *   the drain begins (Readiness.drain), every Watch ends with UNAVAILABLE, a status the client reads, rather than
 *   being cut off with the connection.
 */
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../../gen/grpc/health/v1/health_pb.js";
import type { Readiness } from "./readiness.js";

export interface HealthDeps {
  readiness: Readiness;
  /** Services whose answers need the store (Tessera's own). */
  storeServices: readonly string[];
  /** Services that answer without the store (health, reflection). */
  localServices: readonly string[];
}

export function healthService(deps: HealthDeps): ServiceImpl<typeof Health> {
  const { readiness } = deps;
  const local = new Set(deps.localServices);
  const known = new Set(["", ...deps.storeServices, ...deps.localServices]);
  const statusOf = (service: string): Status => {
    if (!known.has(service)) return Status.SERVICE_UNKNOWN;
    const up = local.has(service) ? !readiness.shuttingDown : readiness.serving;
    return up ? Status.SERVING : Status.NOT_SERVING;
  };

  return {
    check(req) {
      if (!known.has(req.service)) throw new ConnectError("unknown service", Code.NotFound);
      return { status: statusOf(req.service) };
    },

    list() {
      return { statuses: Object.fromEntries([...known].map((name) => [name, { status: statusOf(name) }])) };
    },

    async *watch(req, ctx: HandlerContext) {
      const changes = new Wakeup([ctx.signal, readiness.draining]);
      const unsubscribe = readiness.subscribe(() => changes.wake());
      try {
        let last: Status | undefined;
        while (!ctx.signal.aborted) {
          const now = statusOf(req.service);
          if (now !== last) {
            last = now;
            yield { status: now };
          }
          // After the last status (NOT_SERVING by then), so the watcher has heard it before the stream ends.
          if (readiness.draining.aborted) throw new ConnectError("server is shutting down", Code.Unavailable);
          await changes.next();
        }
      } finally {
        unsubscribe();
        changes.dispose();
      }
    },
  };
}

/** A level-triggered wake-up: next() resolves at once if wake() was called since the last next(), or on an abort. */
class Wakeup {
  private pending = false;
  private resolve: (() => void) | undefined;
  private readonly onAbort = () => this.wake();

  constructor(private readonly signals: readonly AbortSignal[]) {
    for (const signal of signals) signal.addEventListener("abort", this.onAbort, { once: true });
  }

  wake(): void {
    this.pending = true;
    this.resolve?.();
  }

  next(): Promise<void> {
    if (this.pending || this.signals.some((s) => s.aborted)) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.resolve = () => {
        this.resolve = undefined;
        this.pending = false;
        resolve();
      };
    });
  }

  dispose(): void {
    for (const signal of this.signals) signal.removeEventListener("abort", this.onAbort);
    this.resolve?.();
  }
}
