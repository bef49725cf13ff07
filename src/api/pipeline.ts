/** The interceptor chain every RPC passes through, outermost first. */
import type { Interceptor } from "@connectrpc/connect";
import type { Logger } from "../observability/logger.js";
import { rpcLogging } from "./interceptors.js";

export interface PipelineDeps {
  logger: Logger;
  /** Caller authentication and authorization (src/api/auth.ts); absent only in tests of other layers. */
  auth?: Interceptor;
  /** Further interceptors that run inside logging and auth (metrics, limits). */
  inner?: Interceptor[];
}

export function interceptorsFor(deps: PipelineDeps): Interceptor[] {
  return [rpcLogging(deps.logger), ...(deps.auth ? [deps.auth] : []), ...(deps.inner ?? [])];
}
