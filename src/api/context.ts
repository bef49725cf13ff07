/** Per-request values carried in Connect's context (set by interceptors, read by handlers and the log line). */
import { createContextKey, type ConnectError, type HandlerContext } from "@connectrpc/connect";

import type { SubjectScope } from "../config/callers.js";
import type { Permission } from "../domain/permissions.js";

export interface Caller {
  /** The caller's configured name; goes into every log line and audit record it causes. */
  name: string;
  permissions: ReadonlySet<Permission>;
  /** How it was identified. "open": no callers configured and the service runs open on loopback. */
  via: "api_key" | "mtls" | "open";
  /**
   * The subjects it may act on (`subjects` in the callers file), compiled once when callerAuth is built; undefined:
   * every subject (no `subjects`, `"*"`, or open mode), and then no RPC asks anything more.
   */
  scope?: CallerScope | undefined;
}

/** A caller's subjects, and how a call outside them is refused (src/api/auth.ts requireSubject). */
export interface CallerScope extends SubjectScope {
  /**
   * The refusal of a call whose target is outside the caller's subjects, or unknown: PERMISSION_DENIED with one
   * message whatever the reason, so it tells nothing of whether the target exists; recorded as a caller_denied audit
   * event. `subject`: the target's subject, when known (for the audit trail); `why`: for the log and audit only.
   */
  refuse(ctx: HandlerContext, about: { subject?: string | undefined; client?: unknown; why: string }): ConnectError;
}

export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "authenticated caller" });
export const requestIdKey = createContextKey<string>("", { description: "request id" });
/**
 * The TCP peer's address, set by the server for every call on either path (src/server/serve.ts) from the socket, never
 * from a header: refusals name their peer with it, and repeats from one peer fold into one stored audit event.
 */
export const peerAddressKey = createContextKey<string>("", { description: "TCP peer address" });
