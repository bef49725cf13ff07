import { createHash, randomBytes } from "node:crypto";

/** A random identifier with 128 bits of entropy, base64url (22 characters). */
export function randomId(): string {
  return randomBytes(16).toString("base64url");
}

/** SHA-256 of the parts (NUL-separated), base64url. Used for client fingerprints and key tags, never for secrets. */
export function digest(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\0")).digest("base64url");
}
