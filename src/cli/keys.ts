/** `tessera keys list`, `keys rotate`, `keys revoke`: KeyService. */
import {
  KeyStateSchema,
  ListKeysResponseSchema,
  RevokeKeyResponseSchema,
  RotateKeysResponseSchema,
  type KeyInfo,
} from "../../gen/tessera/v1/key_pb.js";
import { UsageError, type Command } from "./context.js";
import { enumName, fields, iso, jsonLine, table } from "./format.js";

const optionalIso = (t: Parameters<typeof iso>[0]) => (t === undefined ? undefined : iso(t));

function keyFields(k: KeyInfo | undefined): string {
  return fields([
    ["kid", k?.kid ?? ""],
    ["alg", k?.alg ?? ""],
    ["state", enumName(KeyStateSchema, k?.state ?? 0)],
    ["signing", k?.signing ? "yes" : "no"],
    ["created", iso(k?.createdAt)],
    ["activates", optionalIso(k?.activatesAt)],
    ["retired", optionalIso(k?.retiredAt)],
    ["removed", optionalIso(k?.removedAt)],
    ["revoked", optionalIso(k?.revokedAt)],
  ]);
}

const list: Command = {
  name: "keys list",
  args: "",
  summary: "the signing keys, newest first, and which one signs now",
  arity: [0, 0],
  async run(ctx) {
    const res = await ctx.client().keys.listKeys({}, { signal: ctx.signal });
    if (ctx.json) {
      ctx.out(jsonLine(ListKeysResponseSchema, res));
    } else {
      ctx.out(
        table(
          ["KID", "ALG", "STATE", "SIGNING", "CREATED", "ACTIVATES", "RETIRED", "REMOVED", "REVOKED"],
          res.keys.map((k) => [
            k.kid,
            k.alg,
            enumName(KeyStateSchema, k.state),
            k.signing ? "yes" : "no",
            iso(k.createdAt),
            k.activatesAt ? iso(k.activatesAt) : "",
            k.retiredAt ? iso(k.retiredAt) : "",
            k.removedAt ? iso(k.removedAt) : "",
            k.revokedAt ? iso(k.revokedAt) : "",
          ]),
          true,
        ),
      );
    }
    return 0;
  },
};

const rotate: Command = {
  name: "keys rotate",
  args: "",
  summary: "make a new signing key: published now, signing after the server's prepublish delay",
  arity: [0, 0],
  options: {
    immediate: { type: "boolean", doc: "sign with it at once (verifiers caching the JWKS then meet an unknown kid)" },
  },
  more: "If a key is already waiting to sign, that one is printed (and none made).",
  async run(ctx) {
    const res = await ctx.client().keys.rotateKeys({ immediate: ctx.bool("immediate") }, { signal: ctx.signal });
    ctx.out(ctx.json ? jsonLine(RotateKeysResponseSchema, res) : keyFields(res.key));
    return 0;
  },
};

const revoke: Command = {
  name: "keys revoke",
  args: "KID",
  summary: "revoke a stolen key: out of the JWKS and every token it signed inactive, at once",
  arity: [1, 1],
  options: {
    reason: { type: "string", value: "TEXT", doc: "why, for the audit trail (required)" },
  },
  more: "If KID was signing, a fresh key signs from that instant.",
  async run(ctx) {
    const reason = ctx.str("reason");
    if (reason === undefined || reason.trim() === "") throw new UsageError("needs --reason (it goes to the audit trail)", ctx.command.name);
    const res = await ctx.client().keys.revokeKey({ kid: ctx.args[0]!, reason }, { signal: ctx.signal });
    if (ctx.json) ctx.out(jsonLine(RevokeKeyResponseSchema, res));
    else
      ctx.out(
        fields([
          ["revoked", res.revoked?.kid ?? ""],
          ["alg", res.revoked?.alg ?? ""],
          ["state", enumName(KeyStateSchema, res.revoked?.state ?? 0)],
          ["revoked at", iso(res.revoked?.revokedAt)],
          ["signing now", res.signing ? `${res.signing.kid} (${res.signing.alg})` : "-"],
        ]),
      );
    return 0;
  },
};

export const KEY_COMMANDS: readonly Command[] = [list, rotate, revoke];
