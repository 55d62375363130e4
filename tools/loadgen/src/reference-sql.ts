/**
 * The reference system's co-visit query over a PostgreSQL table `clicks (userid, url, t)`: the tests' oracle and the benchmark's baseline.
 * Ordered as Recommendation answers (frequency desc, then recommendation bytewise asc).
 */
export const CREATE_CLICKS_TABLE = "CREATE TEMP TABLE clicks (userid text NOT NULL, url text NOT NULL, t timestamptz NOT NULL)";

/** Fills `clicks` from a JSON array of {userid, url, event_time} in one statement ($1). */
export const INSERT_CLICKS = "INSERT INTO clicks SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(userid text, url text, event_time timestamptz)";

import { COVISIT_WINDOW_MS } from "@recsys/validation";

export const REFERENCE_COVISIT_SQL = `
  SELECT url, recommendation, frequency::int AS frequency FROM (
    SELECT b.url, a.url AS recommendation, count(*) AS frequency
    FROM clicks b JOIN clicks a ON b.userid = a.userid
     AND b.t < a.t AND b.t >= a.t - interval '${COVISIT_WINDOW_MS} milliseconds'
    GROUP BY 1, 2
  ) r
  ORDER BY url, frequency DESC, recommendation COLLATE "C"`;
