import pg from "pg";
import type { Logger } from "@recsys/logging";

/**
 * A pool whose every connection works in `schema` (then `searchPath`), with server settings of its own (`-c name=value`); no statement
 * runs longer than `statementTimeoutMs` on the server, whoever waits for it.
 */
export function createPool(opts: {
  databaseUrl: string;
  schema: string;
  searchPath?: string[];
  settings?: Record<string, string>;
  max: number;
  statementTimeoutMs: number;
  /** The client gives up on a query after this (a server or network that stopped answering); none by default. */
  queryTimeoutMs?: number;
  logger: Logger;
}): pg.Pool {
  const settings = { search_path: [opts.schema, ...(opts.searchPath ?? [])].join(","), ...opts.settings };
  const pool = new pg.Pool({
    connectionString: opts.databaseUrl,
    max: opts.max,
    statement_timeout: opts.statementTimeoutMs,
    ...(opts.queryTimeoutMs ? { query_timeout: opts.queryTimeoutMs } : {}),
    options: Object.entries(settings)
      .map(([k, v]) => `-c ${k}=${v}`)
      .join(" "),
    connectionTimeoutMillis: 5_000,
  });
  // A client losing its server (a restart) emits "error": an idle one on the pool, a checked-out one between two queries on itself.
  // Without a listener either would crash the process; the query in progress fails on its own and its message is redelivered.
  pool.on("error", (err) => opts.logger.warn({ err: String(err) }, "idle PostgreSQL client failed"));
  pool.on("connect", (client) => client.on("error", (err) => opts.logger.warn({ err: String(err) }, "PostgreSQL client failed")));
  return pool;
}
