import type pg from "pg";
import type { HopWindows } from "./windows.js";

export interface ClickMetricRow {
  windowStart: Date;
  windowEnd: Date;
  userid: string;
  event: string;
  url: string;
  eventCount: number;
}

const at = (ms: number) => new Date(ms);

/** The queries of the emitted rows (click_metrics), on the pool of queries. */
export class AnalyticsReads {
  constructor(
    private readonly pool: pg.Pool,
    readonly windows: HopWindows,
  ) {}

  /** Rows matching every filter given, by window start, userid, event, url. */
  async clickMetrics(q: { userid?: string; url?: string; event?: string; fromMs?: number; toMs?: number; limit: number }): Promise<ClickMetricRow[]> {
    const { rows } = await this.pool.query(
      `SELECT window_start, window_end, userid, event, url, event_count FROM click_metrics
       WHERE ($1::text IS NULL OR userid = $1) AND ($2::text IS NULL OR url = $2) AND ($3::text IS NULL OR event = $3)
         AND ($4::timestamptz IS NULL OR window_start >= $4) AND ($5::timestamptz IS NULL OR window_start < $5)
       ORDER BY window_start, userid, event, url LIMIT $6`,
      [q.userid ?? null, q.url ?? null, q.event ?? null, q.fromMs === undefined ? null : at(q.fromMs), q.toMs === undefined ? null : at(q.toMs), q.limit],
    );
    return rows.map((r) => ({
      windowStart: r.window_start,
      windowEnd: r.window_end,
      userid: r.userid,
      event: r.event,
      url: r.url,
      eventCount: Number(r.event_count),
    }));
  }

  /**
   * Clicks by event type with event time in [fromMs, toMs): the sum over the windows starting at fromMs, fromMs + size, … (they tile
   * the period, so each click counts once). `complete` is false while the last of them is not emitted.
   */
  async eventMix(fromMs: number, toMs: number): Promise<{ events: Array<{ event: string; clicks: number }>; complete: boolean }> {
    const { rows } = await this.pool.query<{ event: string; clicks: string }>(
      `SELECT event, sum(event_count) AS clicks FROM click_metrics WHERE window_start = ANY ($1::timestamptz[])
       GROUP BY event ORDER BY clicks DESC, event`,
      [this.tiling(fromMs, toMs)],
    );
    const emitted = await this.emittedBefore();
    return {
      events: rows.map((r) => ({ event: r.event, clicks: Number(r.clicks) })),
      complete: emitted !== undefined && emitted > toMs - this.windows.sizeMs,
    };
  }

  /** Urls by clicks in the `periodMs` ending with the newest emitted window (the windows tiling it back from there); undefined before any emission. */
  async trending(periodMs: number, event: string | undefined, limit: number) {
    const emitted = await this.emittedBefore();
    if (emitted === undefined) return undefined;
    const toMs = emitted - this.windows.slideMs + this.windows.sizeMs;
    const { rows } = await this.pool.query<{ url: string; clicks: string }>(
      `SELECT url, sum(event_count) AS clicks FROM click_metrics WHERE window_start = ANY ($1::timestamptz[]) AND ($2::text IS NULL OR event = $2)
       GROUP BY url ORDER BY clicks DESC, url LIMIT $3`,
      [this.tiling(toMs - periodMs, toMs), event ?? null, limit],
    );
    return { fromMs: toMs - periodMs, toMs, urls: rows.map((r) => ({ url: r.url, clicks: Number(r.clicks) })) };
  }

  /** The starts of the windows that tile [fromMs, toMs): one every window size. Each is an index lookup, so only their rows are read. */
  private tiling(fromMs: number, toMs: number): Date[] {
    const starts: Date[] = [];
    for (let s = fromMs; s + this.windows.sizeMs <= toMs; s += this.windows.sizeMs) starts.push(at(s));
    return starts;
  }

  private async emittedBefore(): Promise<number | undefined> {
    const { rows } = await this.pool.query<{ emitted_before_ms: string | null }>("SELECT emitted_before_ms FROM progress");
    const v = rows[0]?.emitted_before_ms;
    return v === null || v === undefined ? undefined : Number(v);
  }
}
