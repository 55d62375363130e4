import type pg from "pg";
import type { HopWindows } from "./windows.js";

/** One row of a window: the clicks of a (userid, event, url) in it. */
export interface WindowRow {
  windowStartMs: number;
  userid: string;
  event: string;
  url: string;
  eventCount: number;
}

/** A row's place in the rows' order (window start, userid, event, url): a page of rows starts after it. */
export type WindowKey = Pick<WindowRow, "windowStartMs" | "userid" | "event" | "url">;

/** Rows of these only; undefined: any. */
export interface RowFilters {
  userid?: string;
  url?: string;
  event?: string;
}

/**
 * The rows of the emitted windows starting in [fromMs, beforeMs) (and at or after `kept_from_ms`), by window start, userid, event,
 * url (bytewise, so the same rows come in the same order every time): each the sum of the panes the window holds, of the pane rows
 * counting in it (`first_window_ms` at or before it); never the erased users' rows (userid ''). One statement, so emission and
 * pruning are seen at one instant.
 */
export async function windowRows(
  db: pg.Pool | pg.PoolClient,
  w: HopWindows,
  q: { fromMs: number; beforeMs: number; limit?: number; after?: WindowKey } & RowFilters,
): Promise<WindowRow[]> {
  // Window starts are multiples of the slide: those at or after fromMs and before beforeMs are from and before the next ones.
  const up = (ms: number) => Math.ceil(ms / w.slideMs) * w.slideMs;
  const params: unknown[] = [up(q.fromMs), up(q.beforeMs), w.sizeMs, w.slideMs];
  let where = filterSql(q, params, "p.");
  if (q.after) {
    const a = q.after;
    params.push(a.windowStartMs, a.userid, a.event, a.url);
    const n = params.length - 3;
    where += ` AND (w, p.userid COLLATE "C", p.event COLLATE "C", p.url COLLATE "C") > ($${n}::bigint, $${n + 1}::text COLLATE "C", $${n + 2}::text COLLATE "C", $${n + 3}::text COLLATE "C")`;
  }
  params.push(q.limit ?? null);
  const { rows } = await db.query<{ window_start_ms: string; userid: string; event: string; url: string; event_count: string }>(
    `SELECT w AS window_start_ms, p.userid, p.event, p.url, sum(p.clicks) AS event_count
     FROM progress s
     JOIN panes p ON p.pane_start_ms >= greatest($1, s.kept_from_ms) AND p.pane_start_ms < least($2, s.emitted_before_ms) - $4 + $3
     CROSS JOIN LATERAL generate_series(greatest($1, s.kept_from_ms, p.pane_start_ms - $3 + $4, p.first_window_ms),
                                        least($2 - $4, s.emitted_before_ms - $4, p.pane_start_ms), $4) AS w
     WHERE s.emitted_before_ms IS NOT NULL AND p.userid <> '' ${where}
     GROUP BY w, p.userid, p.event, p.url
     ORDER BY w, p.userid COLLATE "C", p.event COLLATE "C", p.url COLLATE "C"
     LIMIT $${params.length}`,
    params,
  );
  return rows.map((r) => ({
    windowStartMs: Number(r.window_start_ms),
    userid: r.userid,
    event: r.event,
    url: r.url,
    eventCount: Number(r.event_count),
  }));
}

/** `AND column = $n` for each filter given, its value appended to `params`. */
function filterSql(f: RowFilters, params: unknown[], alias = ""): string {
  const where: string[] = [];
  for (const column of ["userid", "url", "event"] as const) {
    const v = f[column];
    if (v === undefined) continue;
    params.push(v);
    where.push(`AND ${alias}${column} = $${params.length}`);
  }
  return where.join(" ");
}

/** The start of the `n`-th pane row (in pane order) at or after `fromMs` matching the filters, erased users' aside; undefined when there are fewer. */
export async function nthPaneFrom(db: pg.Pool | pg.PoolClient, fromMs: number, n: number, f: RowFilters): Promise<number | undefined> {
  const params: unknown[] = [fromMs, n - 1];
  const { rows } = await db.query<{ pane_start_ms: string }>(
    `SELECT pane_start_ms FROM panes WHERE pane_start_ms >= $1 AND userid <> '' ${filterSql(f, params)} ORDER BY pane_start_ms OFFSET $2 LIMIT 1`,
    params,
  );
  return rows[0] === undefined ? undefined : Number(rows[0].pane_start_ms);
}

/** The first window start at or after `fromMs` that holds a pane row (it may still count in none); undefined: none. */
export async function firstWindowWithData(db: pg.Pool | pg.PoolClient, w: HopWindows, fromMs: number): Promise<number | undefined> {
  const { rows } = await db.query<{ pane: string | null }>("SELECT min(pane_start_ms) AS pane FROM panes WHERE pane_start_ms >= $1", [
    fromMs - w.sizeMs + w.slideMs,
  ]);
  const pane = rows[0]?.pane;
  return pane === null || pane === undefined ? undefined : Math.max(fromMs, Number(pane) - w.sizeMs + w.slideMs);
}
