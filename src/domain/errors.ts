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
    options?: { cause?: unknown; field?: string },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.field = options?.field;
  }
  readonly field: string | undefined;
}

/** Thrown by a store when it cannot be reached or did not answer in time: callers must fail closed. */
export class StoreUnavailableError extends TesseraError {
  constructor(cause?: unknown) {
    super("unavailable", "token store unavailable", { cause });
  }
}
