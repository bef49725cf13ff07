/**
 * Ceiling 2: a bare @grpc/grpc-js server with the same .proto (loaded by @grpc/proto-loader), whose Introspect
 * handler answers {} at once. `node --import tsx bench/servers/noop-grpcjs.ts <port>`; prints "ready" once bound.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

const PROTO_DIR = fileURLToPath(new URL("../../proto", import.meta.url));
const pkg = grpc.loadPackageDefinition(loadSync("tessera/v1/token.proto", { includeDirs: [PROTO_DIR] }));
const tokenService = ((pkg.tessera as grpc.GrpcObject).v1 as grpc.GrpcObject).TokenService as grpc.ServiceClientConstructor;

const server = new grpc.Server();
server.addService(tokenService.service, {
  Introspect: (_call: unknown, done: grpc.sendUnaryData<object>) => done(null, {}),
});
server.bindAsync(`127.0.0.1:${process.argv[2]}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write("ready\n");
});
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
