import { readdir, readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import pRetry from "p-retry";
import type pg from "pg";
import type { Logger } from "@recsys/logging";
import { quoteIdent, sqlState } from "./sql.js";

/** The database holds something this build cannot work with; waiting will not fix it. */
export class MigrationRefused extends Error {}

/** A service's numbered migrations (`NNN_name.sql` in `dir`) for one schema. */
export interface MigrationPlan {
  dir: URL;
  schema: string;
  /** The advisory lock taken for the transaction: one per service, for every namespace (CREATE EXTENSION and CREATE SCHEMA race across them). */
  lock: string;
  /** After the schema, on the path while migrating (e.g. public, for an extension's types). */
  searchPath?: string[];
  /** Runs first, under the lock (e.g. CREATE EXTENSION). */
  prepare?: (client: pg.PoolClient) => Promise<unknown>;
  /** A migration's text before it runs (e.g. a configured dimension). */
  render?: (sql: string) => string;
  /** Runs last: throws MigrationRefused when the schema is not one this build can use. */
  verify?: (client: pg.PoolClient) => Promise<void>;
}

/**
 * What the service's own role may do in the schema: read and write rows and call the functions, nothing more (no DDL: it cannot
 * create, alter, drop or truncate a table). Granted by the role that owns the schema, for what exists and, by default, for what its
 * later migrations create.
 */
function runtimeGrants(schema: string, role: string): string[] {
  const s = quoteIdent(schema);
  const r = quoteIdent(role);
  return [
    `GRANT USAGE ON SCHEMA ${s} TO ${r}`,
    `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${s} TO ${r}`,
    `GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ${s} TO ${r}`,
    `GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA ${s} TO ${r}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${r}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} GRANT USAGE, SELECT ON SEQUENCES TO ${r}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} GRANT EXECUTE ON FUNCTIONS TO ${r}`,
    // Which migrations ran is the migrating role's business.
    `REVOKE ALL ON schema_migrations FROM ${r}`,
  ];
}

/**
 * What a reader of the schema may do (the gateway answering a query from the service's tables): read rows, of the tables there
 * are and of those later migrations create; nothing else.
 */
function readerGrants(schema: string, role: string): string[] {
  const s = quoteIdent(schema);
  const r = quoteIdent(role);
  return [
    `GRANT USAGE ON SCHEMA ${s} TO ${r}`,
    `GRANT SELECT ON ALL TABLES IN SCHEMA ${s} TO ${r}`,
    `ALTER DEFAULT PRIVILEGES IN SCHEMA ${s} GRANT SELECT ON TABLES TO ${r}`,
    `REVOKE ALL ON schema_migrations FROM ${r}`,
  ];
}

/**
 * Applies every migration not yet recorded in `schema_migrations`, in one transaction; returns the names applied now. Under an
 * advisory lock, so replicas starting together apply each migration exactly once; `runtimeRole` gets runtimeGrants only,
 * `readerRole` readerGrants only.
 */
export async function migrate(pool: pg.Pool, plan: MigrationPlan, runtimeRole?: string, readerRole?: string): Promise<string[]> {
  const files = (await readdir(plan.dir)).filter((f) => /^\d+_.*\.sql$/.test(f)).sort();
  const client = await pool.connect();
  try {
    await client.query("BEGIN");
    await client.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [plan.lock]);
    await plan.prepare?.(client);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(plan.schema)}`);
    await client.query(`SET LOCAL search_path TO ${[plan.schema, ...(plan.searchPath ?? [])].map(quoteIdent).join(", ")}`);
    await client.query("CREATE TABLE IF NOT EXISTS schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    const done = new Set((await client.query<{ name: string }>("SELECT name FROM schema_migrations")).rows.map((r) => r.name));
    const applied: string[] = [];
    for (const file of files.filter((f) => !done.has(f))) {
      const sql = await readFile(new URL(file, plan.dir), "utf8");
      await client.query(plan.render ? plan.render(sql) : sql);
      await client.query("INSERT INTO schema_migrations (name) VALUES ($1)", [file]);
      applied.push(file);
    }
    await plan.verify?.(client);
    const self = (await client.query<{ current_user: string }>("SELECT current_user")).rows[0]!.current_user;
    if (runtimeRole && runtimeRole !== self) for (const grant of runtimeGrants(plan.schema, runtimeRole)) await client.query(grant);
    if (readerRole && readerRole !== self) {
      // A role the deploy files create on a new database only (deploy/postgres/init-roles.sh): say so rather than fail on a GRANT.
      const exists = await client.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [readerRole]);
      if (exists.rowCount === 0)
        throw new MigrationRefused(
          `the reader role ${readerRole} does not exist: create it (CREATE ROLE ${readerRole} LOGIN PASSWORD …, as deploy/postgres/init-roles.sh does) or leave its setting empty`,
        );
      for (const grant of readerGrants(plan.schema, readerRole)) await client.query(grant);
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

/**
 * `migrate` as the role of `migrationPool`, for the role `runtimePool` connects as, waiting for PostgreSQL to come up first: a
 * replica may start before its database.
 */
export function migrateWhenReachable(
  migrationPool: pg.Pool,
  runtimePool: pg.Pool,
  plan: MigrationPlan,
  logger: Logger,
  readerRole?: string,
): Promise<string[]> {
  const runtimeRole = async () =>
    migrationPool === runtimePool ? undefined : (await runtimePool.query<{ current_user: string }>("SELECT current_user")).rows[0]!.current_user;
  // A SQLSTATE means PostgreSQL answered and refused: only a failure to connect is worth a wait.
  const answered = (err: unknown) => sqlState(err) !== undefined || err instanceof MigrationRefused;
  return pRetry(async () => migrate(migrationPool, plan, await runtimeRole(), readerRole), {
    retries: Number.POSITIVE_INFINITY,
    minTimeout: 0,
    shouldRetry: ({ error }) => !answered(error),
    // 200 ms more each attempt, at most 5 s (linear: p-retry's own backoff is off).
    onFailedAttempt: async ({ error, attemptNumber }) => {
      if (answered(error)) return;
      const waitMs = Math.min(5_000, 200 * attemptNumber);
      logger.warn({ err: String(error), attempt: attemptNumber, waitMs }, "PostgreSQL not reachable, retrying");
      await sleep(waitMs);
    },
  });
}
