/**
 * tessera.v1.SessionService. A caller with `subjects` sees only sessions of its subjects: ListSessions of another
 * subject, and GetSession of another subject's session or of an unknown one, are the same PERMISSION_DENIED.
 */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { GetSessionResponseSchema, ListSessionsResponseSchema, SessionService } from "../../gen/tessera/v1/session_pb.js";
import type { Authority } from "../domain/authority.js";
import { TesseraError } from "../domain/errors.js";
import { requireSubject, scopeOf } from "./auth.js";
import { session } from "./convert.js";
import * as v from "./validate.js";

export function sessionService({ authority }: { authority: Authority }): ServiceImpl<typeof SessionService> {
  return {
    async listSessions(req, ctx) {
      const subject = v.subject("subject", req.subject);
      requireSubject(ctx, subject);
      const sessions = await authority.listSessions(subject);
      return create(ListSessionsResponseSchema, { sessions: sessions.map(session) });
    },
    async getSession(req, ctx) {
      const sessionId = v.sessionId("session_id", req.sessionId);
      const s = await authority.getSession(sessionId).catch((err: unknown) => {
        // Scoped: an unknown or ended session is refused like another subject's (unscoped: NOT_FOUND, as ever).
        const scope = scopeOf(ctx);
        if (scope && err instanceof TesseraError && err.code === "not_found") throw scope.refuse(ctx, { why: "no such live session" });
        throw err;
      });
      requireSubject(ctx, s.subject);
      return create(GetSessionResponseSchema, { session: session(s) });
    },
  };
}
