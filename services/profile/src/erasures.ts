import type pg from "pg";
import { retrying } from "./retry.js";
import type { Sessions } from "./sessions.js";
import type { UserErasure } from "./types.js";

/**
 * Shares the erasure lock (migration 008) for the transaction: taken by every write before any other lock, so no erasure commits
 * between what the transaction reads and what it writes. Its own statement: the next ones see every erasure committed before it.
 */
export async function shareErasureLock(db: pg.PoolClient): Promise<void> {
  await db.query("SELECT share_erasure_lock()");
}

/** Whether `userid` was erased at or after `ingestTimeMs`: a like or interest accepted then belongs to the user erased. */
export async function erasedSince(db: pg.PoolClient, userid: string, ingestTimeMs: bigint): Promise<boolean> {
  const r = await db.query("SELECT 1 FROM erased_users WHERE userid = $1 AND ingest_time_ms >= $2", [userid, ingestTimeMs.toString()]);
  return (r.rowCount ?? 0) > 0;
}

/**
 * Deletes every row profile keeps of the user and records the erasure (erase_user): "erased", or "superseded" when an erasure at
 * its CLICKS sequence or a later one is recorded already, and nothing changed.
 */
export function eraseUser(sessions: Sessions, erasure: UserErasure): Promise<"erased" | "superseded"> {
  // One statement, one transaction.
  return retrying(() =>
    sessions.withClient(async (db) => {
      const r = await db.query<{ erased: boolean }>("SELECT erase_user($1, $2, $3) AS erased", [erasure.userid, erasure.seq, erasure.ingestTimeMs]);
      return r.rows[0]!.erased ? "erased" : "superseded";
    }),
  );
}
