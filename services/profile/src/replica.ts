import { setTimeout as sleep } from "node:timers/promises";
import type pg from "pg";

/** How long an erasure or a hiding waits for the read replica before its message is retried. */
export const REPLICA_WAIT_MS = 5_000;

/**
 * Resolves once `replica` has replayed everything `primary` has written so far (its WAL insert position now): what was just committed on
 * the primary can be read there. A `replica` that is not in recovery is a primary itself (or the same server): nothing to wait for.
 * Throws after `timeoutMs`, so that the message whose effect this fences is not acked and comes again.
 */
export async function replicaCaughtUp(primary: pg.Pool, replica: pg.Pool, timeoutMs = REPLICA_WAIT_MS): Promise<void> {
  // The insert position: past every commit record written so far, flushed or not (synchronous_commit off).
  const { lsn } = (await primary.query<{ lsn: string }>("SELECT pg_current_wal_insert_lsn()::text AS lsn")).rows[0]!;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await replica.query<{ caught: boolean }>("SELECT NOT pg_is_in_recovery() OR coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false) AS caught", [
      lsn,
    ]);
    if (r.rows[0]!.caught) return;
    if (Date.now() > deadline) throw new Error(`the read replica has not replayed the primary's WAL up to ${lsn} within ${timeoutMs} ms`);
    await sleep(5);
  }
}
