import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/helpers/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // e2e files start servers and Redis processes; two cores: keep parallelism modest.
    maxWorkers: 2,
  },
});
