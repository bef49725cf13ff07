/**
 * The environment variables the `tessera` command line reads (src/cli/context.ts), declared like the authority's and
 * the sidecar's, so docs/configuration.md lists them and both servers name them as the command line's when they meet
 * them at start instead of warning about an unknown variable. Each has a flag that wins over it.
 */
import { path, text, variable } from "../config/variable.js";

export const CLI_VARIABLES = {
  url: variable({
    name: "TESSERA_URL", parse: text(2048),
    doc: "`tessera` command line: the authority's (or a sidecar's) base URL (`--url`). Unset: `http://127.0.0.1:8080`.",
  }),
  apiKey: variable({
    name: "TESSERA_API_KEY", parse: text(4096),
    doc: "`tessera` command line: the API key it presents (`--api-key-file` is the alternative; never printed).",
  }),
  ca: variable({
    name: "TESSERA_CA", parse: path,
    doc: "`tessera` command line: PEM CA bundle to trust for an `https://` URL (`--ca`).",
  }),
  clientCert: variable({
    name: "TESSERA_CLIENT_CERT", parse: path,
    doc: "`tessera` command line: PEM client certificate for mutual TLS (`--cert`).",
  }),
  clientKey: variable({
    name: "TESSERA_CLIENT_KEY", parse: path,
    doc: "`tessera` command line: the client certificate's PEM private key (`--key`).",
  }),
};
