/**
 * The sidecar's entry point (`npm run sidecar`): config -> sidecar -> listen -> signals (src/observability/process.ts).
 * SIGHUP is logged and ignored: the sidecar reads its callers file at start only.
 */
import { CLI_VARIABLES } from "../cli/variables.js";
import { VARIABLES } from "../config/config.js";
import { runProgram } from "../observability/process.js";
import { createSidecar } from "./app.js";
import { SIDECAR_VARIABLES, loadSidecarConfig } from "./config.js";

runProgram({
  name: "tessera sidecar",
  load: () => loadSidecarConfig(),
  declarations: SIDECAR_VARIABLES,
  others: { "the authority": VARIABLES, "the command line": CLI_VARIABLES },
  async start(config, logger) {
    const sidecar = await createSidecar(config, { logger });
    return {
      logger: sidecar.logger,
      listen: () => sidecar.listen(),
      close: () => sidecar.close(),
      listening: { authority: config.authority.url.href },
      // Handled, rather than left to kill the process (what SIGHUP does to one that does not handle it).
      hangup: () => sidecar.logger.warn({ signal: "SIGHUP" }, "SIGHUP ignored: the sidecar reads its callers file at start only"),
    };
  },
});
