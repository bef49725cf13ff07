import { createHash, randomBytes } from "node:crypto";

/**
 * A random identifier with 128 bits of entropy, base64url (22 characters). The bytes come from the CSPRNG in batches
 * (as crypto.randomUUID does), each used once: one call into the CSPRNG per 256 ids rather than per id.
 */
export function randomId(): string {
  if (poolOffset + ID_BYTES > pool.length) {
    pool = randomBytes(ID_BYTES * 256);
    poolOffset = 0;
  }
  const id = pool.toString("base64url", poolOffset, poolOffset + ID_BYTES);
  pool.fill(0, poolOffset, poolOffset + ID_BYTES); // a used id's bytes do not stay behind
  poolOffset += ID_BYTES;
  return id;
}

const ID_BYTES = 16;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/** SHA-256 of the parts (NUL-separated), base64url. Used for client fingerprints and key tags, never for secrets. */
export function digest(...parts: string[]): string {
  return createHash("sha256").update(parts.join("\0")).digest("base64url");
}

const TAG_CHARS = 16;
const SESSION_ID = /^[A-Za-z0-9_-]{38}$/;

/**
 * The subject's tag: 96 bits of the SHA-256 of the subject, base64url (16 characters). A store keeps all of a
 * subject's state together under it (in Redis, the hash tag of every key of the subject).
 */
export function subjectTag(subject: string): string {
  return digest(subject).slice(0, TAG_CHARS);
}

/**
 * A new session id for the subject: its tag, then 128 random bits (38 characters). The tag lets a store find the
 * session from its id alone, without a lookup key per session; the subject itself is in every token anyway.
 */
export function newSessionId(subject: string): string {
  return subjectTag(subject) + randomId();
}

/** The subject tag a session id carries, or null if the string cannot be one of our session ids. */
export function sessionTag(sessionId: string): string | null {
  return SESSION_ID.test(sessionId) ? sessionId.slice(0, TAG_CHARS) : null;
}

/** Whether the session id was minted for the subject (newSessionId): a precondition of Store.createSession. */
export function isSessionIdOf(sessionId: string, subject: string): boolean {
  return sessionTag(sessionId) === subjectTag(subject);
}
