import type pg from "pg";

/**
 * Records a like's or an interest's event id as applied for its user: "fresh" when it was not yet, "expired" past the retention.
 * An id recorded before ids were per user (migration 006) counts for every user, in its old form `<kind>:<id>`.
 */
export async function recordApplied(
  db: pg.PoolClient,
  kind: "like" | "interest",
  userid: string,
  eventId: string,
  eventTimeMs: bigint,
  retentionMs: number | null,
): Promise<"fresh" | "duplicate" | "expired"> {
  const r = await db.query<{ outcome: "fresh" | "duplicate" | "expired" }>("SELECT record_applied($1, $2, $3, $4, $5) AS outcome", [
    userid,
    kind,
    eventId,
    eventTimeMs.toString(),
    retentionMs,
  ]);
  return r.rows[0]!.outcome;
}

/** Deletes the applied ids past their users' horizons (migration 007); returns how many. */
export async function pruneAppliedEvents(pool: pg.Pool, retentionMs: number): Promise<number> {
  const r = await pool.query<{ n: string }>("SELECT prune_applied_events($1) AS n", [retentionMs]);
  return Number(r.rows[0]!.n);
}

/**
 * Forgets at most `limit` (user, kind) pairs silent for the retention, the longest silent first: their watermarks and applied ids
 * (migration 009). Returns how many pairs and ids went.
 */
export async function forgetSilentUsers(pool: pg.Pool, retentionMs: number, limit: number): Promise<{ users: number; ids: number }> {
  const r = await pool.query<{ users: string; ids: string }>("SELECT users, ids FROM forget_silent_users($1, $2)", [retentionMs, limit]);
  return { users: Number(r.rows[0]!.users), ids: Number(r.rows[0]!.ids) };
}
