/**
 * gRPC server reflection against a real server, through clients nobody here wrote: `buf curl` (lists services and
 * methods, and calls Introspect knowing nothing but what reflection tells it) and grpc-js-reflection-client (describes
 * a message), each over v1 and v1alpha; then the corners of the protocol with a plain generated client.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { GrpcReflection } from "grpc-js-reflection-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { startServer, type StartedServer } from "../helpers/server.js";

const BUF = fileURLToPath(new URL("../../node_modules/.bin/buf", import.meta.url));
const run = promisify(execFile);

const TESSERA_METHODS = [
  "tessera.v1.SessionService/GetSession",
  "tessera.v1.SessionService/ListSessions",
  "tessera.v1.TokenService/Introspect",
  "tessera.v1.TokenService/Issue",
  "tessera.v1.TokenService/Refresh",
  "tessera.v1.TokenService/Revoke",
];
const STANDARD_SERVICES = [
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

let server: StartedServer;

beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.close();
});

/** Runs `buf curl` over gRPC (h2c) with schema from reflection only; resolves with stdout. */
async function bufCurl(args: string[]): Promise<string> {
  const { stdout } = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
    timeout: 20_000,
  });
  return stdout;
}

describe.each(["grpc-v1", "grpc-v1alpha"])("buf curl with --reflect-protocol %s", (protocol) => {
  it("lists every service", async () => {
    const out = await bufCurl(["--reflect-protocol", protocol, "--list-services", server.url]);
    const services = out.trim().split("\n");
    expect(services).toEqual(expect.arrayContaining(["tessera.v1.TokenService", "tessera.v1.SessionService", ...STANDARD_SERVICES]));
  });

  it("lists every method", async () => {
    const out = await bufCurl(["--reflect-protocol", protocol, "--list-methods", server.url]);
    const methods = out.trim().split("\n");
    expect(methods).toEqual(
      expect.arrayContaining([
        ...TESSERA_METHODS,
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      ]),
    );
  });

  it("calls Introspect knowing the schema from reflection alone", async () => {
    const out = await bufCurl([
      "--reflect-protocol",
      protocol,
      "--emit-defaults",
      "-d",
      JSON.stringify({ token: "not-a-token" }),
      `${server.url}/tessera.v1.TokenService/Introspect`,
    ]);
    const answer = JSON.parse(out) as Record<string, unknown>;
    expect(answer).toMatchObject({ active: false, inactiveReason: "INACTIVE_REASON_MALFORMED" });
  });
});

describe.each(["v1", "v1alpha"])("grpc-js-reflection-client over %s", (version) => {
  let client: GrpcReflection;
  beforeAll(() => {
    client = new GrpcReflection(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure(), {}, version);
  });

  it("lists the services", async () => {
    expect(await client.listServices()).toEqual(
      expect.arrayContaining(["tessera.v1.TokenService", "tessera.v1.SessionService", ...STANDARD_SERVICES]),
    );
  });

  it("describes tessera.v1.IntrospectRequest", async () => {
    const descriptor = await client.getDescriptorBySymbol("tessera.v1.IntrospectRequest");
    const type = descriptor.getProtobufJsRoot().lookupType("tessera.v1.IntrospectRequest");
    const fields = Object.values(type.fields).map((f) => ({ name: f.name, id: f.id, type: f.type, repeated: f.repeated }));
    // protobufjs reports field names in camelCase
    expect(fields).toEqual([
      { name: "token", id: 1, type: "string", repeated: false },
      { name: "expectedType", id: 2, type: ".tessera.v1.TokenType", repeated: false },
      { name: "audience", id: 3, type: "string", repeated: false },
    ]);
    const tokenType = descriptor.getProtobufJsRoot().lookupEnum("tessera.v1.TokenType");
    expect(tokenType.values).toMatchObject({ TOKEN_TYPE_UNSPECIFIED: 0 });
  });

  it("lists the methods of TokenService", async () => {
    const methods = await client.listMethods("tessera.v1.TokenService");
    expect(methods.map((m) => m.name).sort()).toEqual(["Introspect", "Issue", "Refresh", "Revoke"]);
  });
});

describe("reflection protocol corners (v1, one stream)", () => {
  type Ask = MessageInitShape<typeof ServerReflectionRequestSchema>["messageRequest"];
  let answers: ServerReflectionResponse[];
  const asks: Ask[] = [
    { case: "fileByFilename", value: "tessera/v1/token.proto" },
    { case: "fileByFilename", value: "no/such.proto" },
    { case: "fileContainingSymbol", value: "tessera.v1.TokenService.Introspect" },
    { case: "fileContainingSymbol", value: "tessera.v1.IntrospectRequest.expected_type" },
    { case: "fileContainingSymbol", value: "tessera.v1.TOKEN_TYPE_ACCESS" },
    { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.ServingStatus" },
    { case: "fileContainingSymbol", value: "tessera.v1.Nope" },
    { case: "fileContainingExtension", value: { containingType: "tessera.v1.IntrospectRequest", extensionNumber: 100 } },
    { case: "allExtensionNumbersOfType", value: "tessera.v1.IntrospectRequest" },
    { case: "allExtensionNumbersOfType", value: "tessera.v1.Nope" },
    { case: "listServices", value: "" },
  ];
  const requests = asks.map((messageRequest) => create(ServerReflectionRequestSchema, { host: "tessera", messageRequest }));

  beforeAll(async () => {
    const sessionManager = new Http2SessionManager(server.url);
    try {
      const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl: server.url, sessionManager }));
      answers = [];
      async function* send() {
        yield* requests;
      }
      for await (const res of reflection.serverReflectionInfo(send())) answers.push(res);
    } finally {
      sessionManager.abort();
    }
  });

  const files = (i: number): string[] => {
    const r = answers[i]?.messageResponse;
    if (r?.case !== "fileDescriptorResponse") throw new Error(`answer ${i} is ${r?.case}`);
    return r.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
  };
  const error = (i: number) => {
    const r = answers[i]?.messageResponse;
    return r?.case === "errorResponse" ? { code: r.value.errorCode, message: r.value.errorMessage } : r?.case;
  };

  it("answers every request once, in order, echoing it", () => {
    expect(answers).toHaveLength(requests.length);
    answers.forEach((a, i) => {
      expect(a.validHost).toBe("tessera");
      expect(a.originalRequest).toEqual(requests[i]);
    });
  });

  it("gives a file with all its transitive imports, the file first", () => {
    expect(files(0)[0]).toBe("tessera/v1/token.proto");
    expect(files(0).slice(1).sort()).toEqual([
      "google/protobuf/duration.proto",
      "google/protobuf/struct.proto",
      "google/protobuf/timestamp.proto",
      "tessera/v1/common.proto",
    ]);
  });

  it("finds the file of a method, a field, an enum value and a nested enum", () => {
    expect(files(2)[0]).toBe("tessera/v1/token.proto");
    expect(files(3)[0]).toBe("tessera/v1/token.proto");
    expect(files(4)[0]).toBe("tessera/v1/common.proto");
    expect(files(5)).toEqual(["grpc/health/v1/health.proto"]);
  });

  it("answers NOT_FOUND for unknown files, symbols, extensions and types", () => {
    for (const i of [1, 6, 7, 9]) expect(error(i)).toMatchObject({ code: Code.NotFound });
  });

  it("gives an empty extension list for a known type without extensions", () => {
    expect(answers[8]?.messageResponse).toEqual({
      case: "allExtensionNumbersResponse",
      value: expect.objectContaining({ baseTypeName: "tessera.v1.IntrospectRequest", extensionNumber: [] }),
    });
  });

  it("lists services on request", () => {
    const r = answers[10]?.messageResponse;
    expect(r?.case).toBe("listServicesResponse");
    const names = r?.case === "listServicesResponse" ? r.value.service.map((s) => s.name) : [];
    expect(names).toEqual(expect.arrayContaining(["tessera.v1.TokenService", ...STANDARD_SERVICES]));
  });
});
