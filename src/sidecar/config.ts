/**
 * The sidecar's configuration (`npm run sidecar`), declared the way the authority's is (src/config/config.ts): its own
 * variables, plus the authority's declarations of everything the two share (how tokens are checked, who may call, the
 * listener's bounds), so a shared variable means the same in both. docs/configuration.md lists them in a table of
 * their own, generated from SIDECAR_VARIABLES.
 */
import { readFileSync } from "node:fs";
import { loadAccess, type CallerAccess } from "../config/callers.js";
import { VARIABLES } from "../config/config.js";
import { ConfigError } from "../config/errors.js";
import { loadTls, type TlsConfig } from "../config/tls.js";
import { Invalid, duration, hostPort, path, readAll, text, variable, type Parser, type Values } from "../config/variable.js";

/** An http:// or https:// base URL without credentials, query or fragment. */
const baseUrl: Parser<URL> = (raw) => {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Invalid(`"${raw}" is not a URL (example: http://tessera.internal:8080)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new Invalid("must start with http:// or https://");
  if (url.username !== "" || url.password !== "") throw new Invalid("must not carry credentials (use TESSERA_AUTHORITY_API_KEY)");
  if (url.search !== "" || url.hash !== "") throw new Invalid("must not carry a query or a fragment");
  return url;
};

const { listen: _authorityListen, ...serverShared } = VARIABLES.server;
// How the authority signs (and MACs refresh tokens) is its own business.
const { signingAlg: _signingAlg, refreshTokenMac: _refreshTokenMac, ...tokensShared } = VARIABLES.tokens;

export const SIDECAR_VARIABLES = {
  /** Where the authority is and how to reach it: its revocation feed, its JWKS, refresh-token introspection. */
  authority: {
    url: variable({
      name: "TESSERA_AUTHORITY_URL", parse: baseUrl,
      doc:
        "Required. The authority's base URL, `http://` (h2c) or `https://`: the sidecar follows its revocation feed " +
        "(`RevocationService.WatchRevocations`) and reads its JWKS (`/.well-known/jwks.json`) there.",
    }),
    apiKey: variable({
      name: "TESSERA_AUTHORITY_API_KEY", parse: text(4096),
      doc:
        "API key the sidecar presents to the authority (`authorization: Bearer`); its caller needs " +
        "`revocations.watch` (and `introspect`, for refresh tokens). Unset: none (an open authority, or mTLS).",
    }),
    ca: variable({
      name: "TESSERA_AUTHORITY_CA", parse: path,
      doc: "PEM CA bundle to trust for an `https://` authority. Unset: the system's roots.",
    }),
    clientCert: variable({
      name: "TESSERA_AUTHORITY_CLIENT_CERT", parse: path,
      doc: "PEM client certificate for mTLS to the authority (with `TESSERA_AUTHORITY_CLIENT_KEY`).",
    }),
    clientKey: variable({
      name: "TESSERA_AUTHORITY_CLIENT_KEY", parse: path,
      doc: "PEM private key of `TESSERA_AUTHORITY_CLIENT_CERT`; both or neither.",
    }),
  },
  /** How stale the sidecar's copy of the revocation feed may get before it refuses to answer. */
  maxStalenessMs: variable({
    name: "TESSERA_SIDECAR_MAX_STALENESS", default: "5s", parse: duration("300ms"),
    doc:
      "Longest time without word from the authority's feed (a change or a heartbeat, asked for every third of this) " +
      "before the sidecar turns `NOT_SERVING` and Introspect answers `UNAVAILABLE`: the bound on how long a revoked " +
      "token can still read as active here.",
  }),
  /** The Envoy Check's audience. */
  envoyAudience: variable({
    name: "TESSERA_SIDECAR_AUDIENCE", parse: text(256),
    doc:
      "Audience an access token must carry to pass Envoy's `Check` (a route's `audience` context extension " +
      "overrides it). Unset: no audience check. Introspect takes its audience from the request, as at the authority.",
  }),
  server: {
    listen: variable({
      name: "TESSERA_LISTEN", default: "127.0.0.1:8081", parse: hostPort,
      doc: "`host:port` the sidecar listens on: gRPC (Introspect, Envoy `Check`), Connect, health, `/metrics`.",
    }),
    ...serverShared,
  },
  tokens: tokensShared,
  access: VARIABLES.access,
  logLevel: VARIABLES.logLevel,
};

type Declared = Values<typeof SIDECAR_VARIABLES>;

export interface SidecarConfig extends Omit<Declared, "authority" | "server" | "access" | "envoyAudience"> {
  readonly authority: {
    readonly url: URL;
    readonly apiKey: string | undefined;
    readonly tls: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  };
  readonly server: Omit<Declared["server"], "tls"> & { readonly tls: TlsConfig | undefined };
  readonly access: Readonly<CallerAccess>;
  readonly envoyAudience: string | undefined;
}

export function loadSidecarConfig(env: Record<string, string | undefined> = process.env): SidecarConfig {
  const declared = readAll(SIDECAR_VARIABLES, env);
  const { authority, server, access } = declared;
  if (authority.url === undefined) throw new ConfigError("TESSERA_AUTHORITY_URL", "must be set: the sidecar follows the authority's revocation feed");
  if ((authority.clientCert === undefined) !== (authority.clientKey === undefined)) {
    throw new ConfigError("TESSERA_AUTHORITY_CLIENT_CERT", "and TESSERA_AUTHORITY_CLIENT_KEY must be set together");
  }
  if (authority.url.protocol === "http:" && (authority.ca ?? authority.clientCert) !== undefined) {
    throw new ConfigError("TESSERA_AUTHORITY_URL", "is http://: the TLS settings for the authority need an https:// URL");
  }
  const tls = loadTls(server.tls);
  return {
    ...declared,
    envoyAudience: declared.envoyAudience === "" ? undefined : declared.envoyAudience,
    authority: {
      url: authority.url,
      apiKey: authority.apiKey === "" ? undefined : authority.apiKey,
      tls: {
        ...(authority.ca === undefined ? {} : { ca: file("TESSERA_AUTHORITY_CA", authority.ca) }),
        ...(authority.clientCert === undefined ? {} : { cert: file("TESSERA_AUTHORITY_CLIENT_CERT", authority.clientCert) }),
        ...(authority.clientKey === undefined ? {} : { key: file("TESSERA_AUTHORITY_CLIENT_KEY", authority.clientKey) }),
      },
    },
    server: { ...server, tls },
    access: loadAccess({ ...access, listen: server.listen, clientCa: tls?.clientCa !== undefined }),
  };
}

function file(name: string, p: string): Buffer {
  try {
    return readFileSync(p);
  } catch (err) {
    throw new ConfigError(name, `cannot read ${p}: ${(err as Error).message}`);
  }
}
