/**
 * N copies of a server sharing one port through node:cluster: `node --import tsx bench/servers/cluster.ts <N>
 * <script> [args...]` forks N workers, each running `<script> [args...]` with this process's Node flags and
 * environment (so `--import tsx`, and TESSERA_LISTEN for src/main.ts, reach every worker). The primary owns the
 * listening socket and hands each new connection to the next worker (cluster's default round-robin scheduling on
 * Linux), so the generator's few HTTP/2 connections are spread evenly across the workers.
 *
 * Prints "ready" once every worker listens (cluster's "listening" event; a worker that is not listening yet would
 * get no connections). The workers' own stdout comes out prefixed with "worker <id>: " (so their "ready" lines are
 * not taken for the cluster's), their stderr as it is. On SIGTERM or SIGINT the workers get SIGTERM and the primary
 * exits once they are gone; a worker that exits on its own brings the whole cluster down (exit code 1). If the
 * primary is killed outright, the workers exit too: their IPC channel to it closes, and a cluster worker exits when
 * that happens.
 */
import cluster, { type Worker } from "node:cluster";
import { createInterface } from "node:readline";

const [countArg, script, ...args] = process.argv.slice(2);
const count = Number(countArg);
if (!Number.isInteger(count) || count < 1 || script === undefined) {
  process.stderr.write("usage: cluster.ts <workers> <script> [args...]\n");
  process.exit(2);
}

cluster.setupPrimary({ exec: script, args, silent: true });
const listening = new Set<number>();
let stopping = false;

const stopWorkers = async (code: number) => {
  if (stopping) return;
  stopping = true;
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && !w.isDead());
  await Promise.all(
    workers.map(
      (w) =>
        new Promise<void>((resolve) => {
          w.once("exit", () => resolve());
          w.process.kill("SIGTERM");
        }),
    ),
  );
  process.exit(code);
};

for (let i = 0; i < count; i++) {
  const worker = cluster.fork();
  createInterface({ input: worker.process.stdout! }).on("line", (line) => process.stdout.write(`worker ${worker.id}: ${line}\n`));
  worker.process.stderr!.pipe(process.stderr);
}

cluster.on("listening", (worker) => {
  listening.add(worker.id);
  if (listening.size === count) process.stdout.write("ready\n");
});
cluster.on("exit", (worker, code, signal) => {
  if (stopping) return;
  process.stderr.write(`cluster: worker ${worker.id} (pid ${worker.process.pid}) exited (${code ?? signal}); stopping the others\n`);
  void stopWorkers(1);
});
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => void stopWorkers(0));
