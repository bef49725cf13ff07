/** Every Connect route of Tessera, in one function module. */
import type { ConnectRouter } from "@connectrpc/connect";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import type { Audit } from "../domain/audit-trail.js";
import type { Authority } from "../domain/authority.js";
import type { KeyRing } from "../domain/keys.js";
import { auditService } from "./audit-service.js";
import { keyService } from "./key-service.js";
import type { RequestLimits } from "./rate-limit.js";
import { sessionService } from "./session-service.js";
import { tokenService } from "./token-service.js";

export interface RouteDeps {
  authority: Authority;
  keys: KeyRing;
  maxTokenLength: number;
  /** Told the result of every Introspect: "active" or the inactive reason (for metrics). */
  onIntrospect?: (result: string) => void;
  /** Per-subject and per-IP limits and the refresh lockout (src/api/rate-limit.ts); absent: none. */
  limits?: RequestLimits;
  /** The audit trail: AuditService reads it, KeyService records rotations. Absent: no AuditService. */
  audit?: Audit;
}

export function routes(deps: RouteDeps): (router: ConnectRouter) => void {
  return (router) => {
    router.service(TokenService, tokenService(deps));
    router.service(SessionService, sessionService(deps));
    router.service(KeyService, keyService(deps));
    if (deps.audit) router.service(AuditService, auditService({ audit: deps.audit }));
  };
}
