/**
 * The permission behind each RPC the console calls, as the callers file names it (src/api/auth.ts METHOD_PERMISSIONS
 * is the authority's table; test/console/console-route.test.ts holds the two equal). The server decides; the console
 * only uses this to say which permission a refused key lacks. No DOM here: the tests import it in Node.
 */
export const CONSOLE_RPCS = {
  "tessera.v1.StatsService/GetOverview": "stats.read",
  "tessera.v1.StatsService/GetSubjectActivity": "stats.read",
  "tessera.v1.SessionService/ListSessions": "sessions.read",
  "tessera.v1.TokenService/Revoke": "revoke",
  "tessera.v1.AuditService/ListAuditEvents": "audit.read",
  "tessera.v1.KeyService/ListKeys": "keys.read",
  "tessera.v1.KeyService/RotateKeys": "keys.rotate",
} as const;

export type ConsoleRpc = keyof typeof CONSOLE_RPCS;

/** `tessera.v1.StatsService/GetOverview` -> `StatsService.GetOverview`, as the authority's messages name an RPC. */
export function rpcLabel(rpc: ConsoleRpc): string {
  const [service = "", method = ""] = rpc.split("/");
  return `${service.slice(service.lastIndexOf(".") + 1)}.${method}`;
}
