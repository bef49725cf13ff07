/** Entry point: load config -> build app -> listen -> handle signals. Nothing imports this file. */
import { createApp } from "./app.js";
import { ConfigError, loadConfig } from "./config/config.js";

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
  const app = await createApp(config);
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
}

main().catch((err) => {
  process.stderr.write(`tessera: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
