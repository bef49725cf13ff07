/** Domain errors -> Connect codes. The message a caller sees is short and safe; the cause stays in `cause` (logged). */
import { Code, ConnectError } from "@connectrpc/connect";
import { TesseraError, type ErrorCode } from "../domain/errors.js";

const CODES: Record<ErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  internal: Code.Internal,
};

/** Any thrown value as a ConnectError. Unknown errors become INTERNAL with a generic message (they are bugs). */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof TesseraError) {
    const message = err.field !== undefined && !err.message.startsWith(err.field) ? `${err.field}: ${err.message}` : err.message;
    return new ConnectError(message, CODES[err.code], undefined, undefined, err);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** A request field failed validation at the edge. */
export function invalidArgument(field: string, problem: string): TesseraError {
  return new TesseraError("invalid_argument", `${field}: ${problem}`, { field });
}
