import { defineConfig } from "vitest/config";

// These tests run their SQL in the real PostgreSQL while every other package's suite runs beside
// them on two cores: a test that stores 400 pages one transaction at a time can take seconds there.
// A test that outlives its timeout keeps writing into the next test's tables, so the margin is wide.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
