/** Every Connect route of Tessera, in one function module. */
import type { ConnectRouter } from "@connectrpc/connect";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import type { Authority } from "../domain/authority.js";
import type { KeyRing } from "../domain/keys.js";
import { keyService } from "./key-service.js";
import { sessionService } from "./session-service.js";
import { tokenService } from "./token-service.js";

export interface RouteDeps {
  authority: Authority;
  keys: KeyRing;
  maxTokenLength: number;
  /** Told the result of every Introspect: "active" or the inactive reason (for metrics). */
  onIntrospect?: (result: string) => void;
}

export function routes(deps: RouteDeps): (router: ConnectRouter) => void {
  return (router) => {
    router.service(TokenService, tokenService(deps));
    router.service(SessionService, sessionService(deps));
    router.service(KeyService, keyService(deps));
  };
}
