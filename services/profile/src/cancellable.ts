import type pg from "pg";

/** Where a read runs its statements: the pool, or one client of it. */
export type Db = Pick<pg.PoolClient, "query">;

/**
 * Runs `read` on a client of its own, cancelled in PostgreSQL (pg_cancel_backend) as soon as
 * `signal` aborts: a caller that gave up, or whose deadline passed, leaves no statement running.
 */
export async function cancellable<T>(pool: pg.Pool, signal: AbortSignal | undefined, read: (db: Db) => Promise<T>): Promise<T> {
  if (!signal) return read(pool);
  signal.throwIfAborted();
  const client = await pool.connect();
  // The server process behind the client (pg sets it at connect; its types leave it out).
  const pid = (client as pg.PoolClient & { processID: number }).processID;
  const cancel = () => {
    pool.query("SELECT pg_cancel_backend($1)", [pid]).catch(() => {});
  };
  signal.addEventListener("abort", cancel, { once: true });
  try {
    return await read(client);
  } finally {
    signal.removeEventListener("abort", cancel);
    client.release();
  }
}
