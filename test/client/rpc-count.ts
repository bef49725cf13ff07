/** How many calls of one method a started server has answered (its tessera_rpc_total, over every code). */
import type { StartedServer } from "../helpers/server.js";

export async function rpcCount(server: StartedServer, method: string): Promise<number> {
  const metric = server.app.metrics.registry.getSingleMetric("tessera_rpc_total");
  if (!metric) throw new Error("no tessera_rpc_total metric");
  const { values } = await metric.get();
  return values.filter((v) => v.labels.method === method).reduce((n, v) => n + v.value, 0);
}
