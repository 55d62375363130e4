import pg from "pg";
import { CREATE_CLICKS_TABLE, INSERT_CLICKS, REFERENCE_COVISIT_SQL } from "@recsys/loadgen/reference-sql";
import { readJsonLinesGz } from "./files.js";
import { machine } from "./stack.js";

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
 * The SQL also pairs a page with itself (a user back on it within 10 minutes); Recommendation never
 * lists the page itself, so those rows are left out here.
 */
export async function referenceCoVisits(clicks: RawClick[]): Promise<Map<string, Array<{ recommendation: string; frequency: number }>>> {
  const client = new pg.Client({ connectionString: machine.postgres });
  await client.connect();
  try {
    await client.query(CREATE_CLICKS_TABLE);
    await client.query(INSERT_CLICKS, [JSON.stringify(clicks)]);
    const { rows } = await client.query<ReferenceRow>(REFERENCE_COVISIT_SQL);
    const byUrl = new Map<string, Array<{ recommendation: string; frequency: number }>>();
    for (const r of rows) {
      if (r.recommendation === r.url) continue;
      let list = byUrl.get(r.url);
      if (!list) byUrl.set(r.url, (list = []));
      list.push({ recommendation: r.recommendation, frequency: r.frequency });
    }
    return byUrl;
  } finally {
    await client.end();
  }
}
