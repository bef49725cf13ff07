/**
 * The requests h2load sends (bench/h2load.ts), built once per scenario with @bufbuild/protobuf's toBinary from the
 * generated schemas and written to a body file, and for each the sample call that checks an answer (bench/verify.ts):
 * the same bytes replayed with the answer decoded and checked, then the same request message through connect-node's
 * own client.
 *
 * - Introspect: one valid access token, minted by Tessera's Issue just before (h2load sends one body per run, so every
 *   call presents the same token: Tessera's verified-signature cache answers its signature check after the first
 *   call; its claims, the session and the revocation list are still checked on every call). A sample passes if the
 *   answer is active with the token's subject; on a no-op server, if the call succeeds (the answer is empty).
 * - Issue: one request, the same subject on every call (a new session each time; beyond TESSERA_MAX_SESSIONS, 20 by
 *   default, each Issue also evicts the subject's oldest session). A sample passes if it returns a token pair and a
 *   session id, and the new access token introspects as active.
 * - oidc-provider's RFC 7662 introspection of one opaque access token minted with client_credentials, over HTTP/1.1;
 *   a sample passes if the answer is HTTP 200 with active=true.
 */
import { randomUUID } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  InactiveReason,
  IntrospectRequestSchema,
  IntrospectResponseSchema,
  IssueRequestSchema,
  IssueResponseSchema,
  TokenService,
  type IntrospectResponse,
} from "../gen/tessera/v1/token_pb.js";
import { bodyFile, grpcFrame, type H2Request } from "./h2load.js";
import { OIDC_CLIENT, type WorkloadName } from "./spec.js";
import { connectAnswer, grpcAnswer, send } from "./verify.js";
import { CLIENT, GRANT } from "./workloads.js";

const SERVICE = "tessera.v1.TokenService";
const CALL_TIMEOUT_MS = 10_000;
export const GRPC_HEADERS = { "content-type": "application/grpc", te: "trailers" };
export const CONNECT_HEADERS = { "content-type": "application/proto", "connect-protocol-version": "1" };

export type Protocol = "grpc" | "connect";

/** One h2load scenario: what is sent, how to check an answer, and which Tessera counters account for every call. */
export interface H2Scenario {
  workload: WorkloadName;
  request: H2Request;
  /** The body file h2load sends (-d). */
  body: string;
  /** What the body holds, for the report. */
  describe: string;
  /** One sample call (the replayed bytes, then connect-node's client); throws on a wrong answer, else says what it got. */
  probe(): Promise<string>;
  /** Tessera's RPC method: its calls are counted by gRPC code on GET /metrics. Undefined for the other servers. */
  method?: string;
}

type TokenClient = Client<typeof TokenService>;

/** connect-node's own client (gRPC, or the Connect protocol with binary bodies, HTTP/2) on a connection of its own. */
async function withClient<T>(baseUrl: string, protocol: Protocol, fn: (client: TokenClient) => Promise<T>): Promise<T> {
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl, sessionManager })
      : createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true, sessionManager });
  try {
    return await fn(createClient(TokenService, transport));
  } finally {
    sessionManager.abort();
  }
}

const issueRequest = (subject: string) => create(IssueRequestSchema, { subject, ...GRANT, client: { ...CLIENT, deviceId: randomUUID() } });

/** A fresh session's access token for `subject`, from Tessera's Issue. */
export async function mintAccessToken(baseUrl: string, subject: string): Promise<string> {
  return withClient(baseUrl, "grpc", async (c) => {
    const res = await c.issue(issueRequest(subject), { timeoutMs: CALL_TIMEOUT_MS });
    const token = res.tokens?.accessToken;
    if (!token) throw new Error("Issue returned no access token");
    return token;
  });
}

function describeBody(what: string, protocol: Protocol, body: Uint8Array): string {
  return `${what}, ${protocol === "grpc" ? "in one gRPC frame" : "as the Connect protocol's binary body"} (${body.length} bytes)`;
}

/**
 * Introspect of `token` over gRPC or the Connect protocol. `expect`: the subject the answer must be active for
 * (Tessera), or "noop" (a no-op server: any successful answer).
 */
export function introspectScenario(baseUrl: string, protocol: Protocol, token: string, expect: { subject: string } | "noop"): H2Scenario {
  const message = toBinary(IntrospectRequestSchema, create(IntrospectRequestSchema, { token }));
  const body = protocol === "grpc" ? grpcFrame(message) : message;
  const request: H2Request = {
    http: "h2c",
    url: `${baseUrl}/${SERVICE}/Introspect`,
    headers: protocol === "grpc" ? GRPC_HEADERS : CONNECT_HEADERS,
    body,
  };
  const check = (res: IntrospectResponse, via: string): string => {
    if (expect === "noop") return "ok";
    if (!res.active) throw new Error(`${via}: active=false (${InactiveReason[res.inactiveReason]})`);
    if (res.subject !== expect.subject) throw new Error(`${via}: subject ${res.subject}, expected ${expect.subject}`);
    return "active";
  };
  return {
    workload: expect === "noop" ? "noop" : "introspect-valid",
    request,
    body: bodyFile(`introspect-${protocol}`, body),
    describe: describeBody(`IntrospectRequest{token: one valid ES256 access token of ${token.length} characters}`, protocol, body),
    ...(expect === "noop" ? {} : { method: "Introspect" }),
    async probe() {
      const reply = await send(request);
      const answer = protocol === "grpc" ? grpcAnswer(reply, IntrospectResponseSchema) : connectAnswer(reply, IntrospectResponseSchema);
      const replayed = check(answer, "replayed body");
      await withClient(baseUrl, protocol, async (c) =>
        check(await c.introspect(fromBinary(IntrospectRequestSchema, message), { timeoutMs: CALL_TIMEOUT_MS }), "connect-node client"),
      );
      return `${protocol === "grpc" ? "grpc-status 0" : "HTTP 200"}, ${replayed}`;
    },
  };
}

/** Issue for `subject` over gRPC, the same request (same subject, same device) on every call. */
export function issueScenario(baseUrl: string, subject: string): H2Scenario {
  const message = toBinary(IssueRequestSchema, issueRequest(subject));
  const body = grpcFrame(message);
  const request: H2Request = { http: "h2c", url: `${baseUrl}/${SERVICE}/Issue`, headers: GRPC_HEADERS, body };
  return {
    workload: "issue",
    request,
    body: bodyFile("issue-grpc", body),
    describe: describeBody(`IssueRequest{subject: "${subject}", 1 audience, 3 scopes, 2 extra claims, client info with a 120-character user agent}`, "grpc", body),
    method: "Issue",
    async probe() {
      const answer = grpcAnswer(await send(request), IssueResponseSchema);
      const access = answer.tokens?.accessToken;
      if (!access || !answer.tokens?.refreshToken || !answer.sessionId) throw new Error("replayed body: Issue answered without a token pair or session id");
      await withClient(baseUrl, "grpc", async (c) => {
        const res = await c.introspect({ token: access }, { timeoutMs: CALL_TIMEOUT_MS });
        if (!res.active || res.subject !== subject) throw new Error(`the issued access token introspects as ${res.active ? `active for ${res.subject}` : InactiveReason[res.inactiveReason]}`);
        const again = await c.issue(fromBinary(IssueRequestSchema, message), { timeoutMs: CALL_TIMEOUT_MS });
        if (!again.tokens?.accessToken) throw new Error("connect-node client: Issue answered without an access token");
      });
      return "grpc-status 0, token pair, introspects active";
    },
  };
}

/** oidc-provider's RFC 7662 introspection of one opaque client_credentials access token, over HTTP/1.1. */
export async function oidcScenario(baseUrl: string): Promise<H2Scenario> {
  const headers = {
    authorization: `Basic ${Buffer.from(`${OIDC_CLIENT.clientId}:${OIDC_CLIENT.clientSecret}`).toString("base64")}`,
    "content-type": "application/x-www-form-urlencoded",
  };
  const res = await fetch(`${baseUrl}/token`, { method: "POST", headers, body: "grant_type=client_credentials", signal: AbortSignal.timeout(CALL_TIMEOUT_MS) });
  const minted = (await res.json()) as { access_token?: string };
  if (res.status !== 200 || !minted.access_token) throw new Error(`oidc-provider: POST /token answered ${res.status} ${JSON.stringify(minted)}`);
  const body = Buffer.from(`token=${minted.access_token}`);
  const request: H2Request = { http: "h1", url: `${baseUrl}/token/introspection`, headers, body };
  return {
    workload: "oidc-introspect",
    request,
    body: bodyFile("oidc-introspection", body),
    describe: `token=<one opaque access token of ${minted.access_token.length} characters>, form-encoded (${body.length} bytes), client_secret_basic`,
    async probe() {
      const reply = await send(request);
      if (reply.status !== 200) throw new Error(`HTTP ${reply.status}: ${reply.body.toString("utf8").slice(0, 200)}`);
      const answer = JSON.parse(reply.body.toString("utf8")) as { active?: boolean; client_id?: string };
      if (answer.active !== true || answer.client_id !== OIDC_CLIENT.clientId) throw new Error(`expected active for ${OIDC_CLIENT.clientId}, got ${JSON.stringify(answer)}`);
      return "HTTP 200, active";
    },
  };
}
