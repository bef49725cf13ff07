/**
 * Ceiling 1: the same connect-node stack Tessera runs on (connectNodeAdapter on a node:http2 h2c server), with
 * TokenService.Introspect answering an empty response without doing anything. `node --import tsx
 * bench/servers/noop-connect.ts <port>`; prints "ready" once listening.
 */
import http2 from "node:http2";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { TokenService } from "../../gen/tessera/v1/token_pb.js";
import { serve } from "./serve.js";

const handler = connectNodeAdapter({
  routes: (router) => router.rpc(TokenService.method.introspect, async () => ({})),
});
serve(http2.createServer(handler));
