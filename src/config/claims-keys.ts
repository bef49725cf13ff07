/**
 * The sensitive claims' key (src/domain/sealed-claims.ts): TESSERA_CLAIMS_KEY, or TESSERA_CLAIMS_KEY_FILE naming a
 * file that holds it (read by variable.ts base64BytesFile), and TESSERA_CLAIMS_KEY_PREVIOUS (or its _FILE) during a
 * rotation. A key is 32 random bytes written in base64
 * (standard or URL-safe, padded or not): `openssl rand -base64 32`. Read and checked at start, so a bad key or an
 * unreadable file stops the process naming its variable; the start log never shows a key, only the file's path.
 */
import { CLAIMS_KEY_BYTES } from "../domain/sealed-claims.js";
import { ConfigError } from "./errors.js";
import { Invalid, decodeBase64, valueOrFile, type Parser } from "./variable.js";

const hidden = () => "[redacted]";

/** The one base64 reading the KEK and the HS256 secret use too (variable.ts decodeBase64), held to the key's size. */
function decodeKey(text: string): Uint8Array {
  const bytes = decodeBase64(text);
  if (bytes === undefined || bytes.length !== CLAIMS_KEY_BYTES) {
    throw new Invalid(`is not ${CLAIMS_KEY_BYTES} bytes in base64 (make one with: openssl rand -base64 ${CLAIMS_KEY_BYTES})`);
  }
  return new Uint8Array(bytes);
}

/** A key in base64; never shown. */
export const claimsKey: Parser<Uint8Array> = Object.assign((raw: string) => decodeKey(raw), {
  show: hidden,
  range: {
    text: `base64 of ${CLAIMS_KEY_BYTES} bytes`,
    accepted: [Buffer.alloc(CLAIMS_KEY_BYTES, 7).toString("base64"), Buffer.alloc(CLAIMS_KEY_BYTES, 7).toString("base64url")],
    refused: [Buffer.alloc(CLAIMS_KEY_BYTES - 1, 7).toString("base64"), Buffer.alloc(CLAIMS_KEY_BYTES + 1, 7).toString("base64"), "not base64!"],
  },
});

export interface ClaimsKeyValues {
  readonly key: Uint8Array | undefined;
  readonly keyFile: Uint8Array | undefined;
  readonly previousKey: Uint8Array | undefined;
  readonly previousKeyFile: Uint8Array | undefined;
}

/** What the three cannot say alone: one source of the key, and a previous key only next to a different current one. */
export function checkClaimsKeys(v: ClaimsKeyValues): void {
  const current = valueOrFile("TESSERA_CLAIMS_KEY", v.key, v.keyFile);
  const previous = valueOrFile("TESSERA_CLAIMS_KEY_PREVIOUS", v.previousKey, v.previousKeyFile);
  if (previous !== undefined && current === undefined) {
    throw new ConfigError("TESSERA_CLAIMS_KEY_PREVIOUS", "needs TESSERA_CLAIMS_KEY (or TESSERA_CLAIMS_KEY_FILE): the key that encrypts");
  }
  if (previous !== undefined && current !== undefined && Buffer.from(previous).equals(Buffer.from(current))) {
    throw new ConfigError("TESSERA_CLAIMS_KEY_PREVIOUS", "is the same key as the current one");
  }
}

/** The current key and the previous one, as the ClaimsCipher takes them; undefined when no key is configured. */
export function claimsKeys(v: ClaimsKeyValues): { current: Uint8Array; previous: Uint8Array | undefined } | undefined {
  const current = v.key ?? v.keyFile;
  return current === undefined ? undefined : { current, previous: v.previousKey ?? v.previousKeyFile };
}
