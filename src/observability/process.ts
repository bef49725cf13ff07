/**
 * What both programs (the authority, src/main.ts; the sidecar, src/sidecar/main.ts) do as processes: load the
 * configuration (a ConfigError: its message on stderr, exit 2), say what starts (version, effective configuration,
 * unknown variables), build and listen, then shut down gracefully on SIGTERM or SIGINT (exit 0, or 1 if the shutdown
 * failed) and hand SIGHUP to the program. A failure to start: its message on stderr, exit 1.
 */
import { ConfigError } from "../config/errors.js";
import type { Declarations } from "../config/variable.js";
import { createLogger, type Logger } from "./logger.js";
import { logStart } from "./startup.js";

export interface Program<C extends { logLevel: string }> {
  /** As the log and stderr name it: "tessera", "tessera sidecar". */
  name: string;
  load(): C;
  declarations: Declarations;
  /** The other programs' declarations, so their variables are named as theirs rather than warned about. */
  others: Record<string, Declarations>;
  start(config: C, logger: Logger): Promise<Running>;
}

export interface Running {
  readonly logger: Logger;
  listen(): Promise<{ host: string; port: number }>;
  close(): Promise<void>;
  /** Called on SIGHUP (while not stopping). */
  hangup(): void;
  /** Fields for the "listening" log line. */
  listening?: Record<string, unknown>;
}

export function runProgram<C extends { logLevel: string }>(program: Program<C>): void {
  main(program).catch((err) => {
    process.stderr.write(`${program.name}: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}

async function main<C extends { logLevel: string }>(program: Program<C>): Promise<void> {
  let config: C;
  try {
    config = program.load();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${program.name}: configuration error: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel as Parameters<typeof createLogger>[0]);
  logStart(logger, { program: program.name, declarations: program.declarations, others: program.others, env: process.env });
  const running = await program.start(config, logger);
  const addr = await running.listen();
  running.logger.info({ host: addr.host, port: addr.port, ...running.listening }, `listening on ${addr.host}:${addr.port}`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    running.logger.info({ signal }, "shutting down");
    running.close().then(
      () => running.logger.flush(() => process.exit(0)),
      (err) => {
        running.logger.error({ err }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGHUP", () => {
    if (!stopping) running.hangup();
  });
}
