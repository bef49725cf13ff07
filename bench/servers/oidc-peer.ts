/**
 * The peer: node-oidc-provider (in-memory adapter, opaque access tokens) answering RFC 7662 introspection at
 * POST /token/introspection for a confidential client that mints its tokens with the client_credentials grant.
 * `node --import tsx bench/servers/oidc-peer.ts <port>`; prints "ready" once listening.
 */
import { createServer } from "node:http";
import Provider from "oidc-provider";
import { OIDC_CLIENT } from "../spec.js";
import { serve } from "./serve.js";

const port = Number(process.argv[2]);
const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [
    {
      client_id: OIDC_CLIENT.clientId,
      client_secret: OIDC_CLIENT.clientSecret,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: () => true },
    devInteractions: { enabled: false },
  },
  ttl: { ClientCredentials: () => 3600 },
  cookies: { keys: ["bench-cookie-key-0123456789abcdef"] },
});
serve(createServer(provider.callback()));
