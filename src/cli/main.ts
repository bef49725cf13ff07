/**
 * The `tessera` command (bin/tessera.mjs runs this, compiled or through tsx): src/cli/run.ts with this process's
 * arguments, environment and streams. SIGINT and SIGTERM abort the command (the first time; a second one ends the
 * process at once), so `audit tail --follow` ends cleanly. Nothing imports this file.
 */
import { run } from "./run.js";

const controller = new AbortController();
let interrupted = false;
const interrupt = () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort();
};
process.on("SIGINT", interrupt);
process.on("SIGTERM", interrupt);
// A reader that went away (`tessera audit tail -f | head -3`) ends the command quietly.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

process.exitCode = await run(process.argv.slice(2), {
  env: process.env,
  stdin: process.stdin,
  out: (text) => void process.stdout.write(text),
  err: (text) => void process.stderr.write(text),
  signal: controller.signal,
});
process.off("SIGINT", interrupt);
process.off("SIGTERM", interrupt);
