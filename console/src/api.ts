/**
 * The console's calls: the Connect protocol (JSON over fetch) to the authority that served the page, with the
 * operator's API key as `authorization: Bearer <key>`, exactly as any other caller sends it (src/api/auth.ts). The key
 * lives in this module's memory only: never in localStorage, sessionStorage, a cookie or a URL, never logged; a
 * reload or "Log out" forgets it.
 */
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AuditService } from "../../gen/tessera/v1/audit_pb.js";
import { KeyService } from "../../gen/tessera/v1/key_pb.js";
import { SessionService } from "../../gen/tessera/v1/session_pb.js";
import { StatsService } from "../../gen/tessera/v1/stats_pb.js";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { CONSOLE_RPCS, rpcLabel, type ConsoleRpc } from "./permissions.js";

let apiKey: string | undefined;

export function setKey(key: string): void {
  apiKey = key === "" ? undefined : key;
}

export function forgetKey(): void {
  apiKey = undefined;
}

const withKey: Interceptor = (next) => (req) => {
  if (apiKey !== undefined) req.header.set("authorization", `Bearer ${apiKey}`);
  return next(req);
};

// The API is at the root of the origin that served /console/ (relative, so a path prefix in front is kept).
const transport = createConnectTransport({
  baseUrl: new URL("..", location.href).href.replace(/\/$/, ""),
  interceptors: [withKey],
  defaultTimeoutMs: 15_000,
});

export const api = {
  stats: createClient(StatsService, transport),
  sessions: createClient(SessionService, transport),
  tokens: createClient(TokenService, transport),
  audit: createClient(AuditService, transport),
  keys: createClient(KeyService, transport),
};

/** What a failed call means to an operator. */
export interface Refusal {
  code: Code;
  title: string;
  text: string;
  /** The key was not accepted at all: the console goes back to its login. */
  badKey: boolean;
}

export function explain(err: unknown, rpc: ConsoleRpc): Refusal {
  const e = ConnectError.from(err);
  const label = rpcLabel(rpc);
  const permission = CONSOLE_RPCS[rpc];
  switch (e.code) {
    case Code.PermissionDenied:
      // The authority says "caller X may not call Service.Method" when the permission is missing; anything else is
      // a subject scope ("may not act on this target").
      if (/may not call/.test(e.rawMessage)) {
        return {
          code: e.code,
          title: "Permission denied",
          text: `This key lacks the permission ${permission}, which ${label} needs. Ask for a key whose caller holds ${permission} in the callers file.`,
          badKey: false,
        };
      }
      return { code: e.code, title: "Permission denied", text: `${label} was refused for this key: ${e.rawMessage}.`, badKey: false };
    case Code.Unauthenticated:
      return { code: e.code, title: "Key not accepted", text: `The authority did not accept this API key (${e.rawMessage}).`, badKey: true };
    case Code.Unavailable:
      return { code: e.code, title: "Unavailable", text: `Tessera cannot answer ${label} right now (${e.rawMessage}). Try again shortly.`, badKey: false };
    case Code.ResourceExhausted:
      return { code: e.code, title: "Rate limited", text: `${label} was rate limited (${e.rawMessage}). Try again shortly.`, badKey: false };
    default:
      return { code: e.code, title: `${label} failed`, text: `${Code[e.code] ?? e.code}: ${e.rawMessage}`, badKey: false };
  }
}
