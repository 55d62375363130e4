import type pg from "pg";
import type { Logger } from "@recsys/logging";
import { createPool as createSchemaPool, migrateWhenReachable as migrateSchemaWhenReachable } from "@recsys/postgres";

/** analytics' PostgreSQL schema of a namespace: beside profile's, never in it. */
export function schemaFor(namespace: string): string {
  return namespace ? `${namespace}_analytics` : "analytics";
}

/** A pool whose connections work in `schema`; no statement runs longer than `statementTimeoutMs` on the server. */
export function createPool(opts: { databaseUrl: string; schema: string; max: number; statementTimeoutMs: number; logger: Logger }): pg.Pool {
  // JIT compiles a plan whose row estimate is large (generate_series guesses 1,000 windows a pane) in 10-30 ms: more than the query.
  return createSchemaPool({ ...opts, settings: { jit: "off" } });
}

/** Applies analytics' migrations (services/analytics/migrations) as the role of `migrationPool` for the role of `runtimePool`. */
export function migrateWhenReachable(migrationPool: pg.Pool, runtimePool: pg.Pool, schema: string, logger: Logger): Promise<string[]> {
  return migrateSchemaWhenReachable(
    migrationPool,
    runtimePool,
    { dir: new URL("../migrations/", import.meta.url), schema, lock: "recsys-analytics-migrations" },
    logger,
  );
}
