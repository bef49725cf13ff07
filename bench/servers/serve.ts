/** Shared tail of the bench servers: listen on 127.0.0.1:<argv port>, say "ready", exit on SIGTERM or SIGINT. */
import type { Server } from "node:net";

export function serve(server: Server): void {
  const port = Number(process.argv[2]);
  server.listen(port, "127.0.0.1", () => process.stdout.write("ready\n"));
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
}
