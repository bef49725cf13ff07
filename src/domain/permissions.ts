/**
 * What a caller may do: each RPC of Tessera's API needs exactly one of these (src/api/auth.ts maps the methods to
 * them; the callers file grants them, src/config/callers.ts). Plain names, no transport types, so configuration can
 * validate them without importing the API layer.
 */
export const PERMISSIONS = [
  "issue",
  "refresh",
  "revoke",
  "introspect",
  "sessions.read",
  "keys.read",
  "keys.rotate",
  "audit.read",
  "revocations.watch",
] as const;

export type Permission = (typeof PERMISSIONS)[number];
