/**
 * The authority's entry point: config -> app -> listen -> signals (src/observability/process.ts); SIGHUP reloads the
 * callers file and the signing keys file. Nothing imports this file.
 */
import { createApp } from "./app.js";
import { CLI_VARIABLES } from "./cli/variables.js";
import { VARIABLES, loadConfig } from "./config/config.js";
import { runProgram } from "./observability/process.js";
import { SIDECAR_VARIABLES } from "./sidecar/config.js";

runProgram({
  name: "tessera",
  load: () => loadConfig(),
  declarations: VARIABLES,
  others: { "the sidecar": SIDECAR_VARIABLES, "the command line": CLI_VARIABLES },
  async start(config, logger) {
    const app = await createApp(config, { logger });
    return {
      logger: app.logger,
      listen: () => app.listen(),
      close: () => app.close(),
      hangup() {
        app.logger.info({ signal: "SIGHUP" }, "reloading the callers file");
        app.reloadCallers();
        void app.reloadSigningKeys(); // TESSERA_SIGNING_KEYS_FILE, if set
      },
    };
  },
});
