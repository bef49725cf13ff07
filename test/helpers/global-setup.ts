/**
 * Starts one throwaway Redis for the whole test run (unless TESSERA_TEST_REDIS_URL names one) and hands its URL to
 * the tests through vitest's provide/inject. Each test file still uses its own key prefix.
 */
import "vitest";
import type { TestProject } from "vitest/node";
import { RedisCluster, RedisServer } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
    /** The seeds of a three-primary Redis Cluster (TESSERA_REDIS_CLUSTER_NODES form). */
    redisClusterSeeds: string;
  }
}

let server: RedisServer | undefined;
let cluster: RedisCluster | undefined;

export async function setup(project: TestProject): Promise<void> {
  const [given, givenCluster] = [process.env.TESSERA_TEST_REDIS_URL, process.env.TESSERA_TEST_REDIS_CLUSTER_NODES];
  const [url, seeds] = await Promise.all([
    given ?? RedisServer.start().then((s) => (server = s).url),
    givenCluster ?? RedisCluster.start(3).then((c) => (cluster = c).seeds),
  ]);
  project.provide("redisUrl", url);
  project.provide("redisClusterSeeds", seeds);
}

export async function teardown(): Promise<void> {
  await Promise.all([server?.stop(), cluster?.stop()]);
}
