import type pg from "pg";
import { registerTypes } from "pgvector/pg";
import { retrying } from "./retry.js";
import { sqlState } from "./sql-state.js";

/** Clients checked out of a pool with the vector type registered, and transactions run on them. */
export class Sessions {
  private readonly typed = new WeakSet<pg.PoolClient>();

  constructor(readonly pool: pg.Pool) {}

  async withClient<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    const db = await this.pool.connect();
    let broken: Error | undefined;
    try {
      if (!this.typed.has(db)) {
        await registerTypes(db);
        this.typed.add(db);
      }
      return await fn(db);
    } catch (err) {
      // An error without a SQLSTATE is the connection's own: do not hand that client out again.
      if (!sqlState(err)) broken = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      db.release(broken);
    }
  }

  /** Runs `fn` in a transaction, again on deadlock or serialization failure; other errors throw. */
  transaction<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    return retrying(() =>
      this.withClient(async (db) => {
        await db.query("BEGIN");
        try {
          const result = await fn(db);
          await db.query("COMMIT");
          return result;
        } catch (err) {
          await db.query("ROLLBACK").catch(() => undefined);
          throw err;
        }
      }),
    );
  }
}
