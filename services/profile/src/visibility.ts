import type pg from "pg";
import type { PageVisibility } from "./types.js";

/**
 * Stores a url's visibility unless a state of a later VISIBILITY sequence is stored: "applied", or "stale" when nothing changed
 * (a redelivery, an older state after a newer one). One statement; no page needs to exist (a page hidden before it is embedded stays hidden).
 */
export async function applyVisibility(pool: pg.Pool, v: PageVisibility): Promise<"applied" | "stale"> {
  const r = await pool.query(
    `INSERT INTO page_visibility (url, hidden, seq) VALUES ($1, $2, $3)
     ON CONFLICT (url) DO UPDATE SET hidden = excluded.hidden, seq = excluded.seq WHERE page_visibility.seq < excluded.seq`,
    [v.url, v.hidden, v.seq],
  );
  return r.rowCount === 1 ? "applied" : "stale";
}
