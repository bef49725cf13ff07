/** Every service of Tessera's API with its implementation, in one module: connect-node and the lean path serve these. */
import type { DescMethodUnary, DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { RevocationService } from "../../gen/tessera/v1/revocation_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { StatsService } from "../../gen/tessera/v1/stats_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import type { Audit } from "../domain/audit-trail.js";
import type { Authority } from "../domain/authority.js";
import type { Clock } from "../domain/clock.js";
import type { KeyRing } from "../domain/keys.js";
import type { StatsStore } from "../domain/stats.js";
import type { RevocationFeed } from "../domain/store.js";
import { auditService } from "./audit-service.js";
import { keyService } from "./key-service.js";
import type { RequestLimits } from "./rate-limit.js";
import { revocationService } from "./revocation-service.js";
import { sessionService } from "./session-service.js";
import { statsService } from "./stats-service.js";
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
  /** The revocation feed, its clock, and the signal that ends every watch at shutdown. Absent: no RevocationService. */
  feed?: { feed: RevocationFeed; clock: Clock; closing: AbortSignal };
  /** The usage statistics (fed by the audit trail's writes) and the clock; with `audit`: StatsService. */
  stats?: { stats: StatsStore; clock: Clock };
}

/** One service and its implementation. */
export interface ServiceEntry {
  readonly service: DescService;
  register(router: ConnectRouter): void;
  /** The implementation of one of its methods, by the method's local name. */
  method(localName: string): ((req: unknown, ctx: HandlerContext) => Promise<unknown>) | undefined;
}

export function entry<T extends DescService>(service: T, impl: ServiceImpl<T>): ServiceEntry {
  const methods = impl as unknown as Record<string, (req: unknown, ctx: HandlerContext) => Promise<unknown>>;
  return {
    service,
    register: (router) => void router.service(service, impl),
    method: (localName) => methods[localName]?.bind(impl),
  };
}

export function services(deps: RouteDeps): ServiceEntry[] {
  return [
    entry(TokenService, tokenService(deps)),
    entry(SessionService, sessionService(deps)),
    entry(KeyService, keyService(deps)),
    ...(deps.audit ? [entry(AuditService, auditService({ audit: deps.audit }))] : []),
    ...(deps.feed ? [entry(RevocationService, revocationService(deps.feed))] : []),
    ...(deps.stats && deps.audit
      ? [entry(StatsService, statsService({ ...deps.stats, audit: deps.audit, authority: deps.authority }))]
      : []),
  ];
}

/** Registers the services on a connect router. */
export function routes(list: readonly ServiceEntry[]): (router: ConnectRouter) => void {
  return (router) => {
    for (const s of list) s.register(router);
  };
}

/** A unary method of the API and its implementation. */
export interface UnaryMethod {
  readonly method: DescMethodUnary;
  readonly impl: (req: unknown, ctx: HandlerContext) => Promise<unknown>;
}

/** Every unary method of the services by its gRPC path (`/tessera.v1.TokenService/Introspect`). */
export function unaryMethods(list: readonly ServiceEntry[]): Map<string, UnaryMethod> {
  const byPath = new Map<string, UnaryMethod>();
  for (const s of list) {
    for (const method of s.service.methods) {
      const impl = s.method(method.localName);
      if (method.methodKind !== "unary" || impl === undefined) continue;
      byPath.set(`/${s.service.typeName}/${method.name}`, { method: method as DescMethodUnary, impl });
    }
  }
  return byPath;
}
