/**
 * The domain's one error type. `code` is stable and transport-neutral; the API layer maps it to a gRPC code.
 * `message` is short and safe to show a caller; anything internal goes in `cause` and stays in the log.
 */
export type ErrorCode =
  | "invalid_argument"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "failed_precondition"
  | "resource_exhausted"
  | "unavailable"
  | "deadline_exceeded"
  | "internal";

export class TesseraError extends Error {
  override readonly name = "TesseraError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; field?: string; reason?: ErrorReason },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.field = options?.field;
    this.reason = options?.reason;
  }
  readonly field: string | undefined;
  /** Why, for a program to tell cases of one code apart (google.rpc.ErrorInfo `reason` on the wire). */
  readonly reason: ErrorReason | undefined;
}

/**
 * The reasons a program may need to tell apart within one code (UNAUTHENTICATED: the caller's credentials, or the
 * refresh token it presented). Sent as google.rpc.ErrorInfo with domain ERROR_DOMAIN; a stable contract, unlike the
 * messages.
 */
export const ERROR_REASONS = ["CALLER_UNAUTHENTICATED", "REFRESH_TOKEN_INVALID", "REFRESH_TOKEN_REUSED", "SESSION_ENDED"] as const;
export type ErrorReason = (typeof ERROR_REASONS)[number];
export const ERROR_DOMAIN = "tessera";

/** Thrown by a store when it cannot be reached or did not answer in time: callers must fail closed. */
export class StoreUnavailableError extends TesseraError {
  constructor(cause?: unknown) {
    super("unavailable", "token store unavailable", { cause });
  }
}
