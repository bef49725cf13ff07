/**
 * Domain errors -> Connect codes. The message a caller sees is short and safe; the cause stays in `cause` (logged).
 * Machine-readable details ride along as google.rpc error details: a `BadRequest` naming the field for every
 * INVALID_ARGUMENT that has one, a `RetryInfo` for every rate limit, an `ErrorInfo` (domain "tessera") whose `reason`
 * tells the UNAUTHENTICATED cases apart (clients read them with `err.findDetails(Schema)`).
 */
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ERROR_DOMAIN, TesseraError, type ErrorCode, type ErrorReason } from "../domain/errors.js";

const CODES: Record<ErrorCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  internal: Code.Internal,
};

/** Any thrown value as a ConnectError. Unknown errors become INTERNAL with a generic message (they are bugs). */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof TesseraError) {
    if (err.reason !== undefined) return new ConnectError(err.message, CODES[err.code], undefined, [errorInfo(err.reason)], err);
    if (err.field === undefined) return new ConnectError(err.message, CODES[err.code], undefined, undefined, err);
    const prefix = `${err.field}: `;
    const description = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
    const message = err.message.startsWith(err.field) ? err.message : `${prefix}${err.message}`;
    const detail = { desc: BadRequestSchema, value: { fieldViolations: [{ field: err.field, description }] } };
    return new ConnectError(message, CODES[err.code], undefined, [detail], err);
  }
  return new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** The ErrorInfo detail of a reason. */
export function errorInfo(reason: ErrorReason) {
  return { desc: ErrorInfoSchema, value: { reason, domain: ERROR_DOMAIN } };
}

/** RESOURCE_EXHAUSTED with a RetryInfo saying when to try again (at least 1 ms). */
export function rateLimited(message: string, retryAfterMs: number, cause?: unknown): ConnectError {
  const detail = { desc: RetryInfoSchema, value: { retryDelay: durationFromMs(Math.max(1, Math.ceil(retryAfterMs))) } };
  return new ConnectError(message, Code.ResourceExhausted, undefined, [detail], cause);
}

/** A request field failed validation at the edge. */
export function invalidArgument(field: string, problem: string): TesseraError {
  return new TesseraError("invalid_argument", `${field}: ${problem}`, { field });
}
