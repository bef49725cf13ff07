/**
 * Clients for end-to-end tests. Raw factories: a generated Connect client over the gRPC protocol (HTTP/2), the
 * Connect protocol (HTTP/1.1 or HTTP/2) or gRPC-Web (HTTP/1.1, keep-alive agent), and an @grpc/grpc-js client built
 * from the .proto files at run time. On top, `tesseraClient(kind, url)` gives every kind one plain interface (times in
 * ms, enums as the generated TS enums, errors as ConnectError with the gRPC code) so one scenario can run through every
 * kind.
 *
 * Which server path each kind takes (src/server/dispatch.ts decides per HTTP/2 stream; with the default
 * TESSERA_GRPC_FAST_PATH=true):
 *
 * | kind           | protocol               | server path                                    |
 * | -------------- | ---------------------- | ---------------------------------------------- |
 * | `connect-grpc` | gRPC over HTTP/2       | the lean unary path (src/server/grpc-unary.ts) |
 * | `grpc-js`      | gRPC over HTTP/2       | the lean unary path (src/server/grpc-unary.ts) |
 * | `connect-h1`   | Connect over HTTP/1.1  | connect-node                                   |
 * | `connect-h2`   | Connect over HTTP/2    | connect-node                                   |
 * | `grpc-web`     | gRPC-Web over HTTP/1.1 | connect-node                                   |
 *
 * With TESSERA_GRPC_FAST_PATH=false every kind takes connect-node. test/e2e/paths.e2e.test.ts compares the two paths.
 *
 * grpc-js conventions used throughout: proto-loader with keepCase false (camelCase fields), longs as String, enums as
 * numbers (the default), defaults true, oneofs true.
 */
import http from "node:http";
import { fileURLToPath } from "node:url";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { timestampMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { TokenType, type ClientInfo } from "../../gen/tessera/v1/common_pb.js";
import { SessionService, type Session } from "../../gen/tessera/v1/session_pb.js";
import { InactiveReason, TokenService } from "../../gen/tessera/v1/token_pb.js";

export { Code, ConnectError, InactiveReason, TokenType };

const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));

// ---------------------------------------------------------------------------------------------------------------
// Connect clients

export type ConnectKind = "connect-grpc" | "connect-h1" | "connect-h2" | "grpc-web";

export interface ConnectClients {
  tokens: Client<typeof TokenService>;
  sessions: Client<typeof SessionService>;
  close(): void;
}

/** A transport of the given kind plus the means to drop its connections. */
export function connectTransport(kind: ConnectKind, baseUrl: string): { transport: Transport; close(): void } {
  if (kind === "connect-h1" || kind === "grpc-web") {
    const agent = new http.Agent({ keepAlive: true });
    const options = { baseUrl, httpVersion: "1.1", nodeOptions: { agent } } as const;
    return {
      transport: kind === "grpc-web" ? createGrpcWebTransport(options) : createConnectTransport(options),
      close: () => agent.destroy(),
    };
  }
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport =
    kind === "connect-grpc"
      ? createGrpcTransport({ baseUrl, sessionManager })
      : createConnectTransport({ baseUrl, httpVersion: "2", sessionManager });
  return { transport, close: () => sessionManager.abort() };
}

export function connectClients(kind: ConnectKind, baseUrl: string): ConnectClients {
  const { transport, close } = connectTransport(kind, baseUrl);
  return { tokens: createClient(TokenService, transport), sessions: createClient(SessionService, transport), close };
}

// ---------------------------------------------------------------------------------------------------------------
// @grpc/grpc-js clients

type Callback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;
type UnaryMethod = (req: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, cb: Callback<unknown>) => unknown;

let grpcPackage: grpc.GrpcObject | undefined;

function tesseraPackage(): grpc.GrpcObject {
  grpcPackage ??= grpc.loadPackageDefinition(
    loadSync(["tessera/v1/token.proto", "tessera/v1/session.proto"], {
      includeDirs: [PROTO_DIR],
      keepCase: false,
      longs: String,
      defaults: true,
      oneofs: true,
    }),
  );
  return (grpcPackage.tessera as grpc.GrpcObject).v1 as grpc.GrpcObject;
}

/** A grpc-js client of `tessera.v1.<service>` at host:port, without TLS. */
export function grpcJsClient(service: "TokenService" | "SessionService", baseUrl: string): grpc.Client {
  const Ctor = tesseraPackage()[service] as grpc.ServiceClientConstructor;
  return new Ctor(new URL(baseUrl).host, grpc.credentials.createInsecure());
}

/**
 * Promisifies one unary method of a grpc-js client. A failed call rejects with a ConnectError carrying the same gRPC
 * status code (Connect's Code numbers are the gRPC ones), so tests check errors the same way for every client kind.
 */
export function unary<Res = Record<string, unknown>>(
  client: grpc.Client,
  method: string,
): (req: Record<string, unknown>, deadlineMs?: number) => Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method];
  if (typeof fn !== "function") throw new Error(`grpc-js client has no method ${method}`);
  return (req, deadlineMs = 20_000) =>
    new Promise<Res>((resolve, reject) => {
      fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, res) => {
        if (err) reject(new ConnectError(err.details, err.code as number as Code, undefined, undefined, err));
        else resolve(res as Res);
      });
    });
}

// grpc-js represents google.protobuf.Struct as its message form: { fields: { name: { stringValue: "x" } } }.
type GrpcValue = Record<string, unknown>;

export function toGrpcStruct(obj: JsonObject): { fields: Record<string, GrpcValue> } {
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, toGrpcValue(v)])) };
}

function toGrpcValue(v: JsonValue): GrpcValue {
  if (v === null) return { nullValue: "NULL_VALUE" };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toGrpcValue) } };
  return { structValue: toGrpcStruct(v) };
}

export function fromGrpcStruct(s: unknown): JsonObject | undefined {
  if (s === null || s === undefined) return undefined;
  const fields = (s as { fields?: Record<string, GrpcValue> }).fields ?? {};
  return Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, fromGrpcValue(v)]));
}

function fromGrpcValue(v: GrpcValue): JsonValue {
  const kind = v.kind as string;
  const value = v[kind];
  switch (kind) {
    case "nullValue":
      return null;
    case "listValue":
      return ((value as { values?: GrpcValue[] }).values ?? []).map(fromGrpcValue);
    case "structValue":
      return fromGrpcStruct(value) ?? {};
    default:
      return value as JsonValue;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One interface over every client kind

export type ClientKind = ConnectKind | "grpc-js";
/** Every client kind; the header says which server path each one takes. */
export const CLIENT_KINDS: readonly ClientKind[] = ["connect-grpc", "connect-h1", "connect-h2", "grpc-web", "grpc-js"];

export type Device = Partial<Pick<ClientInfo, "deviceId" | "userAgent" | "ip" | "platform">>;

export interface IssueArgs {
  subject: string;
  audience?: string[];
  scopes?: string[];
  extraClaims?: JsonObject;
  client?: Device;
  accessTtlSeconds?: number;
  refreshTtlSeconds?: number;
}

export interface Pair {
  accessToken: string;
  refreshToken: string;
  tokenType: string;
  accessExpiresAt: number;
  refreshExpiresAt: number;
}

export interface Issued {
  tokens: Pair;
  sessionId: string;
}

export type RevokeTarget = { token: string } | { sessionId: string } | { subject: string } | Record<string, never>;

export interface Introspection {
  active: boolean;
  subject: string;
  scopes: string[];
  audience: string[];
  issuer: string;
  expiresAt: number | undefined;
  issuedAt: number | undefined;
  notBefore: number | undefined;
  jti: string;
  sessionId: string;
  tokenType: TokenType;
  claims: JsonObject | undefined;
  inactiveReason: InactiveReason;
}

export interface SessionView {
  sessionId: string;
  subject: string;
  client: Required<Device>;
  createdAt: number | undefined;
  lastUsedAt: number | undefined;
  expiresAt: number | undefined;
  idleExpiresAt: number | undefined;
}

export interface TesseraClient {
  readonly kind: ClientKind;
  issue(args: IssueArgs): Promise<Issued>;
  refresh(refreshToken: string, client?: Device): Promise<Issued>;
  revoke(target: RevokeTarget, reason?: string): Promise<{ sessionsRevoked: number; tokenRevoked: boolean }>;
  introspect(token: string, expectedType?: TokenType, audience?: string): Promise<Introspection>;
  listSessions(subject: string): Promise<SessionView[]>;
  getSession(sessionId: string): Promise<SessionView>;
  close(): void;
}

export function tesseraClient(kind: ClientKind, baseUrl: string): TesseraClient {
  return kind === "grpc-js" ? grpcJsTessera(baseUrl) : connectTessera(kind, baseUrl);
}

const ms = (t: Timestamp | undefined): number | undefined => (t ? timestampMs(t) : undefined);
const device = (c: Device = {}): Required<Device> => ({
  deviceId: c.deviceId ?? "",
  userAgent: c.userAgent ?? "",
  ip: c.ip ?? "",
  platform: c.platform ?? "",
});

/** The fields of an IssueRequest that both client families spell the same way. */
const issueBase = (a: IssueArgs) => ({
  subject: a.subject,
  audience: a.audience ?? [],
  scopes: a.scopes ?? [],
  client: device(a.client),
});

function connectTessera(kind: ConnectKind, baseUrl: string): TesseraClient {
  const { tokens, sessions, close } = connectClients(kind, baseUrl);
  const pair = (p: { accessToken: string; refreshToken: string; tokenType: string; accessExpiresAt?: Timestamp; refreshExpiresAt?: Timestamp } | undefined): Pair => ({
    accessToken: p?.accessToken ?? "",
    refreshToken: p?.refreshToken ?? "",
    tokenType: p?.tokenType ?? "",
    accessExpiresAt: ms(p?.accessExpiresAt) ?? 0,
    refreshExpiresAt: ms(p?.refreshExpiresAt) ?? 0,
  });
  const session = (s: Session | undefined): SessionView => ({
    sessionId: s?.sessionId ?? "",
    subject: s?.subject ?? "",
    client: device(s?.client),
    createdAt: ms(s?.createdAt),
    lastUsedAt: ms(s?.lastUsedAt),
    expiresAt: ms(s?.expiresAt),
    idleExpiresAt: ms(s?.idleExpiresAt),
  });
  const duration = (seconds: number | undefined) => (seconds === undefined ? undefined : { seconds: BigInt(seconds) });
  return {
    kind,
    async issue(a) {
      const res = await tokens.issue({
        ...issueBase(a),
        ...(a.extraClaims ? { extraClaims: a.extraClaims } : {}),
        ...(a.accessTtlSeconds !== undefined ? { accessTtl: duration(a.accessTtlSeconds) } : {}),
        ...(a.refreshTtlSeconds !== undefined ? { refreshTtl: duration(a.refreshTtlSeconds) } : {}),
      });
      return { tokens: pair(res.tokens), sessionId: res.sessionId };
    },
    async refresh(refreshToken, client) {
      const res = await tokens.refresh({ refreshToken, client: device(client) });
      return { tokens: pair(res.tokens), sessionId: res.sessionId };
    },
    async revoke(target, reason = "") {
      const [name, value] = Object.entries(target)[0] ?? [];
      const res = await tokens.revoke({
        reason,
        target: name === undefined ? { case: undefined } : { case: name as "token" | "sessionId" | "subject", value: value as string },
      });
      return { sessionsRevoked: res.sessionsRevoked, tokenRevoked: res.tokenRevoked };
    },
    async introspect(token, expectedType = TokenType.UNSPECIFIED, audience = "") {
      const r = await tokens.introspect({ token, expectedType, audience });
      return {
        active: r.active,
        subject: r.subject,
        scopes: r.scopes,
        audience: r.audience,
        issuer: r.issuer,
        expiresAt: ms(r.expiresAt),
        issuedAt: ms(r.issuedAt),
        notBefore: ms(r.notBefore),
        jti: r.jti,
        sessionId: r.sessionId,
        tokenType: r.tokenType,
        claims: r.claims,
        inactiveReason: r.inactiveReason,
      };
    },
    async listSessions(subject) {
      return (await sessions.listSessions({ subject })).sessions.map(session);
    },
    async getSession(sessionId) {
      return session((await sessions.getSession({ sessionId })).session);
    },
    close,
  };
}

type GrpcTs = { seconds: string; nanos: number } | null | undefined;
type GrpcMsg = Record<string, unknown>;

function grpcJsTessera(baseUrl: string): TesseraClient {
  const tokenClient = grpcJsClient("TokenService", baseUrl);
  const sessionClient = grpcJsClient("SessionService", baseUrl);
  const call = {
    issue: unary<GrpcMsg>(tokenClient, "issue"),
    refresh: unary<GrpcMsg>(tokenClient, "refresh"),
    revoke: unary<GrpcMsg>(tokenClient, "revoke"),
    introspect: unary<GrpcMsg>(tokenClient, "introspect"),
    listSessions: unary<GrpcMsg>(sessionClient, "listSessions"),
    getSession: unary<GrpcMsg>(sessionClient, "getSession"),
  };
  const gms = (t: unknown): number | undefined => {
    const ts = t as GrpcTs;
    return ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6) : undefined;
  };
  const pair = (p: unknown): Pair => {
    const m = (p ?? {}) as GrpcMsg;
    return {
      accessToken: m.accessToken as string,
      refreshToken: m.refreshToken as string,
      tokenType: m.tokenType as string,
      accessExpiresAt: gms(m.accessExpiresAt) ?? 0,
      refreshExpiresAt: gms(m.refreshExpiresAt) ?? 0,
    };
  };
  const session = (s: unknown): SessionView => {
    const m = (s ?? {}) as GrpcMsg;
    return {
      sessionId: m.sessionId as string,
      subject: m.subject as string,
      client: device((m.client ?? {}) as Device),
      createdAt: gms(m.createdAt),
      lastUsedAt: gms(m.lastUsedAt),
      expiresAt: gms(m.expiresAt),
      idleExpiresAt: gms(m.idleExpiresAt),
    };
  };
  const duration = (seconds: number | undefined) => (seconds === undefined ? null : { seconds: String(seconds), nanos: 0 });
  return {
    kind: "grpc-js",
    async issue(a) {
      const res = await call.issue({
        ...issueBase(a),
        extraClaims: a.extraClaims ? toGrpcStruct(a.extraClaims) : null,
        accessTtl: duration(a.accessTtlSeconds),
        refreshTtl: duration(a.refreshTtlSeconds),
      });
      return { tokens: pair(res.tokens), sessionId: res.sessionId as string };
    },
    async refresh(refreshToken, client) {
      const res = await call.refresh({ refreshToken, client: device(client) });
      return { tokens: pair(res.tokens), sessionId: res.sessionId as string };
    },
    async revoke(target, reason = "") {
      const res = await call.revoke({ ...target, reason });
      return { sessionsRevoked: res.sessionsRevoked as number, tokenRevoked: res.tokenRevoked as boolean };
    },
    async introspect(token, expectedType = TokenType.UNSPECIFIED, audience = "") {
      const r = await call.introspect({ token, expectedType, audience });
      return {
        active: r.active as boolean,
        subject: r.subject as string,
        scopes: r.scopes as string[],
        audience: r.audience as string[],
        issuer: r.issuer as string,
        expiresAt: gms(r.expiresAt),
        issuedAt: gms(r.issuedAt),
        notBefore: gms(r.notBefore),
        jti: r.jti as string,
        sessionId: r.sessionId as string,
        tokenType: r.tokenType as TokenType,
        claims: fromGrpcStruct(r.claims),
        inactiveReason: r.inactiveReason as InactiveReason,
      };
    },
    async listSessions(subject) {
      return ((await call.listSessions({ subject })).sessions as unknown[]).map(session);
    },
    async getSession(sessionId) {
      return session((await call.getSession({ sessionId })).session);
    },
    close() {
      tokenClient.close();
      sessionClient.close();
    },
  };
}

/**
 * What Introspect says of a token in one word: "ACTIVE", or the inactive reason's name ("REVOKED", "ROTATED", ...).
 * expectedType defaults to ACCESS; audience, if given, must be in the token.
 */
export async function statusOf(c: TesseraClient, token: string, expectedType = TokenType.ACCESS, audience = ""): Promise<string> {
  const r = await c.introspect(token, expectedType, audience);
  if (r.active !== (r.inactiveReason === InactiveReason.UNSPECIFIED)) {
    throw new Error(`inconsistent introspection: active=${r.active}, inactive_reason=${InactiveReason[r.inactiveReason]}`);
  }
  return r.active ? "ACTIVE" : InactiveReason[r.inactiveReason];
}

/** Awaits a call that must fail, and returns its gRPC code (fails the test if it succeeds). */
export async function codeOf(call: Promise<unknown>): Promise<Code> {
  try {
    await call;
  } catch (err) {
    return ConnectError.from(err).code;
  }
  throw new Error("expected the call to fail, but it succeeded");
}
