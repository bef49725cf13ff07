/** `tessera health` (grpc.health.v1.Health/Check) and `tessera hash-api-key` (no server needed). */
import { createClient } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponse_ServingStatusSchema,
} from "../../gen/grpc/health/v1/health_pb.js";
import { hashApiKeyCommand, readAll } from "./api-key.js";
import type { Command } from "./context.js";
import { enumName, jsonLine } from "./format.js";

const health: Command = {
  name: "health",
  args: "[SERVICE]",
  summary: "ask the health service: SERVING exits 0, anything else 1",
  arity: [0, 1],
  more: 'SERVICE: "" (the whole server, the default) or a service such as tessera.v1.TokenService.',
  async run(ctx) {
    const res = await createClient(Health, ctx.client().transport).check({ service: ctx.args[0] ?? "" }, { signal: ctx.signal });
    ctx.out(ctx.json ? jsonLine(HealthCheckResponseSchema, res) : `${enumName(HealthCheckResponse_ServingStatusSchema, res.status).toUpperCase()}\n`);
    return res.status === HealthCheckResponse_ServingStatus.SERVING ? 0 : 1;
  },
};

const hashApiKey: Command = {
  name: "hash-api-key",
  args: "",
  summary: "the SHA-256 of the API key on stdin, for the callers file (--new: make a key)",
  arity: [0, 0],
  options: {
    new: { type: "boolean", doc: "make a random key: the key on stderr, its hash on stdout" },
  },
  more: 'printf %s "$KEY" | tessera hash-api-key     (one trailing newline is ignored; the key never goes on the command line)',
  async run(ctx) {
    if (!ctx.bool("new") && ctx.io.stdin.isTTY) ctx.io.err("tessera hash-api-key: type the key, then Ctrl-D (it is not echoed back)\n");
    return hashApiKeyCommand(
      ctx.bool("new") ? ["--new"] : [],
      { readStdin: () => readAll(ctx.io.stdin), out: (t) => ctx.out(t), err: (t) => ctx.io.err(t) },
      'usage: printf %s "$KEY" | tessera hash-api-key   |   tessera hash-api-key --new',
    );
  },
};

export const MISC_COMMANDS: readonly Command[] = [health, hashApiKey];
