/**
 * From a Connect request to the domain's AuditContext (who called, for which end user), and the one call interceptors
 * make to audit a refused request. The domain never sees Connect types: handlers and interceptors build the context
 * here and pass it on as a plain value.
 */
import type { ContextValues } from "@connectrpc/connect";
import type { AuditContext, AuditType } from "../domain/audit.js";
import type { AuditSink } from "../domain/audit-trail.js";
import type { ClientInfo } from "../domain/store.js";
import { callerKey, peerAddressKey, requestIdKey } from "./context.js";
import type { Call } from "./pipeline.js";
import { ipKey } from "./rate-limit.js";
import * as v from "./validate.js";


/** The end-user client fields a request may carry (tessera.v1.ClientInfo), validated. */
type ClientFields = Pick<ClientInfo, "deviceId" | "userAgent" | "ip">;

/** The audit context of a call: the caller callerAuth identified (empty if none) and the request's validated client. */
export function auditContext(values: ContextValues, client?: ClientFields): AuditContext {
  return {
    caller: values.get(callerKey)?.name ?? "",
    ip: client?.ip ?? "",
    userAgent: client?.userAgent ?? "",
    deviceId: client?.deviceId ?? "",
    requestId: values.get(requestIdKey),
  };
}

/**
 * The audit context of a call as the pipeline sees it, before the handler validated it. The request's own fields
 * (subject, client) are used only once a caller is identified, and only if they pass the edge validation: what an
 * unauthenticated party sends, or anything malformed, never reaches the audit trail.
 */
export function requestAuditContext(call: Call): { context: AuditContext; subject: string } {
  const caller = call.values.get(callerKey);
  const message = caller ? (call.message as { client?: unknown; subject?: unknown } | undefined) : undefined;
  const subject = valid(() => v.subject("subject", message?.subject as string)) ?? "";
  const client = message?.client ? valid(() => v.client("client", message.client as ClientInfo)) : undefined;
  return { context: auditContext(call.values, client), subject };
}

/** The validator's answer, or undefined if it refuses the value. */
function valid<T>(check: () => T): T | undefined {
  try {
    return check();
  } catch {
    return undefined;
  }
}

/**
 * Records a refused call: `caller_denied` (src/api/auth.ts) or `rate_limited` (src/api/rate-limit.ts), naming the
 * caller callerAuth identified, if any, and the peer's address (`detail.peer`). `detail` says why (rpc and reason are
 * added); never put a token or key in it.
 *
 * Every refusal is a log line, but repeats are folded in the stored trail (src/domain/audit-trail.ts): one stored
 * event, then a count, per fold window and key. The key is the peer (an IPv6 address by its /64, as the rate limits
 * count it), the type and code of the refusal, the caller and the RPC, so a party that can reach the port but has no
 * key pushes at most a couple of events per window into the trail, however often it calls.
 */
export function auditRefusal(
  audit: AuditSink | undefined,
  call: Call,
  type: Extract<AuditType, "caller_denied" | "rate_limited">,
  detail: Record<string, string | number | boolean> = {},
): void {
  if (!audit) return;
  const { context, subject } = requestAuditContext(call);
  const rpc = `${call.method.parent.name}.${call.method.name}`;
  const peer = call.values.get(peerAddressKey);
  const foldKey = JSON.stringify([type, peer === "" ? "" : ipKey(peer), String(detail.code ?? ""), context.caller, rpc]);
  audit.record({ type, context, subject, detail: { rpc, ...detail, ...(peer === "" ? {} : { peer }) }, foldKey });
}
