/** Connect interceptors: error mapping and logging, metrics, deadlines, in-flight tracking. */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { randomUUID } from "node:crypto";
import { callerKey, requestIdKey } from "./context.js";
import type { Logger } from "../observability/logger.js";
import type { Metrics } from "../observability/metrics.js";
import { toConnectError } from "./errors.js";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Wraps every call: turns domain errors into ConnectErrors with the right code and a safe message, and logs one line
 * with service, method, code, duration and request id (x-request-id if the caller sent a sane one).
 */
export function rpcLogging(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const started = performance.now();
    const given = req.header.get("x-request-id");
    const requestId = given !== null && REQUEST_ID.test(given) ? given : randomUUID();
    req.contextValues.set(requestIdKey, requestId);
    const fields = () => ({
      rpc: { service: req.service.typeName, method: req.method.name },
      requestId,
      caller: req.contextValues.get(callerKey)?.name,
    });
    try {
      const res = await next(req);
      // Health probes arrive every few seconds from every load balancer: keep them out of the info log.
      const level = req.service.typeName === "grpc.health.v1.Health" ? "debug" : "info";
      // Build the line only if it is written (at TESSERA_LOG_LEVEL=warn, the busy path builds nothing).
      if (logger.isLevelEnabled(level)) logger[level]({ ...fields(), code: "ok", ms: elapsed(started) }, "rpc");
      return res;
    } catch (e) {
      const err = toConnectError(e);
      const line = { ...fields(), code: Code[err.code], ms: elapsed(started), err: err.cause ?? err };
      if (err.code === Code.Internal) logger.error(line, "rpc failed");
      else if (err.code === Code.Unavailable) logger.warn(line, "rpc failed");
      else logger.info(line, "rpc failed");
      throw err;
    }
  };
}

function elapsed(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1000;
}

/** Counts and times every RPC by service, method and code. */
export function rpcMetrics(metrics: Metrics): Interceptor {
  return (next) => async (req) => {
    const labels = { service: req.service.typeName, method: req.method.name };
    const end = metrics.rpcDuration.startTimer(labels);
    let code = "OK";
    try {
      return await next(req);
    } catch (e) {
      code = Code[toConnectError(e).code] ?? "Unknown";
      throw e;
    } finally {
      end({ code });
      metrics.rpcTotal.inc({ ...labels, code });
    }
  };
}

/**
 * Ends the call as soon as its signal fires (the caller's deadline, the caller going away, or shutdown) instead of
 * waiting for the handler, and at the latest after `maxTimeoutMs` whatever deadline the caller asked for (connect's
 * own maxTimeoutMs would refuse such callers with INVALID_ARGUMENT instead). The store's own timeout bounds whatever
 * is still running underneath.
 */
export function honourSignal(maxTimeoutMs: number): Interceptor {
  return (next) => async (req) => {
    const signal = req.signal;
    if (signal.aborted) throw ConnectError.from(signal.reason, Code.Canceled);
    let onAbort = () => {};
    let timer: NodeJS.Timeout | undefined;
    const ended = new Promise<never>((_, reject) => {
      onAbort = () => reject(ConnectError.from(signal.reason, Code.Canceled));
      signal.addEventListener("abort", onAbort, { once: true });
      timer = setTimeout(
        () => reject(new ConnectError(`server time limit of ${maxTimeoutMs}ms exceeded`, Code.DeadlineExceeded)),
        maxTimeoutMs,
      );
    });
    try {
      return await Promise.race([next(req), ended]);
    } finally {
      signal.removeEventListener("abort", onAbort);
      clearTimeout(timer);
    }
  };
}

/** Tracks calls in flight so shutdown can wait for them, and refuses new ones once shutdown has begun. */
export class InFlight {
  private count = 0;
  private closing = false;
  private waiters: Array<() => void> = [];

  readonly interceptor: Interceptor = (next) => async (req) => {
    if (this.closing) throw new ConnectError("server is shutting down", Code.Unavailable);
    this.count++;
    try {
      return await next(req);
    } finally {
      if (--this.count === 0) for (const w of this.waiters.splice(0)) w();
    }
  };

  get size(): number {
    return this.count;
  }

  /** Refuse new calls from now on. */
  close(): void {
    this.closing = true;
  }

  /** Resolves when no call is in flight. */
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((r) => this.waiters.push(r));
  }
}
