import { defineConfig } from "vitest/config";

// The store's tests run their SQL in the real PostgreSQL beside other suites on two cores.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
