/**
 * pino, JSON lines. Tokens, keys and authorization headers never reach a log line: known paths are redacted, and
 * errors are serialised to name, message and code only (ioredis errors carry the command's arguments, which can hold
 * tokens; stack traces are kept only for bugs).
 */
import { pino, type DestinationStream, type Logger } from "pino";

export type { Logger };

export const REDACT_PATHS = [
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "token",
  "*.token",
  "accessToken",
  "refreshToken",
  "*.accessToken",
  "*.refreshToken",
  "access_token",
  "refresh_token",
  "*.access_token",
  "*.refresh_token",
  "privateJwk",
  "*.privateJwk",
  "secret",
  "*.secret",
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "tessera" },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      serializers: { err: safeError },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/** An error as a log-safe object: never its `command`, `args` or other attached data. */
export function safeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: typeof err === "string" ? err : "non-error thrown" };
  const out: Record<string, unknown> = { type: err.name, message: err.message };
  const code = (err as { code?: unknown }).code;
  if (typeof code === "string" || typeof code === "number") out.code = code;
  if (err.cause !== undefined) out.cause = err.cause instanceof Error ? safeError(err.cause) : String(err.cause);
  return out;
}
