/** The sidecar's entry point (`npm run sidecar`): load config -> build -> listen -> handle signals. */
import { ConfigError } from "../config/config.js";
import { createSidecar } from "./app.js";
import { loadSidecarConfig } from "./config.js";

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
  const sidecar = await createSidecar(config);
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
}

main().catch((err) => {
  process.stderr.write(`tessera sidecar: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
