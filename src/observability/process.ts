/**
 * What both programs (the authority, src/main.ts; the sidecar, src/sidecar/main.ts) do as processes: load the
 * configuration (a ConfigError: its message on stderr, exit 2), say what starts (version, effective configuration,
 * unknown variables), build and listen, then shut down gracefully on SIGTERM or SIGINT (exit 0, or 1 if the shutdown
 * failed) and hand SIGHUP to the program. A failure to start: its message on stderr, exit 1. Before all of that,
 * short full garbage collections (`shortMajorPauses`).
 */
import v8 from "node:v8";
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
  shortMajorPauses(process.execArgv, (flags) => v8.setFlagsFromString(flags));
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

/** How far V8 lets the old generation grow past what the last full collection kept, in percent. */
export const HEAP_GROWING_PERCENT = 20;

/**
 * Full garbage collections that pause the process briefly and often, rather than long and seldom. By default V8 lets
 * the old generation grow to several times what the last full collection kept before it collects again: Tessera's
 * (about 15 MB live) grew to 70-90 MB, and each full collection then stopped the event loop for 40-100 ms, most of it
 * finalising node:http2's request header strings and evacuating, so every call that arrived meanwhile waited that
 * long. With the growth capped at 20 %, they come about four times as often and pause 5-18 ms (Introspect at a fixed
 * 5 000/s after a full-speed pass: p99 28.6-33.6 ms against 42.1-63.7 ms; the maximum rate unchanged within the
 * noise, 3-4 µs more CPU per call; docs/performance.md). A `--heap-growing-percent` on node's command line wins. V8 reads the
 * setting at every full collection, so setting it at start-up is enough.
 */
export function shortMajorPauses(execArgv: readonly string[], setFlags: (flags: string) => void): boolean {
  if (execArgv.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return false;
  setFlags(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  return true;
}
