import pg from "pg";
import { readJsonLinesGz } from "./files.js";

export interface RawClick {
  userid: string;
  url: string;
  event_time: string;
}

export function readClicks(path: string): RawClick[] {
  return readJsonLinesGz<RawClick>(path);
}

export interface ReferenceRow {
  url: string;
  recommendation: string;
  frequency: number;
}

/**
 * The reference system's own query, run by PostgreSQL over the raw clicks: the oracle for every
 * Recommendation. Ordered as the API promises (frequency desc, then recommendation bytewise asc).
 */
export async function referenceCoVisits(clicks: RawClick[]): Promise<Map<string, Array<{ recommendation: string; frequency: number }>>> {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test" });
  await client.connect();
  try {
    await client.query("CREATE TEMP TABLE clicks (userid text NOT NULL, url text NOT NULL, t timestamptz NOT NULL)");
    await client.query(
      `INSERT INTO clicks SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(userid text, url text, event_time timestamptz)`,
      [JSON.stringify(clicks)],
    );
    const { rows } = await client.query<ReferenceRow>(`
      SELECT url, recommendation, frequency::int AS frequency FROM (
        SELECT b.url, a.url AS recommendation, count(*) AS frequency
        FROM clicks b JOIN clicks a ON b.userid = a.userid
         AND b.t < a.t AND b.t >= a.t - interval '10 minutes'
        GROUP BY 1, 2
      ) r
      ORDER BY url, frequency DESC, recommendation COLLATE "C"`);
    const byUrl = new Map<string, Array<{ recommendation: string; frequency: number }>>();
    for (const r of rows) {
      let list = byUrl.get(r.url);
      if (!list) byUrl.set(r.url, (list = []));
      list.push({ recommendation: r.recommendation, frequency: r.frequency });
    }
    return byUrl;
  } finally {
    await client.end();
  }
}
