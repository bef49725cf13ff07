/** The interceptor chain every RPC passes through, outermost first. */
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "../observability/logger.js";
import { rpcLogging } from "./interceptors.js";

export function interceptorsFor(logger: Logger): Interceptor[] {
  return [rpcLogging(logger)];
}
