/** Connect interceptors: error mapping and one log line per RPC. */
import { Code, type Interceptor } from "@connectrpc/connect";
import { randomId } from "../domain/ids.js";
import { callerKey, requestIdKey } from "./context.js";
import type { Logger } from "../observability/logger.js";
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
    const requestId = given !== null && REQUEST_ID.test(given) ? given : randomId();
    req.contextValues.set(requestIdKey, requestId);
    const fields = () => ({
      rpc: { service: req.service.typeName, method: req.method.name },
      requestId,
      caller: req.contextValues.get(callerKey)?.name,
    });
    try {
      const res = await next(req);
      logger.info({ ...fields(), code: "ok", ms: elapsed(started) }, "rpc");
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
