/**
 * Starts one throwaway Redis for the whole test run (unless TESSERA_TEST_REDIS_URL names one) and hands its URL to
 * the tests through vitest's provide/inject. Each test file still uses its own key prefix.
 */
import "vitest";
import type { TestProject } from "vitest/node";
import { RedisServer } from "./redis-server.js";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

let server: RedisServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  const given = process.env.TESSERA_TEST_REDIS_URL;
  if (given) {
    project.provide("redisUrl", given);
    return;
  }
  server = await RedisServer.start();
  project.provide("redisUrl", server.url);
}

export async function teardown(): Promise<void> {
  await server?.stop();
}
