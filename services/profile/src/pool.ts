import type pg from "pg";
import type { Logger } from "@recsys/logging";
import { createPool as createSchemaPool } from "@recsys/postgres";

/** The PostgreSQL schema of a namespace: tests run many namespaces on one database. */
export function schemaFor(namespace: string): string {
  return namespace ? `${namespace}_recsys` : "recsys";
}

/** A pool whose every connection works in `schema` (public stays on the path for the vector type). */
export function createPool(opts: {
  databaseUrl: string;
  schema: string;
  max: number;
  statementTimeoutMs: number;
  queryTimeoutMs?: number;
  logger: Logger;
}): pg.Pool {
  return createSchemaPool({ ...opts, searchPath: ["public"] });
}
