/**
 * The sidecar's Envoy ext_authz service (src/sidecar/envoy.ts) over the wire: a real HTTP/2 server (connect-node, port
 * 0) called by @grpc/grpc-js with the messages built by @grpc/proto-loader from proto/envoy/ at run time, so the
 * .proto files are exercised independently of the generated code, as Envoy's own gRPC client would. `introspect` is a
 * small table of tokens plus a "stale" switch.
 *
 * grpc-js conventions here: keepCase false (camelCase fields), enums as String (so the tests read Envoy's enum names,
 * e.g. OVERWRITE_IF_EXISTS_OR_ADD, decoded from the numbers on the wire), bytes as Buffer, defaults true, oneofs true.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import {
  HeaderMapSchema,
  HeaderValueOptionSchema,
  HeaderValueSchema,
} from "../../gen/envoy/config/core/v3/base_pb.js";
import {
  AttributeContext_HttpRequestSchema,
  AttributeContext_RequestSchema,
  AttributeContextSchema,
} from "../../gen/envoy/service/auth/v3/attribute_context_pb.js";
import {
  Authorization,
  CheckRequestSchema,
  CheckResponseSchema,
  DeniedHttpResponseSchema,
  OkHttpResponseSchema,
} from "../../gen/envoy/service/auth/v3/external_auth_pb.js";
import { HttpStatusSchema } from "../../gen/envoy/type/v3/http_status_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { envoyAuthorization, headerValue, type EnvoyCheckDeps } from "../../src/sidecar/envoy.js";

const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));

// A JWT-shaped token (base64url segments, dots, padding allowed by RFC 6750's b64token).
const GOOD = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
const ODD_SUBJECT = "odd-subject-token";
const NO_SCOPES = "no-scopes-token==";
const BOOM = "boom-token";

let stale = false;
const seen: string[] = [];
const audiences: Array<string | undefined> = [];
const deps: EnvoyCheckDeps = {
  async introspect(token, audience) {
    seen.push(token);
    audiences.push(audience);
    if (stale) throw new ConnectError("revocation feed is stale", Code.Unavailable);
    switch (token) {
      case GOOD:
        return { active: true, subject: "alice@example.com", scopes: ["read", "write"], sessionId: "sess-123" };
      case ODD_SUBJECT:
        return { active: true, subject: "ü ser%\r\nx-evil: 1", scopes: ["a b", "c"], sessionId: "sess 9" };
      case NO_SCOPES:
        return { active: true, subject: "bob", scopes: [], sessionId: "sess-456" };
      case BOOM:
        throw new Error("redis at 10.1.2.3:6379 said NOAUTH");
      default:
        return { active: false, reason: "unknown" };
    }
  },
};

// What grpc-js hands back (proto-loader's plain objects).
interface HeaderOption {
  header: { key: string; value: string };
  append: { value: boolean } | null;
  appendAction: string;
}
interface CheckAnswer {
  status: { code: number; message: string } | null;
  httpResponse?: "deniedResponse" | "okResponse";
  deniedResponse?: { status: { code: string }; headers: HeaderOption[]; body: string };
  okResponse?: { headers: HeaderOption[]; headersToRemove: string[] };
}

let server: http2.Http2Server;
let client: grpc.Client;

function check(request: Record<string, unknown>): Promise<CheckAnswer> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, Function>).Check!;
    fn.call(client, request, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: CheckAnswer) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** A CheckRequest whose checked HTTP request has these headers in the `headers` map (Envoy's default form). */
const withHeaders = (headers: Record<string, string>) => ({ attributes: { request: { http: { headers } } } });

/** The same in `header_map` (Envoy with encode_raw_headers: true): key and raw_value only, one entry per line. */
const withHeaderMap = (headers: [string, string | Buffer][]) => ({
  attributes: {
    request: {
      http: { headerMap: { headers: headers.map(([key, v]) => ({ key, rawValue: Buffer.isBuffer(v) ? v : Buffer.from(v, "latin1") })) } },
    },
  },
});

function headerOf(options: HeaderOption[] | undefined, name: string): HeaderOption | undefined {
  return options?.find((o) => o.header.key === name);
}

function expectAllowed(answer: CheckAnswer, want: { subject: string; scopes: string; sessionId: string }): void {
  expect(answer.status?.code).toBe(0);
  expect(answer.httpResponse).toBe("okResponse");
  const headers = answer.okResponse!.headers;
  expect(headers.map((h) => [h.header.key, h.header.value])).toEqual([
    ["x-tessera-subject", want.subject],
    ["x-tessera-scopes", want.scopes],
    ["x-tessera-session-id", want.sessionId],
  ]);
  for (const h of headers) {
    expect(h.appendAction).toBe("OVERWRITE_IF_EXISTS_OR_ADD");
    expect(h.append).toEqual({ value: false }); // set explicitly, for Envoys that only read the deprecated field
  }
}

function expectUnauthenticated(answer: CheckAnswer, challenge: string): void {
  expect(answer.status?.code).toBe(16); // UNAUTHENTICATED
  expect(answer.httpResponse).toBe("deniedResponse");
  const denied = answer.deniedResponse!;
  expect(denied.status.code).toBe("Unauthorized");
  expect(headerOf(denied.headers, "www-authenticate")?.header.value).toBe(challenge);
  expect(headerOf(denied.headers, "www-authenticate")?.appendAction).toBe("OVERWRITE_IF_EXISTS_OR_ADD");
  expect(headerOf(denied.headers, "content-type")?.header.value).toBe("application/json");
  expect(() => JSON.parse(denied.body)).not.toThrow();
}

beforeAll(async () => {
  server = http2.createServer(connectNodeAdapter({ routes: (r) => r.service(Authorization, envoyAuthorization(deps)) }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const pkg = grpc.loadPackageDefinition(
    loadSync("envoy/service/auth/v3/external_auth.proto", {
      includeDirs: [PROTO_DIR],
      keepCase: false,
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
  );
  const auth = (((pkg.envoy as grpc.GrpcObject).service as grpc.GrpcObject).auth as grpc.GrpcObject).v3 as grpc.GrpcObject;
  const Ctor = auth.Authorization as grpc.ServiceClientConstructor;
  client = new Ctor(`127.0.0.1:${(server.address() as AddressInfo).port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

describe("Check: allowed", () => {
  it("forwards subject, scopes and session id, overwriting what the client sent, and strips other x-tessera-* headers", async () => {
    seen.length = 0;
    const answer = await check(
      withHeaders({
        authorization: `Bearer ${GOOD}`,
        "x-tessera-subject": "mallory",
        "x-tessera-admin": "true",
        "x-tessera-scopes": "admin",
        "x-other": "kept",
      }),
    );
    expectAllowed(answer, { subject: "alice@example.com", scopes: "read write", sessionId: "sess-123" });
    // The three set names are overwritten, not also removed; any other x-tessera-* the client sent is removed.
    expect(answer.okResponse!.headersToRemove).toEqual(["x-tessera-admin"]);
    expect(seen).toEqual([GOOD]);
  });

  it("passes the route's audience context extension to introspect, and none when the route sets none", async () => {
    audiences.length = 0;
    const withAudience = withHeaders({ authorization: `Bearer ${GOOD}` });
    (withAudience.attributes as Record<string, unknown>).contextExtensions = { audience: "orders" };
    expectAllowed(await check(withAudience), { subject: "alice@example.com", scopes: "read write", sessionId: "sess-123" });
    expectAllowed(await check(withHeaders({ authorization: `Bearer ${GOOD}` })), { subject: "alice@example.com", scopes: "read write", sessionId: "sess-123" });
    expect(audiences).toEqual(["orders", undefined]);
  });

  it("takes the Bearer scheme in any case, and one or more spaces before the token", async () => {
    for (const value of [`bearer ${GOOD}`, `BEARER ${GOOD}`, `BeArEr   ${GOOD}`, `  Bearer ${GOOD}\t`]) {
      expectAllowed(await check(withHeaders({ authorization: value })), {
        subject: "alice@example.com",
        scopes: "read write",
        sessionId: "sess-123",
      });
    }
  });

  it("matches the header name case-insensitively in the headers map", async () => {
    expectAllowed(await check(withHeaders({ Authorization: `Bearer ${GOOD}` })), {
      subject: "alice@example.com",
      scopes: "read write",
      sessionId: "sess-123",
    });
  });

  it("reads header_map (encode_raw_headers) when headers is empty, raw_value and any name case", async () => {
    const answer = await check(withHeaderMap([["Authorization", `Bearer ${GOOD}`], [":path", "/x"], ["x-tessera-role", "root"]]));
    expectAllowed(answer, { subject: "alice@example.com", scopes: "read write", sessionId: "sess-123" });
    expect(answer.okResponse!.headersToRemove).toEqual(["x-tessera-role"]);
    // `value` instead of `raw_value` is read too.
    const viaValue = await check({
      attributes: { request: { http: { headerMap: { headers: [{ key: "authorization", value: `bearer ${GOOD}` }] } } } },
    });
    expect(viaValue.status?.code).toBe(0);
  });

  it("percent-encodes header values that are not plain visible ASCII, so a subject cannot break or add headers", async () => {
    const answer = await check(withHeaders({ authorization: `Bearer ${ODD_SUBJECT}` }));
    expectAllowed(answer, {
      subject: "%C3%BC%20ser%25%0D%0Ax-evil:%201",
      scopes: "a%20b c",
      sessionId: "sess%209",
    });
    const [subject, scopes] = answer.okResponse!.headers;
    expect(subject!.header.value).toMatch(/^[\x21-\x7e]+$/);
    expect(decodeURIComponent(subject!.header.value)).toBe("ü ser%\r\nx-evil: 1");
    expect(scopes!.header.value.split(" ").map(decodeURIComponent)).toEqual(["a b", "c"]);
  });

  it("removes x-tessera-scopes instead of setting it empty when the token has no scopes", async () => {
    const answer = await check(withHeaders({ authorization: `Bearer ${NO_SCOPES}`, "x-tessera-scopes": "admin" }));
    expect(answer.status?.code).toBe(0);
    expect(answer.okResponse!.headers.map((h) => h.header.key)).toEqual(["x-tessera-subject", "x-tessera-session-id"]);
    expect(answer.okResponse!.headersToRemove).toEqual(["x-tessera-scopes"]);
  });
});

describe("Check: denied", () => {
  it("no Authorization header -> 401 with the bare `Bearer` challenge (RFC 6750 §3.1)", async () => {
    const answer = await check(withHeaders({ "x-other": "1" }));
    expectUnauthenticated(answer, "Bearer");
  });

  it("an empty CheckRequest, or attributes without a request, -> 401 `Bearer`", async () => {
    expectUnauthenticated(await check({}), "Bearer");
    expectUnauthenticated(await check({ attributes: {} }), "Bearer");
    expectUnauthenticated(await check({ attributes: { request: { http: {} } } }), "Bearer");
    expectUnauthenticated(await check({ attributes: { request: { http: { headerMap: {} } } } }), "Bearer");
  });

  it("another scheme -> 401 `Bearer` (unsupported method: no error code)", async () => {
    expectUnauthenticated(await check(withHeaders({ authorization: "Basic YWxpY2U6c2VjcmV0" })), "Bearer");
    expectUnauthenticated(await check(withHeaders({ authorization: `Bearerx ${GOOD}` })), "Bearer");
  });

  it("an inactive token -> 401 `Bearer error=\"invalid_token\"`, the token echoed nowhere", async () => {
    seen.length = 0;
    const token = "not-a-known-token";
    const answer = await check(withHeaders({ authorization: `Bearer ${token}` }));
    expectUnauthenticated(answer, 'Bearer error="invalid_token"');
    expect(seen).toEqual([token]);
    expect(JSON.stringify(answer)).not.toContain(token);
    expect(answer.status?.message).toBe("token inactive (unknown)");
  });

  it("malformed Bearer credentials -> 401 invalid_token without calling introspect", async () => {
    seen.length = 0;
    const malformed = [
      "Bearer",
      "Bearer ",
      `Bearer ${GOOD} extra`,
      `Bearer ${GOOD},Bearer ${GOOD}`, // two headers, as the headers map joins them
      "Bearer tok=en",
      "Bearer tök",
      `Bearer\t${GOOD}`,
      `Bearer ${"a".repeat(16 * 1024)}`, // over the 16 KiB bound
    ];
    for (const value of malformed) {
      const answer = await check(withHeaders({ authorization: value }));
      expectUnauthenticated(answer, 'Bearer error="invalid_token"');
      expect(answer.deniedResponse!.body.length).toBeLessThan(100);
    }
    // Two Authorization entries in header_map (not joined there), and a non-ASCII raw value.
    expectUnauthenticated(
      await check(withHeaderMap([["authorization", `Bearer ${GOOD}`], ["authorization", `Bearer ${GOOD}`]])),
      'Bearer error="invalid_token"',
    );
    expectUnauthenticated(
      await check(withHeaderMap([["authorization", Buffer.from([...Buffer.from("Bearer abc"), 0xff])]])),
      'Bearer error="invalid_token"',
    );
    // Two names differing in case in the headers map.
    expectUnauthenticated(
      await check(withHeaders({ authorization: `Bearer ${GOOD}`, AUTHORIZATION: `Bearer ${GOOD}` })),
      'Bearer error="invalid_token"',
    );
    expect(seen).toEqual([]);
  });

  it("answers huge requests (a 1 MiB header, 5,000 headers) without throwing", async () => {
    const many: Record<string, string> = {};
    for (let i = 0; i < 5000; i++) many[`x-h-${i}`] = "v";
    expectUnauthenticated(await check(withHeaders({ ...many, "x-big": "b".repeat(1 << 20) })), "Bearer");
    expectUnauthenticated(
      await check(withHeaders({ ...many, authorization: `Bearer ${"c".repeat(1 << 20)}` })),
      'Bearer error="invalid_token"',
    );
  });

  it("the sidecar cannot answer safely (stale feed) -> 503 and UNAVAILABLE", async () => {
    stale = true;
    try {
      const answer = await check(withHeaders({ authorization: `Bearer ${GOOD}` }));
      expect(answer.status?.code).toBe(14); // UNAVAILABLE
      expect(answer.httpResponse).toBe("deniedResponse");
      expect(answer.deniedResponse!.status.code).toBe("ServiceUnavailable");
      expect(headerOf(answer.deniedResponse!.headers, "www-authenticate")).toBeUndefined();
    } finally {
      stale = false;
    }
  });

  it("any other failure -> 503 and INTERNAL, without internals in the answer", async () => {
    const answer = await check(withHeaders({ authorization: `Bearer ${BOOM}` }));
    expect(answer.status?.code).toBe(13); // INTERNAL
    expect(answer.deniedResponse!.status.code).toBe("ServiceUnavailable");
    expect(JSON.stringify(answer)).not.toMatch(/redis|NOAUTH|10\.1\.2\.3/);
  });
});

describe("wire declaration", () => {
  // Field numbers as in envoyproxy/data-plane-api at 84e84367f2560cdb47b9bb78fd3e615feb80c3e4 (and googleapis'
  // google/rpc/status.proto): a guard against an edit to proto/envoy/ drifting from Envoy's wire form.
  const want: [string, DescMessage, Record<string, number>][] = [
    ["envoy.service.auth.v3.CheckRequest", CheckRequestSchema, { attributes: 1 }],
    ["envoy.service.auth.v3.CheckResponse", CheckResponseSchema, { status: 1, denied_response: 2, ok_response: 3 }],
    ["envoy.service.auth.v3.DeniedHttpResponse", DeniedHttpResponseSchema, { status: 1, headers: 2, body: 3 }],
    ["envoy.service.auth.v3.OkHttpResponse", OkHttpResponseSchema, { headers: 2, headers_to_remove: 5 }],
    ["envoy.service.auth.v3.AttributeContext", AttributeContextSchema, { request: 4, context_extensions: 10 }],
    ["envoy.service.auth.v3.AttributeContext.Request", AttributeContext_RequestSchema, { http: 2 }],
    ["envoy.service.auth.v3.AttributeContext.HttpRequest", AttributeContext_HttpRequestSchema, { headers: 3, header_map: 13 }],
    ["envoy.config.core.v3.HeaderValue", HeaderValueSchema, { key: 1, value: 2, raw_value: 3 }],
    ["envoy.config.core.v3.HeaderValueOption", HeaderValueOptionSchema, { header: 1, append: 2, append_action: 3 }],
    ["envoy.config.core.v3.HeaderMap", HeaderMapSchema, { headers: 1 }],
    ["envoy.type.v3.HttpStatus", HttpStatusSchema, { code: 1 }],
    ["google.rpc.Status", StatusSchema, { code: 1, message: 2, details: 3 }],
  ];
  it.each(want)("field numbers of %s", (typeName, schema, fields) => {
    expect(schema.typeName).toBe(typeName);
    expect(Object.fromEntries(schema.fields.map((f) => [f.name, f.number]))).toEqual(fields);
  });

  it("the service path Envoy calls", () => {
    expect(`/${Authorization.typeName}/${Authorization.method.check.name}`).toBe("/envoy.service.auth.v3.Authorization/Check");
  });

  it("headerValue leaves ordinary ids alone and encodes everything else reversibly", () => {
    expect(headerValue("user|123:abc@example.com_-.~")).toBe("user|123:abc@example.com_-.~");
    expect(headerValue("100%")).toBe("100%25");
    expect(decodeURIComponent(headerValue("a\u0000b\u007f c😀"))).toBe("a\u0000b\u007f c😀");
  });
});
