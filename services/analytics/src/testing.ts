import { copyFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createLogger, type Logger } from "@recsys/logging";
import { migrate } from "@recsys/postgres";
import type pg from "pg";
import { createPool } from "./pg.js";
import type { AnalyticsStore } from "./store.js";

/** For tests: every emitted window marked published, as the emitter does it after each publication, without NATS. */
export async function markAllPublished(store: AnalyticsStore): Promise<void> {
  for (;;) {
    const { windows, beforeMs } = await store.unpublished(20_000);
    if (beforeMs === undefined) return;
    await store.markPublished(
      beforeMs,
      windows.reduce((n, w) => n + w.rows.length, 0),
    );
  }
}

/**
 * For tests: pools on a schema of the test's own (`admin` migrates it, `pool` works in it), `reset` drops it, `close` drops it and
 * ends the pools, and `migrateAsPrevious(n)` makes it as a previous build left it: the migrations numbered up to n.
 */
export function schemaForTest(schema: string): {
  admin: pg.Pool;
  pool: pg.Pool;
  logger: Logger;
  reset(): Promise<void>;
  close(): Promise<void>;
  migrateAsPrevious(through: number): Promise<void>;
} {
  const databaseUrl = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
  const logger = createLogger("analytics-test");
  const admin = createPool({ databaseUrl, schema, max: 1, statementTimeoutMs: 0, logger });
  const pool = createPool({ databaseUrl, schema, max: 2, statementTimeoutMs: 30_000, logger });
  const reset = async () => {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  };
  return {
    admin,
    pool,
    logger,
    reset,
    close: async () => {
      await reset();
      await Promise.all([admin.end(), pool.end()]);
    },
    migrateAsPrevious: async (through: number) => {
      const migrations = new URL("../migrations/", import.meta.url);
      const older = mkdtempSync(join(tmpdir(), "recsys-analytics-migrations-"));
      try {
        for (const f of readdirSync(migrations).filter((f) => Number(f.slice(0, 3)) <= through)) copyFileSync(new URL(f, migrations), join(older, f));
        await migrate(admin, { dir: pathToFileURL(`${older}/`), schema, lock: `recsys-analytics-migrations-${schema}` });
      } finally {
        rmSync(older, { recursive: true, force: true });
      }
    },
  };
}
