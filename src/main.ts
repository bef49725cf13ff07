/**
 * Entry point: load config -> say what starts (version, effective configuration, unknown variables) -> build app ->
 * listen -> handle signals (SIGTERM/SIGINT: graceful shutdown; SIGHUP: reload the callers file and the signing keys
 * file). Nothing imports this file.
 */
import { createApp } from "./app.js";
import { ConfigError, VARIABLES, loadConfig } from "./config/config.js";
import { createLogger } from "./observability/logger.js";
import { logStart } from "./observability/startup.js";
import { CLI_VARIABLES } from "./cli/variables.js";
import { SIDECAR_VARIABLES } from "./sidecar/config.js";

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tessera: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  logStart(logger, { program: "tessera", declarations: VARIABLES, others: { "the sidecar": SIDECAR_VARIABLES, "the command line": CLI_VARIABLES }, env: process.env });
  const app = await createApp(config, { logger });
  const addr = await app.listen();
  app.logger.info({ host: addr.host, port: addr.port }, `listening on ${addr.host}:${addr.port}`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.logger.info({ signal }, "shutting down");
    app.close().then(
      () => app.logger.flush(() => process.exit(0)),
      (err) => {
        app.logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGHUP", () => {
    if (stopping) return;
    app.logger.info({ signal: "SIGHUP" }, "reloading the callers file");
    app.reloadCallers();
    void app.reloadSigningKeys(); // TESSERA_SIGNING_KEYS_FILE, if set
  });
}

main().catch((err) => {
  process.stderr.write(`tessera: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
