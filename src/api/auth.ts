/**
 * Caller authentication and authorization: who is calling (an API key or a client certificate, mapped to a caller of
 * the callers file) and whether that caller holds the one permission the RPC needs. Deny by default: an RPC missing
 * from the table below is PERMISSION_DENIED for everyone. Health and reflection are open to all.
 *
 * A caller with `subjects` in the callers file may act only on those subjects: the handlers of every RPC that names
 * or returns a subject or a session ask `requireSubject` (or filter by `scopeOf`) once they know the target's subject.
 * Introspect is not scoped: a resource server must be able to ask about any token it is presented.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { Code, ConnectError, createContextKey, type HandlerContext } from "@connectrpc/connect";
import { ANONYMOUS, type CallerSpec, type MtlsIdentity, type SubjectScope } from "../config/callers.js";
import type { AuditSink } from "../domain/audit-trail.js";
import { auditRefusal } from "./audit-context.js";
import { errorInfo } from "./errors.js";
import type { DescMethod } from "@bufbuild/protobuf";
import { Authorization } from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { RevocationService } from "../../gen/tessera/v1/revocation_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { StatsService } from "../../gen/tessera/v1/stats_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { PERMISSIONS, type Permission } from "../domain/permissions.js";
import { callerKey, type Caller, type CallerScope } from "./context.js";
import type { Authorize, Call } from "./pipeline.js";

/**
 * The permission each RPC needs, keyed by the generated method descriptors, so a renamed or removed RPC fails the
 * type check here. An RPC missing from the table is refused to everyone (deny by default).
 */
export const METHOD_PERMISSIONS: ReadonlyMap<DescMethod, Permission> = new Map<DescMethod, Permission>([
  [TokenService.method.issue, "issue"],
  [TokenService.method.refresh, "refresh"],
  [TokenService.method.revoke, "revoke"],
  [TokenService.method.introspect, "introspect"],
  [SessionService.method.listSessions, "sessions.read"],
  [SessionService.method.getSession, "sessions.read"],
  [KeyService.method.getJwks, "keys.read"],
  [KeyService.method.listKeys, "keys.read"],
  [KeyService.method.rotateKeys, "keys.rotate"],
  [KeyService.method.revokeKey, "keys.rotate"],
  [AuditService.method.listAuditEvents, "audit.read"],
  [StatsService.method.getOverview, "stats.read"],
  [StatsService.method.getSubjectActivity, "stats.read"],
  [StatsService.method.getDailyReport, "stats.read"],
  [RevocationService.method.watchRevocations, "revocations.watch"],
  // The sidecar's Envoy ext_authz service: the same question as Introspect.
  [Authorization.method.check, "introspect"],
]);

/** Services anyone may call without credentials. */
export const OPEN_SERVICES: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/** The verified client certificate identity of the connection, set per request by the server (src/server/peer.ts). */
export const peerIdentityKey = createContextKey<MtlsIdentity | undefined>(undefined, {
  description: "verified client certificate identity",
});

export type CallerAuthOptions =
  /** No callers file: every call is "anonymous" with every permission (loopback, or explicitly allowed). */
  | { open: true }
  | { callers: readonly CallerSpec[] };

const OPEN_CALLER: Caller = Object.freeze({ name: ANONYMOUS, via: "open", permissions: new Set(PERMISSIONS) });
const MAX_KEY_LENGTH = 4096;
const BEARER = /^Bearer +(\S+) *$/i;

/**
 * The pipeline's authorization step: the caller of a call (undefined for the open services), or UNAUTHENTICATED /
 * PERMISSION_DENIED. `audit`: where refusals go, as caller_denied events (the API key never does).
 */
export function callerAuth(opts: CallerAuthOptions, audit?: AuditSink): Authorize {
  const identify = "open" in opts ? () => OPEN_CALLER : identifier(opts.callers, audit);
  return (call) => {
    const service = call.method.parent;
    if (OPEN_SERVICES.has(service.typeName)) return undefined;
    let caller: Caller;
    try {
      caller = identify(call.header.get("authorization"), call.values.get(peerIdentityKey));
    } catch (err) {
      const reason = err instanceof ConnectError ? err.rawMessage : "invalid credentials";
      auditRefusal(audit, call, "caller_denied", { code: "unauthenticated", reason });
      throw err;
    }
    call.values.set(callerKey, caller); // the log line names the caller, refused or not
    const permission = METHOD_PERMISSIONS.get(call.method);
    if (permission === undefined || !caller.permissions.has(permission)) {
      const rpc = `${service.name}.${call.method.name}`;
      const why = permission === undefined ? `${rpc} is in no permission (deny by default)` : `${rpc} needs "${permission}"`;
      auditRefusal(audit, call, "caller_denied", { code: "permission_denied", permission: permission ?? "" });
      throw new ConnectError(`caller ${caller.name} may not call ${rpc}`, Code.PermissionDenied, undefined, undefined, new Error(why));
    }
    return caller;
  };
}

/** Resolves the credentials of one request to a caller, or throws UNAUTHENTICATED. */
function identifier(
  specs: readonly CallerSpec[],
  audit: AuditSink | undefined,
): (authorization: string | null, peer: MtlsIdentity | undefined) => Caller {
  const keys: ApiKeyEntry<Caller>[] = [];
  const certs = new Map<string, Caller>();
  for (const spec of specs) {
    const scope = spec.subjects && callerScope(spec.name, spec.subjects, audit);
    const caller = (via: Caller["via"]): Caller =>
      Object.freeze({ name: spec.name, via, permissions: new Set(spec.permissions), ...(scope ? { scope } : {}) });
    if (spec.apiKeySha256.length > 0) {
      const byKey = caller("api_key");
      for (const sha256 of spec.apiKeySha256) keys.push({ sha256, caller: byKey });
    }
    if (spec.mtls) certs.set(identityString(spec.mtls), caller("mtls"));
  }

  return (authorization, peer) => {
    if (authorization === null && peer === undefined) {
      throw unauthenticated("missing credentials", "no API key and no trusted client certificate");
    }
    let byKey: Caller | undefined;
    if (authorization !== null) {
      const key = BEARER.exec(authorization)?.[1];
      if (key === undefined || key.length > MAX_KEY_LENGTH) {
        throw unauthenticated("invalid credentials", "the authorization header is not \"Bearer <API key>\"");
      }
      byKey = matchApiKey(keys, key);
      if (byKey === undefined) throw unauthenticated("invalid credentials", "the API key matches no caller");
    }
    const byCert = peer === undefined ? undefined : certs.get(identityString(peer));
    if (byKey !== undefined && byCert !== undefined && byKey.name !== byCert.name) {
      throw unauthenticated("conflicting credentials", `the API key is ${byKey.name}'s, the client certificate ${byCert.name}'s`);
    }
    // A trusted certificate that names no caller does not spoil a valid API key; alone, it identifies nobody.
    const caller = byCert ?? byKey;
    if (caller === undefined) {
      throw unauthenticated("invalid credentials", `client certificate ${peer ? identityString(peer) : ""} matches no caller`);
    }
    return caller;
  };
}

/** The one message of every refusal by subject: the same whether the target is outside the scope or unknown. */
export function outOfScopeMessage(caller: string): string {
  return `caller ${caller} may not act on this target (not one of its subjects, or not found)`;
}

/** A caller's compiled subjects, with the refusal that records itself in the audit trail. */
function callerScope(name: string, subjects: SubjectScope, audit: AuditSink | undefined): CallerScope {
  const message = outOfScopeMessage(name);
  return Object.freeze({
    patterns: subjects.patterns,
    allows: subjects.allows,
    refuse(ctx: HandlerContext, about: { subject?: string | undefined; client?: unknown; why: string }): ConnectError {
      const call: Call = {
        method: ctx.method,
        get header() {
          return ctx.requestHeader;
        },
        values: ctx.values,
        // What the audit event names: the target's subject, when known, and the end user's client.
        message: { subject: about.subject, client: about.client },
        get signal() {
          return ctx.signal;
        },
      };
      const permission = METHOD_PERMISSIONS.get(ctx.method) ?? "";
      auditRefusal(audit, call, "caller_denied", { code: "permission_denied", permission, reason: about.why });
      // The log line's cause says which it was (operators only); the caller's answer never does.
      const cause = about.subject === undefined ? about.why : `${about.why}: ${JSON.stringify(about.subject)}`;
      return new ConnectError(message, Code.PermissionDenied, undefined, undefined, new Error(cause));
    },
  });
}

/**
 * Whether the call's caller holds a permission beyond the RPC's own (one of ANSWER_PERMISSIONS, such as
 * `introspect.sensitive`): the handler asks, and answers with less when not. Open mode's anonymous caller holds
 * every permission; no caller (a test of another layer) holds none.
 */
export function callerHolds(ctx: Pick<HandlerContext, "values">, permission: Permission): boolean {
  return ctx.values.get(callerKey)?.permissions.has(permission) === true;
}

/** The subjects the call's caller may act on; undefined: every subject (unscoped caller, or open mode). */
export function scopeOf(ctx: Pick<HandlerContext, "values">): CallerScope | undefined {
  return ctx.values.get(callerKey)?.scope;
}

/**
 * Throws PERMISSION_DENIED (recorded as caller_denied) unless the call's caller may act on `subject`; nothing for an
 * unscoped caller. `client`: the request's end-user client, for the audit event.
 */
export function requireSubject(ctx: HandlerContext, subject: string, client?: unknown): void {
  const scope = ctx.values.get(callerKey)?.scope;
  if (scope !== undefined && !scope.allows(subject)) {
    throw scope.refuse(ctx, { subject, client, why: "subject outside the caller's subjects" });
  }
}

export interface ApiKeyEntry<T> {
  /** SHA-256 of the key, 32 bytes. */
  sha256: Buffer;
  caller: T;
}

/**
 * The caller whose API key this is. Compares the key's SHA-256 with every configured digest in constant time and
 * always looks at all of them, so neither the time taken nor a lookup structure says how close a guess came.
 */
export function matchApiKey<T>(entries: readonly ApiKeyEntry<T>[], key: string): T | undefined {
  const digest = createHash("sha256").update(key, "utf8").digest();
  let found: T | undefined;
  for (const entry of entries) {
    const same = timingSafeEqual(entry.sha256, digest);
    found = same && found === undefined ? entry.caller : found;
  }
  return found;
}

function identityString(id: MtlsIdentity): string {
  return `${id.kind}:${id.value}`;
}

/** The caller's credentials refused: ErrorInfo CALLER_UNAUTHENTICATED, so a client tells it from a refused token. */
function unauthenticated(message: string, cause: string): ConnectError {
  return new ConnectError(message, Code.Unauthenticated, undefined, [errorInfo("CALLER_UNAUTHENTICATED")], new Error(cause));
}
