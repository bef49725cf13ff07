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
  "introspect.sensitive",
  "sessions.read",
  "keys.read",
  "keys.rotate",
  "audit.read",
  "stats.read",
  "revocations.watch",
] as const;

export type Permission = (typeof PERMISSIONS)[number];

/**
 * Permissions that open no RPC by themselves but widen the answer of one: the handler asks for them. A caller needs
 * the RPC's own permission as well.
 *
 * - `introspect.sensitive`: Introspect (which needs `introspect`) returns an access token's sensitive claims,
 *   decrypted (src/domain/sealed-claims.ts); without it, the same answer without them.
 */
export const ANSWER_PERMISSIONS: readonly Permission[] = ["introspect.sensitive"];
