import { copyFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createLogger, type Logger } from "@recsys/logging";
import { migrate } from "@recsys/postgres";
import type pg from "pg";
import { createPool } from "./pg.js";
import type { AnalyticsStore } from "./store.js";
import { windowRows } from "./window-rows.js";

/**
 * For tests: every emitted window marked published, with its rows counted, as the emitter leaves it once it has published them,
 * without NATS. In one step: the emitter's rounds take at most a window's length each, thousands of them for a day behind.
 */
export async function markAllPublished(store: AnalyticsStore, pool: pg.Pool): Promise<void> {
  const { emittedBeforeMs, publishedBeforeMs } = await store.emissionState();
  if (emittedBeforeMs === undefined || (publishedBeforeMs ?? Number.NEGATIVE_INFINITY) >= emittedBeforeMs) return;
  // Nothing published yet: from the first pane kept (windowRows starts no earlier than kept_from).
  const rows = await windowRows(pool, store.windows, { fromMs: publishedBeforeMs ?? 0, beforeMs: emittedBeforeMs });
  await store.markPublished(emittedBeforeMs, rows.length);
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
