/** Per-request values carried in Connect's context (set by interceptors, read by handlers and the log line). */
import { createContextKey } from "@connectrpc/connect";

import type { Permission } from "../domain/permissions.js";

export interface Caller {
  /** The caller's configured name; goes into every log line and audit record it causes. */
  name: string;
  permissions: ReadonlySet<Permission>;
  /** How it was identified. "open": no callers configured and the service runs open on loopback. */
  via: "api_key" | "mtls" | "open";
}

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });
export const requestIdKey = createContextKey<string>("", { description: "request id" });
