import { readdir, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import pRetry from "p-retry";
import pg from "pg";
import type { Logger } from "@recsys/logging";

/** analytics' PostgreSQL schema of a namespace: beside profile's, never in it. */
export function schemaFor(namespace: string): string {
  return namespace ? `${namespace}_analytics` : "analytics";
}

/** A pool whose connections work in `schema`; no statement runs longer than `statementTimeoutMs` on the server. */
export function createPool(opts: { databaseUrl: string; schema: string; max: number; statementTimeoutMs: number; logger: Logger }): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.databaseUrl,
    max: opts.max,
    statement_timeout: opts.statementTimeoutMs,
    // JIT compiles a plan whose row estimate is large (generate_series guesses 1,000 windows a pane) in 10-30 ms: more than the query.
    options: `-c search_path=${opts.schema} -c jit=off`,
    connectionTimeoutMillis: 5_000,
  });
  // A lost server emits "error" on idle and checked-out clients alike; the query in flight fails on its own.
  pool.on("error", (err) => opts.logger.warn({ err: String(err) }, "idle PostgreSQL client failed"));
  pool.on("connect", (client) => client.on("error", (err) => opts.logger.warn({ err: String(err) }, "PostgreSQL client failed")));
  return pool;
}

const MIGRATIONS_DIR = new URL("../migrations/", import.meta.url);
const MIGRATION_LOCK = "recsys-analytics-migrations";
const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;
/** PostgreSQL answered (with a SQLSTATE): waiting will not change its answer. */
const answered = (err: unknown) => typeof (err as { code?: unknown } | null)?.code === "string";

/**
 * Applies the migrations not yet recorded, in one transaction under an advisory lock (replicas starting together apply each once),
 * and lets `runtimeRole`, when it is another role, read and write rows and call the functions, nothing more.
 */
export async function migrate(pool: pg.Pool, schema: string, runtimeRole?: string): Promise<string[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [MIGRATION_LOCK]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${ident(schema)}`);
    await client.query(`SET LOCAL search_path TO ${ident(schema)}`);
    await client.query("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    const done = new Set((await client.query<{ name: string }>("SELECT name FROM schema_migrations")).rows.map((r) => r.name));
    const applied: string[] = [];
    for (const file of files.filter((f) => !done.has(f))) {
      await client.query(await readFile(new URL(file, MIGRATIONS_DIR), "utf8"));
      await client.query("INSERT INTO schema_migrations (name) VALUES ($1)", [file]);
      applied.push(file);
    }
    const self = (await client.query<{ current_user: string }>("SELECT current_user")).rows[0]!.current_user;
    if (runtimeRole && runtimeRole !== self) {
      const [s, r] = [ident(schema), ident(runtimeRole)];
      for (const grant of [
        `GRANT USAGE ON SCHEMA ${s} TO ${r}`,
        `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${s} TO ${r}`,
        `GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ${s} TO ${r}`,
        `REVOKE ALL ON schema_migrations FROM ${r}`,
      ])
        await client.query(grant);
    }
    await client.query("COMMIT");
    return applied;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

/** `migrate` as the role of `migrationPool` for the role of `runtimePool`, once PostgreSQL is reachable (a replica may start before it). */
export function migrateWhenReachable(migrationPool: pg.Pool, runtimePool: pg.Pool, schema: string, logger: Logger): Promise<string[]> {
  const runtimeRole = async () =>
    migrationPool === runtimePool ? undefined : (await runtimePool.query<{ current_user: string }>("SELECT current_user")).rows[0]!.current_user;
  return pRetry(async () => migrate(migrationPool, schema, await runtimeRole()), {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: 0,
    shouldRetry: ({ error }) => !answered(error),
    onFailedAttempt: async ({ error, attemptNumber }) => {
      if (answered(error)) return;
      const waitMs = Math.min(5_000, 200 * attemptNumber);
      logger.warn({ err: String(error), attempt: attemptNumber, waitMs }, "PostgreSQL not reachable, retrying");
      await sleep(waitMs);
    },
  });
}
