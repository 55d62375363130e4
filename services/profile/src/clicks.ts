import type pg from "pg";
import { retrying } from "./retry.js";
import type { Sessions } from "./sessions.js";
import type { ClickAt, ClickOutcome } from "./types.js";

/**
 * Clicks in one round trip to apply_clicks (migrations 005-008), which holds their rules: applied, parked, duplicate, expired, or
 * erased (of a message before its user's erasure).
 */
export function applyClicks(sessions: Sessions, clicks: readonly ClickAt[], retentionMs: number): Promise<ClickOutcome[]> {
  if (clicks.length === 0) return Promise.resolve([]);
  const params = [
    clicks.map((c) => c.eventId),
    clicks.map((c) => c.userid),
    clicks.map((c) => c.url),
    clicks.map((c) => c.eventTimeMs),
    clicks.map((c) => c.seq ?? null),
  ];
  return retrying(() =>
    sessions.withClient(async (db) => {
      const { rows } = await db.query<{ outcomes: Array<ClickOutcome["status"]> }>(
        "SELECT apply_clicks($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint) AS outcomes",
        [...params, retentionMs],
      );
      return rows[0]!.outcomes.map((status) => ({ status }) as ClickOutcome);
    }),
  );
}

/**
 * Moves the clicks parked for `url` into their users' interests (once per click); returns how many clicks.
 * One upsert in userid order, as apply_clicks takes the rows, so a batch of clicks and this fold never wait for each other in a cycle.
 */
export async function foldParkedClicks(db: pg.PoolClient, url: string): Promise<number> {
  const folded = await db.query(
    `INSERT INTO interests (userid, sum, terms)
     SELECT p.userid, sum(c.embedding), count(*) FROM parked_clicks p JOIN content c ON c.url = p.url
     WHERE p.url = $1 GROUP BY p.userid ORDER BY p.userid
     ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + excluded.terms`,
    [url],
  );
  if (folded.rowCount === 0) return 0;
  await db.query(
    `INSERT INTO user_page_terms (userid, url, clicks)
     SELECT userid, $1, count(*) FROM parked_clicks WHERE url = $1 GROUP BY userid ORDER BY userid
     ON CONFLICT (userid, url) DO UPDATE SET clicks = user_page_terms.clicks + excluded.clicks`,
    [url],
  );
  const deleted = await db.query("DELETE FROM parked_clicks WHERE url = $1", [url]);
  return deleted.rowCount ?? 0;
}

/**
 * How many urls one statement of expireParkedClicks locks: each lock takes an entry of PostgreSQL's shared lock table (about
 * 13,000 entries with its default settings, shared by every session), held until the statement's transaction ends.
 */
export const EXPIRE_URLS_PER_STATEMENT = 500;

/**
 * Deletes clicks parked longer than `maxAgeMs`, with their ids, skipping urls whose lock (lockUrl's) is held; returns how many.
 * Url by url in order, EXPIRE_URLS_PER_STATEMENT urls a statement (a transaction of its own), each url once.
 */
export async function expireParkedClicks(pool: pg.Pool, maxAgeMs: number): Promise<number> {
  let expired = 0;
  let after: string | null = null;
  for (;;) {
    const r: pg.QueryResult<{ n: string; urls: string; last: string | null }> = await pool.query(
      `WITH due AS (
         SELECT DISTINCT url FROM parked_clicks
         WHERE parked_at < now() - make_interval(secs => $1::float8 / 1000) AND ($2::text IS NULL OR url > $2)
         ORDER BY url LIMIT $3
       ), locked AS (
         SELECT url FROM due WHERE pg_try_advisory_xact_lock(hashtextextended(url, 0))
       ), gone AS (
         DELETE FROM parked_clicks p USING locked l
         WHERE p.url = l.url AND p.parked_at < now() - make_interval(secs => $1::float8 / 1000)
         RETURNING p.userid, p.event_id
       ), ids AS (
         DELETE FROM applied_events a USING gone g WHERE a.userid = g.userid AND a.kind = 'click' AND a.event_id = g.event_id
       )
       SELECT (SELECT count(*) FROM gone) AS n, (SELECT count(*) FROM due) AS urls, (SELECT max(url) FROM due) AS last`,
      [maxAgeMs, after, EXPIRE_URLS_PER_STATEMENT],
    );
    const row = r.rows[0]!;
    expired += Number(row.n);
    if (Number(row.urls) < EXPIRE_URLS_PER_STATEMENT) return expired;
    after = row.last;
  }
}
