import type pg from "pg";
import { nthPaneFrom, windowRows, type RowFilters, type WindowKey, type WindowRow } from "./window-rows.js";
import type { HopWindows } from "./windows.js";

interface Bounds {
  emittedBeforeMs?: number;
  keptFromMs?: number;
}

/** The most event types EventMix answers, as many as a list answers elsewhere. */
export const MAX_EVENT_TYPES = 1_000;

const num = (v: string | null | undefined): number | undefined => (v === null || v === undefined ? undefined : Number(v));

/** The queries of the emitted windows and of the panes, on the pool of queries. */
export class AnalyticsReads {
  constructor(
    private readonly pool: pg.Pool,
    readonly windows: HopWindows,
  ) {}

  /**
   * Rows of emitted windows starting in [fromMs, toMs) matching every filter given, by window start, userid, event, url. Each pane
   * row at or after the first window gives a row of its own in the window starting at its pane, so the windows up to the pane of
   * the `limit`-th such row hold at least `limit` rows: only those are summed. A page starts after `after` when given (a cursor's
   * key), and answers the key of its last row when more follow.
   */
  async clickMetrics(q: RowFilters & { fromMs?: number; toMs?: number; limit: number; after?: WindowKey }): Promise<{ rows: WindowRow[]; next?: WindowKey }> {
    const b = await this.bounds();
    if (b.emittedBeforeMs === undefined) return { rows: [] };
    const { slideMs } = this.windows;
    const fromMs =
      Math.ceil(
        Math.max(q.fromMs ?? Number.NEGATIVE_INFINITY, b.keptFromMs ?? Number.NEGATIVE_INFINITY, q.after?.windowStartMs ?? Number.NEGATIVE_INFINITY) / slideMs,
      ) * slideMs;
    const toMs = Math.min(q.toMs ?? Number.POSITIVE_INFINITY, b.emittedBeforeMs);
    if (!(fromMs < toMs)) return { rows: [] };
    const filters = { userid: q.userid, url: q.url, event: q.event };
    // One row more than the page, to know whether another follows. The windows after the cursor's own hold that many rows by
    // themselves when the panes from there do, so the bound counts from the next window.
    const want = q.limit + 1;
    const nth = await nthPaneFrom(this.pool, q.after ? fromMs + slideMs : fromMs, want, filters);
    const beforeMs = nth === undefined ? toMs : Math.min(toMs, nth + slideMs);
    const rows = await windowRows(this.pool, this.windows, { ...filters, fromMs, beforeMs, limit: want, after: q.after });
    if (rows.length <= q.limit) return { rows };
    const kept = rows.slice(0, q.limit);
    const last = kept.at(-1)!;
    return { rows: kept, next: { windowStartMs: last.windowStartMs, userid: last.userid, event: last.event, url: last.url } };
  }

  /**
   * Clicks by event type with event time in [fromMs, toMs) (both multiples of the slide): the closed panes' totals by event
   * (pane_events: a few rows a pane, not one a click) and the sums of the panes not closed yet. `complete` is false while a click
   * may still come into one of them (a pane of an unemitted window) or some were pruned. At most MAX_EVENT_TYPES types, the most
   * clicked: clients name the types, and one could make up a type a click.
   */
  async eventMix(fromMs: number, toMs: number): Promise<{ events: Array<{ event: string; clicks: number }>; complete: boolean }> {
    const { rows } = await this.pool.query<{ event: string; clicks: string; emitted_before_ms: string | null; kept_from_ms: string | null }>(
      `SELECT e.event, e.clicks, s.emitted_before_ms, s.kept_from_ms FROM progress s
       LEFT JOIN LATERAL (
         SELECT event, sum(clicks) AS clicks FROM (
           SELECT event, clicks FROM pane_events WHERE pane_start_ms >= $1 AND pane_start_ms < least($2, s.totals_before_ms)
           UNION ALL
           SELECT event, clicks FROM panes WHERE pane_start_ms >= greatest($1, s.totals_before_ms) AND pane_start_ms < $2
         ) c GROUP BY event
       ) e ON true
       ORDER BY e.clicks DESC, e.event LIMIT $3`,
      [fromMs, toMs, MAX_EVENT_TYPES],
    );
    const emittedBefore = num(rows[0]?.emitted_before_ms);
    const keptFrom = num(rows[0]?.kept_from_ms);
    return {
      events: rows.filter((r) => r.event !== null).map((r) => ({ event: r.event, clicks: Number(r.clicks) })),
      complete: emittedBefore !== undefined && toMs <= emittedBefore && (keptFrom === undefined || fromMs >= keptFrom),
    };
  }

  /**
   * Urls by clicks in the `periodMs` ending with the watermark's pane (live: panes of unemitted windows count too), hidden urls
   * left out (the next ones take their places); undefined before any click. A period whose totals (trending_totals, migration
   * 005: the closed panes kept of [before - period, before)) end within it reads them; otherwise its panes.
   */
  async trending(periodMs: number, event: string | undefined, limit: number) {
    const { rows } = await this.pool.query<{ watermark_ms: string | null; kept_from_ms: string | null; before_ms: string | null }>(
      "SELECT g.watermark_ms, g.kept_from_ms, p.before_ms FROM progress g LEFT JOIN trending_periods p ON p.period_ms = $1",
      [periodMs],
    );
    const watermarkMs = num(rows[0]?.watermark_ms);
    if (watermarkMs === undefined) return undefined;
    const { slideMs } = this.windows;
    const toMs = Math.floor(watermarkMs / slideMs) * slideMs + slideMs;
    const totalsBefore = num(rows[0]?.before_ms);
    if (totalsBefore !== undefined && totalsBefore > toMs - periodMs && totalsBefore <= toMs) {
      const t = await this.trendingFromTotals(periodMs, totalsBefore, toMs, event, limit);
      if (t) return t;
    }
    const fromMs = Math.max(toMs - periodMs, num(rows[0]?.kept_from_ms) ?? Number.NEGATIVE_INFINITY);
    const urls = await this.pool.query<{ url: string; clicks: string }>(
      `SELECT t.url, t.clicks FROM (
         SELECT url, sum(clicks) AS clicks FROM panes WHERE pane_start_ms >= $1 AND pane_start_ms < $2 AND ($3::text IS NULL OR event = $3)
         GROUP BY url) t
       WHERE NOT EXISTS (SELECT FROM url_visibility v WHERE v.url = t.url AND v.hidden)
       ORDER BY t.clicks DESC, t.url LIMIT $4`,
      [fromMs, toMs, event ?? null, limit],
    );
    return { fromMs, toMs, urls: urls.rows.map((r) => ({ url: r.url, clicks: Number(r.clicks) })) };
  }

  /**
   * Trending from the period's totals ending at `totalsBefore`, less the closed panes between their start and the period's, plus
   * the panes from where they end: about the lateness and a window of panes each, whatever the period. One statement, so the
   * totals and kept_from agree (a move or a pruning commits between two statements); undefined when the totals moved meanwhile.
   */
  private async trendingFromTotals(periodMs: number, totalsBefore: number, toMs: number, event: string | undefined, limit: number) {
    const { rows } = await this.pool.query<{ from_ms: string; url: string | null; clicks: string | null }>(
      `WITH r AS (
         SELECT greatest($2 - $1, g.kept_from_ms) AS from_ms, greatest($5 - $1, g.kept_from_ms) AS totals_from_ms
         FROM progress g JOIN trending_periods p ON p.period_ms = $1 AND p.before_ms = $5
       ), c AS (
         SELECT tt.url, tt.clicks FROM trending_totals tt, r WHERE tt.period_ms = $1 AND ($3::text IS NULL OR tt.event = $3)
         UNION ALL
         SELECT p.url, -p.clicks FROM panes p, r
         WHERE p.pane_start_ms >= r.totals_from_ms AND p.pane_start_ms < r.from_ms AND ($3::text IS NULL OR p.event = $3)
         UNION ALL
         SELECT p.url, p.clicks FROM panes p, r WHERE p.pane_start_ms >= $5 AND p.pane_start_ms < $2 AND ($3::text IS NULL OR p.event = $3)
       )
       SELECT r.from_ms, x.url, x.clicks FROM r LEFT JOIN LATERAL (
         SELECT c.url, sum(c.clicks) AS clicks FROM c GROUP BY c.url
         HAVING sum(c.clicks) > 0 AND NOT EXISTS (SELECT FROM url_visibility v WHERE v.url = c.url AND v.hidden)
         ORDER BY clicks DESC, c.url LIMIT $4
       ) x ON true
       ORDER BY x.clicks DESC, x.url`,
      [periodMs, toMs, event ?? null, limit, totalsBefore],
    );
    if (rows.length === 0) return undefined;
    return {
      fromMs: Number(rows[0]!.from_ms),
      toMs,
      urls: rows.filter((r) => r.url !== null).map((r) => ({ url: r.url!, clicks: Number(r.clicks) })),
    };
  }

  private async bounds(): Promise<Bounds> {
    const { rows } = await this.pool.query<{ emitted_before_ms: string | null; kept_from_ms: string | null }>(
      "SELECT emitted_before_ms, kept_from_ms FROM progress",
    );
    return { emittedBeforeMs: num(rows[0]?.emitted_before_ms), keptFromMs: num(rows[0]?.kept_from_ms) };
  }
}
