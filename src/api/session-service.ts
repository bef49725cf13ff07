/** tessera.v1.SessionService. */
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { GetSessionResponseSchema, ListSessionsResponseSchema, SessionService } from "../../gen/tessera/v1/session_pb.js";
import type { Authority } from "../domain/authority.js";
import { session } from "./convert.js";
import * as v from "./validate.js";

export function sessionService({ authority }: { authority: Authority }): ServiceImpl<typeof SessionService> {
  return {
    async listSessions(req) {
      const sessions = await authority.listSessions(v.subject("subject", req.subject));
      return create(ListSessionsResponseSchema, { sessions: sessions.map(session) });
    },
    async getSession(req) {
      const s = await authority.getSession(v.sessionId("session_id", req.sessionId));
      return create(GetSessionResponseSchema, { session: session(s) });
    },
  };
}
