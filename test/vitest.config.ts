import { defineConfig } from "vitest/config";

// Integration tests: each file starts its own services in its own namespace against the real
// NATS, Redis and PostgreSQL of this machine; files run one after another to share two cores fairly.
export default defineConfig({
  test: {
    root: new URL(".", import.meta.url).pathname,
    include: ["**/*.test.ts"],
    exclude: ["**/node_modules/**"],
    fileParallelism: false,
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
