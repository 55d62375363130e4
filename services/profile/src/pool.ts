import pg from "pg";
import type { Logger } from "@recsys/logging";

/** The PostgreSQL schema of a namespace: tests run many namespaces on one database. */
export function schemaFor(namespace: string): string {
  return namespace ? `${namespace}_recsys` : "recsys";
}

/** A pool whose every connection works in `schema` (public stays on the path for the vector type). */
export function createPool(opts: { databaseUrl: string; schema: string; max: number; statementTimeoutMs: number; logger: Logger }): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.databaseUrl,
    max: opts.max,
    // No statement runs longer than this on the server, whoever waits for it.
    statement_timeout: opts.statementTimeoutMs,
    options: `-c search_path=${opts.schema},public`,
    connectionTimeoutMillis: 5_000,
  });
  // A client losing its server (a restart) emits "error": an idle one on the pool, a checked-out one
  // between two queries on itself. Without a listener either would crash the process; the query in
  // progress fails on its own and its message is redelivered.
  pool.on("error", (err) => opts.logger.warn({ err: String(err) }, "idle PostgreSQL client failed"));
  pool.on("connect", (client) => client.on("error", (err) => opts.logger.warn({ err: String(err) }, "PostgreSQL client failed")));
  return pool;
}
