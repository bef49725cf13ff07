/**
 * The sidecar's entry point (`npm run sidecar`): load config -> say what starts (version, effective configuration,
 * unknown variables) -> build -> listen -> handle signals.
 */
import { CLI_VARIABLES } from "../cli/variables.js";
import { ConfigError, VARIABLES } from "../config/config.js";
import { createLogger } from "../observability/logger.js";
import { logStart } from "../observability/startup.js";
import { createSidecar } from "./app.js";
import { SIDECAR_VARIABLES, loadSidecarConfig } from "./config.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadSidecarConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tessera sidecar: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  logStart(logger, { program: "tessera sidecar", declarations: SIDECAR_VARIABLES, others: { "the authority": VARIABLES, "the command line": CLI_VARIABLES }, env: process.env });
  const sidecar = await createSidecar(config, { logger });
  const addr = await sidecar.listen();
  sidecar.logger.info(
    { host: addr.host, port: addr.port, authority: config.authority.url.href },
    `sidecar listening on ${addr.host}:${addr.port}`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    sidecar.logger.info({ signal }, "shutting down");
    sidecar.close().then(
      () => sidecar.logger.flush(() => process.exit(0)),
      (err) => {
        sidecar.logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  // The authority reloads its callers file on SIGHUP; the sidecar does not (yet): say so rather than die, which is
  // what SIGHUP does to a process that does not handle it.
  process.on("SIGHUP", () => sidecar.logger.warn({ signal: "SIGHUP" }, "SIGHUP ignored: the sidecar reads its callers file at start only"));
}

main().catch((err) => {
  process.stderr.write(`tessera sidecar: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
