/**
 * `tessera/client`: what a service needs to call Tessera and to check its tokens.
 *
 * - createTesseraClient: typed clients of every service, with the API key, a default deadline, and retries of the
 *   calls that are safe to repeat (src/client/client.ts says which, and why not Revoke).
 * - TokenManager: keeps a user's session alive (single-flight refresh at a lead time, retries through the server's
 *   grace window, ends on UNAUTHENTICATED), with pluggable storage.
 * - createVerifier: checks bearer tokens at a sidecar, at the authority, or in-process from the JWKS and the
 *   revocation feed; verifierInterceptor and verifierMiddleware put it in front of Connect and Node/Express handlers.
 * - The generated messages, enums and service descriptors of tessera.v1.
 */
export {
  createTesseraClient,
  isSafeToRetry,
  backoffDelay,
  retryUnavailable,
  DEFAULT_RETRY,
  DEFAULT_TIMEOUT_MS,
  type TesseraClient,
  type TesseraClientOptions,
  type RetryOptions,
} from "./client.js";
export {
  TokenManager,
  MemoryTokenStorage,
  pairFrom,
  DEFAULT_LEAD_TIME_MS,
  DEFAULT_REFRESH_RETRY,
  type Pair,
  type TokenStorage,
  type TokenManagerOptions,
  type TokenManagerEvent,
  type EndReason,
} from "./token-manager.js";
export {
  createVerifier,
  isUnavailable,
  type Verifier,
  type VerifierOptions,
  type VerifyOptions,
  type VerifyResult,
  type Principal,
  type InactiveReasonName,
} from "./verifier.js";
export {
  verifierInterceptor,
  verifierMiddleware,
  principalKey,
  bearerToken,
  type InterceptorOptions,
  type MiddlewareOptions,
  type VerifiedRequest,
} from "./middleware.js";
export { Code, ConnectError, createContextValues, type CallOptions, type Client } from "@connectrpc/connect";
export * from "../../gen/tessera/v1/common_pb.js";
export * from "../../gen/tessera/v1/token_pb.js";
export * from "../../gen/tessera/v1/session_pb.js";
export * from "../../gen/tessera/v1/key_pb.js";
export * from "../../gen/tessera/v1/audit_pb.js";
export * from "../../gen/tessera/v1/revocation_pb.js";
