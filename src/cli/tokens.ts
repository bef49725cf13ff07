/** `tessera issue`, `introspect`, `refresh`, `revoke`: TokenService. */
import type { JsonObject, MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { TokenType, TokenTypeSchema, type ClientInfoSchema, type TokenPair } from "../../gen/tessera/v1/common_pb.js";
import {
  InactiveReasonSchema,
  IntrospectResponseSchema,
  IssueResponseSchema,
  RefreshResponseSchema,
  RevokeResponseSchema,
  type RevokeRequest,
} from "../../gen/tessera/v1/token_pb.js";
import { UsageError, type Command, type Context } from "./context.js";
import { enumName, fields, iso, jsonLine, safe } from "./format.js";

const CLIENT_OPTIONS = {
  "device-id": { type: "string", value: "ID", doc: "the device or installation the session belongs to" },
  "user-agent": { type: "string", value: "UA", doc: "the end user's user agent" },
} as const;

function clientInfo(ctx: Context): MessageInitShape<typeof ClientInfoSchema> {
  const info: { deviceId?: string; userAgent?: string; ip?: string; platform?: string } = {};
  const set = (field: "deviceId" | "userAgent" | "ip" | "platform", option: string) => {
    const v = ctx.str(option);
    if (v !== undefined) info[field] = v;
  };
  set("deviceId", "device-id");
  set("userAgent", "user-agent");
  set("ip", "ip");
  set("platform", "platform");
  return info;
}

function jsonObject(ctx: Context, option: string): JsonObject | undefined {
  const text = ctx.str(option);
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`--${option}: not JSON (${(err as Error).message})`, ctx.command.name);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new UsageError(`--${option}: must be a JSON object, such as '{"tenant":"b"}'`, ctx.command.name);
  }
  return value as JsonObject;
}

function pairLines(sessionId: string, t: TokenPair | undefined): string {
  return fields([
    ["session", sessionId],
    ["access token", t?.accessToken ?? ""],
    ["access expires", iso(t?.accessExpiresAt)],
    ["refresh token", t?.refreshToken ?? ""],
    ["refresh expires", iso(t?.refreshExpiresAt)],
  ]);
}

const ttl = (ctx: Context, option: string) => {
  const ms = ctx.duration(option);
  if (ms !== undefined && ms <= 0) throw new UsageError(`--${option} must be above 0`, ctx.command.name);
  return ms === undefined ? undefined : durationFromMs(ms);
};

const issue: Command = {
  name: "issue",
  args: "SUBJECT",
  summary: "open a session for SUBJECT and print its access and refresh tokens",
  arity: [1, 1],
  options: {
    audience: { type: "string", multiple: true, value: "AUD", doc: "an audience of the access token (repeatable; default: the server's)" },
    scope: { type: "string", multiple: true, value: "SCOPE", doc: "a scope granted to the access token (repeatable)" },
    claims: { type: "string", value: "JSON", doc: "extra claims of the access token, a JSON object" },
    "sensitive-claims": { type: "string", value: "JSON", doc: "claims only Introspect gives back (needs the server's claims key), a JSON object" },
    ...CLIENT_OPTIONS,
    ip: { type: "string", value: "IP", doc: "the end user's IP address" },
    platform: { type: "string", value: "NAME", doc: "the client platform: ios, android, web, ..." },
    "access-ttl": { type: "string", value: "DURATION", doc: "access token lifetime (default: the server's)" },
    "refresh-ttl": { type: "string", value: "DURATION", doc: "refresh token (session) lifetime (default: the server's)" },
  },
  async run(ctx) {
    const extraClaims = jsonObject(ctx, "claims");
    const sensitiveClaims = jsonObject(ctx, "sensitive-claims");
    const accessTtl = ttl(ctx, "access-ttl");
    const refreshTtl = ttl(ctx, "refresh-ttl");
    const res = await ctx.client().tokens.issue(
      {
        subject: ctx.args[0]!,
        audience: ctx.list("audience"),
        scopes: ctx.list("scope"),
        client: clientInfo(ctx),
        ...(extraClaims ? { extraClaims } : {}),
        ...(sensitiveClaims ? { sensitiveClaims } : {}),
        ...(accessTtl ? { accessTtl } : {}),
        ...(refreshTtl ? { refreshTtl } : {}),
      },
      { signal: ctx.signal },
    );
    ctx.out(ctx.json ? jsonLine(IssueResponseSchema, res) : pairLines(res.sessionId, res.tokens));
    return 0;
  },
};

const introspect: Command = {
  name: "introspect",
  args: "[TOKEN|-]",
  summary: "say whether a token is active and what it holds (exit 1 when inactive)",
  arity: [0, 1],
  options: {
    refresh: { type: "boolean", doc: "expect a refresh token (default: an access token)" },
    audience: { type: "string", value: "AUD", doc: "the token must carry this audience" },
  },
  more: "TOKEN: \"-\", or none with stdin not a terminal, reads it from stdin (out of the shell history).",
  async run(ctx) {
    const token = await ctx.secret(ctx.args[0], "token");
    const res = await ctx.client().tokens.introspect(
      { token, expectedType: ctx.bool("refresh") ? TokenType.REFRESH : TokenType.ACCESS, audience: ctx.str("audience") ?? "" },
      { signal: ctx.signal },
    );
    if (ctx.json) {
      ctx.out(jsonLine(IntrospectResponseSchema, res));
    } else if (!res.active) {
      ctx.out(fields([["active", `no (${enumName(InactiveReasonSchema, res.inactiveReason).toUpperCase()})`]]));
    } else {
      ctx.out(
        fields([
          ["active", "yes"],
          ["type", enumName(TokenTypeSchema, res.tokenType)],
          ["subject", safe(res.subject)],
          ["scopes", res.scopes.length > 0 ? res.scopes.join(" ") : undefined],
          ["audience", res.audience.length > 0 ? res.audience.map(safe).join(" ") : undefined],
          ["issuer", safe(res.issuer)],
          ["session", res.sessionId],
          ["jti", res.jti],
          ["issued at", iso(res.issuedAt)],
          ["not before", iso(res.notBefore)],
          ["expires at", iso(res.expiresAt)],
          ["risk score", String(res.riskScore)],
          ["claims", res.claims && Object.keys(res.claims).length > 0 ? safe(JSON.stringify(res.claims)) : undefined],
          ["sensitive", res.sensitiveClaims ? safe(JSON.stringify(res.sensitiveClaims)) : undefined],
        ]),
      );
    }
    return res.active ? 0 : 1;
  },
};

const refresh: Command = {
  name: "refresh",
  args: "[REFRESH_TOKEN|-]",
  summary: "rotate a refresh token and print the new pair",
  arity: [0, 1],
  options: CLIENT_OPTIONS,
  more:
    "REFRESH_TOKEN: \"-\", or none with stdin not a terminal, reads it from stdin. Give the same --device-id and\n" +
    "--user-agent as at issue: inside the server's grace window a repeat from the same client is a retry, not theft.",
  async run(ctx) {
    const refreshToken = await ctx.secret(ctx.args[0], "refresh token");
    const res = await ctx.client().tokens.refresh({ refreshToken, client: clientInfo(ctx) }, { signal: ctx.signal });
    ctx.out(ctx.json ? jsonLine(RefreshResponseSchema, res) : pairLines(res.sessionId, res.tokens));
    return 0;
  },
};

const revoke: Command = {
  name: "revoke",
  args: "",
  summary: "revoke a token, a session, or every session of a subject",
  arity: [0, 0],
  options: {
    token: { type: "string", value: "TOKEN|-", doc: "a token (\"-\": read it from stdin); a refresh token ends its session" },
    session: { type: "string", value: "ID", doc: "a session, with every token it issued" },
    subject: { type: "string", value: "SUBJECT", doc: "every session and token of SUBJECT (logout everywhere)" },
    reason: { type: "string", value: "TEXT", doc: "why, for the audit trail" },
  },
  more: "Exactly one of --token, --session, --subject. Revoking what is already dead succeeds and reports 0.",
  async run(ctx) {
    const given = (["token", "session", "subject"] as const).filter((o) => ctx.str(o) !== undefined);
    if (given.length !== 1) throw new UsageError("needs exactly one of --token, --session or --subject", ctx.command.name);
    let target: RevokeRequest["target"];
    if (given[0] === "token") target = { case: "token", value: await ctx.secret(ctx.str("token"), "token") };
    else if (given[0] === "session") target = { case: "sessionId", value: ctx.str("session")! };
    else target = { case: "subject", value: ctx.str("subject")! };
    const res = await ctx.client().tokens.revoke({ target, reason: ctx.str("reason") ?? "" }, { signal: ctx.signal });
    if (ctx.json) ctx.out(jsonLine(RevokeResponseSchema, res));
    else
      ctx.out(
        fields([
          ["sessions revoked", String(res.sessionsRevoked)],
          ["token revoked", res.tokenRevoked ? "yes" : "no"],
        ]),
      );
    return 0;
  },
};

export const TOKEN_COMMANDS: readonly Command[] = [issue, introspect, refresh, revoke];
