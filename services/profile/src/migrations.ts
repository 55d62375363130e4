import type pg from "pg";
import type { Logger } from "@recsys/logging";
import { migrate as migrateSchema, MigrationRefused, migrateWhenReachable as migrateSchemaWhenReachable, type MigrationPlan } from "@recsys/postgres";

/** services/profile/migrations, found from src/ (tests) and dist/ (the build) alike. */
export const MIGRATIONS_DIR = new URL("../migrations/", import.meta.url);

/** profile's schema: pgvector first (its type lives in public), the dimension written into the migrations and checked after them. */
function plan(schema: string, dimension: number): MigrationPlan {
  return {
    dir: MIGRATIONS_DIR,
    schema,
    lock: "recsys-profile-migrations",
    searchPath: ["public"],
    prepare: (client) => client.query("CREATE EXTENSION IF NOT EXISTS vector"),
    render: (sql) => sql.replaceAll("{{EMBEDDING_DIMENSION}}", String(dimension)),
    async verify(client) {
      const dim = await client.query<{ atttypmod: number }>(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'content'::regclass AND attname = 'embedding'",
      );
      const stored = dim.rows[0]?.atttypmod;
      if (stored !== dimension)
        throw new MigrationRefused(`content.embedding in schema ${schema} has dimension ${stored}, EMBEDDING_DIMENSION is ${dimension}`);
    },
  };
}

/** Applies profile's migrations not yet recorded in `schema`; returns the names applied now (see @recsys/postgres). */
export function migrate(pool: pg.Pool, schema: string, dimension: number, runtimeRole?: string, readerRole?: string): Promise<string[]> {
  return migrateSchema(pool, plan(schema, dimension), runtimeRole, readerRole);
}

/** `migrate` as the role of `migrationPool` for the role of `runtimePool` (and `readerRole`, if any), once PostgreSQL is reachable. */
export function migrateWhenReachable(
  migrationPool: pg.Pool,
  runtimePool: pg.Pool,
  schema: string,
  dimension: number,
  logger: Logger,
  readerRole?: string,
): Promise<string[]> {
  return migrateSchemaWhenReachable(migrationPool, runtimePool, plan(schema, dimension), logger, readerRole);
}
