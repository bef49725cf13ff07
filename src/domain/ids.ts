import { createHash, randomBytes } from "node:crypto";
import { kept } from "./kept.js";

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

/**
 * SHA-256 of the parts (NUL-separated), base64url. Used for client fingerprints and key tags, never for secrets.
 * The digests of the last 4096 short inputs are kept (oldest out first): one Issue digests its subject, IP
 * and device id twice or more (session id, store key, rate limits, risk tags), and the same ones call after call.
 */
export function digest(...parts: string[]): string {
  return digests(parts.length === 1 ? parts[0]! : parts.join("\0"));
}

/** Longer inputs are digested every time: the kept ones hold at most 4096 x 512 characters. */
const digests = kept(4096, 512, (input) => createHash("sha256").update(input).digest("base64url"));

/** How many digests are kept (digest), for tests: never more than 4096. */
export function keptDigests(): number {
  return digests.size;
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
