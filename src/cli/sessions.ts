/** `tessera sessions list`, `sessions get`: SessionService. */
import { GetSessionResponseSchema, ListSessionsResponseSchema, type Session } from "../../gen/tessera/v1/session_pb.js";
import type { Command } from "./context.js";
import { fields, iso, jsonLine, safe, table } from "./format.js";

const list: Command = {
  name: "sessions list",
  args: "SUBJECT",
  summary: "the live sessions of SUBJECT, most recently used first",
  arity: [1, 1],
  async run(ctx) {
    const subject = ctx.args[0]!;
    const res = await ctx.client().sessions.listSessions({ subject }, { signal: ctx.signal });
    if (ctx.json) {
      ctx.out(jsonLine(ListSessionsResponseSchema, res));
    } else if (res.sessions.length === 0) {
      ctx.out(`no live sessions for ${safe(subject)}\n`);
    } else {
      ctx.out(
        table(
          ["SESSION", "DEVICE", "PLATFORM", "IP", "LAST USED", "EXPIRES", "USER AGENT"],
          res.sessions.map((s) => [
            s.sessionId,
            safe(s.client?.deviceId ?? ""),
            safe(s.client?.platform ?? ""),
            s.client?.ip ?? "",
            iso(s.lastUsedAt),
            iso(s.expiresAt),
            safe(s.client?.userAgent ?? ""),
          ]),
        ),
      );
    }
    return 0;
  },
};

export function sessionFields(s: Session | undefined): string {
  return fields([
    ["session", s?.sessionId ?? ""],
    ["subject", safe(s?.subject ?? "")],
    ["device", s?.client?.deviceId ? safe(s.client.deviceId) : undefined],
    ["user agent", s?.client?.userAgent ? safe(s.client.userAgent) : undefined],
    ["ip", s?.client?.ip || undefined],
    ["platform", s?.client?.platform ? safe(s.client.platform) : undefined],
    ["created", iso(s?.createdAt)],
    ["last used", iso(s?.lastUsedAt)],
    ["idle expires", iso(s?.idleExpiresAt)],
    ["expires", iso(s?.expiresAt)],
  ]);
}

const get: Command = {
  name: "sessions get",
  args: "SESSION_ID",
  summary: "one live session (exit 1, NOT_FOUND, once it has ended)",
  arity: [1, 1],
  async run(ctx) {
    const res = await ctx.client().sessions.getSession({ sessionId: ctx.args[0]! }, { signal: ctx.signal });
    ctx.out(ctx.json ? jsonLine(GetSessionResponseSchema, res) : sessionFields(res.session));
    return 0;
  },
};

export const SESSION_COMMANDS: readonly Command[] = [list, get];
