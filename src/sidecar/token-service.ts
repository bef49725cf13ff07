/**
 * tessera.v1.TokenService as the sidecar serves it, so a service switches from the authority to its sidecar by
 * changing an address: Introspect of an access token is answered here, through the Introspector the authority uses,
 * from the JWKS and the revocation feed; Introspect of a refresh token (whose rotation state only the authority has)
 * is passed on to the authority; Issue, Refresh and Revoke are the authority's alone (UNIMPLEMENTED, naming it).
 */
import { Code, ConnectError, type Client, type ServiceImpl } from "@connectrpc/connect";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { introspectHandler, tokenKind } from "../api/token-service.js";
import * as v from "../api/validate.js";
import type { Introspector } from "../domain/introspect.js";

export interface SidecarTokenServiceDeps {
  introspector: Introspector;
  /** The authority's TokenService, for refresh tokens. */
  authority: Client<typeof TokenService>;
  authorityUrl: string;
  maxTokenLength: number;
  onIntrospect?: (result: string) => void;
}

export function sidecarTokenService(deps: SidecarTokenServiceDeps): ServiceImpl<typeof TokenService> {
  // No sensitiveClaims: the sidecar holds no claims key, so its answers never carry an access token's sensitive claims
  // (and their sealed form is a reserved claim, never among `claims`).
  const local = introspectHandler({
    introspect: (token, kind, audience, ctx) => deps.introspector.introspect(token, kind, audience, ctx),
    maxTokenLength: deps.maxTokenLength,
    onIntrospect: deps.onIntrospect,
  });
  const elsewhere = (rpc: string) => () => {
    throw new ConnectError(`${rpc} is served by the authority at ${deps.authorityUrl}, not by this sidecar`, Code.Unimplemented);
  };
  return {
    async introspect(req, ctx) {
      if (tokenKind(req.expectedType) !== "refresh") return local(req, ctx);
      v.token("token", req.token, deps.maxTokenLength);
      v.text("audience", req.audience, v.LIMITS.audience);
      const answer = await deps.authority.introspect(req, { signal: ctx.signal, timeoutMs: remaining(ctx.timeoutMs()) });
      // The authority answers the sidecar's own credential, not this caller: whatever that credential may read, a
      // sidecar's answer has no sensitive claims (the authority gives none for refresh tokens anyway).
      answer.sensitiveClaims = undefined;
      return answer;
    },
    issue: elsewhere("Issue"),
    refresh: elsewhere("Refresh"),
    revoke: elsewhere("Revoke"),
  };
}

/** The caller's remaining time, in whole ms (connect's gRPC client would write a fraction into grpc-timeout). */
function remaining(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : Math.max(1, Math.floor(ms));
}
