import type pg from "pg";
import type { ClickToApply } from "@recsys/bus";
import type { HopWindows } from "./windows.js";

export type ClickOutcome = "applied" | "duplicate" | "late";

/** One emitted row of a window. */
export interface WindowRow {
  userid: string;
  event: string;
  url: string;
  eventCount: number;
}

/** The emitted rows of one window, ordered by userid, event, url. */
export interface EmittedWindow {
  startMs: number;
  rows: WindowRow[];
}

export interface Emission {
  /** Window starts emitted: [fromMs, beforeMs). */
  fromMs: number;
  beforeMs: number;
  rows: number;
}

export interface StoreProgress {
  watermarkMs?: number;
  emittedBeforeMs?: number;
  publishedBeforeMs?: number;
  lastAppliedAt: Date;
  appliedClicks: bigint;
  duplicateClicks: bigint;
  lateClicks: bigint;
  emittedRows: bigint;
  paneRows: bigint;
}

const num = (v: string | null): number | undefined => (v === null ? undefined : Number(v));

/** analytics' state in PostgreSQL (migrations/): panes, applied ids, emitted rows and where the stream stands. */
export class AnalyticsStore {
  constructor(
    private readonly pool: pg.Pool,
    readonly windows: HopWindows,
  ) {}

  /** The clicks of CLICKS messages, in one transaction: ids, pane increments, watermark. A redelivery changes nothing. */
  async applyClicks(clicks: ClickToApply[]): Promise<{ outcomes: ClickOutcome[]; watermarkMs?: number }> {
    if (clicks.length === 0) return { outcomes: [] };
    const { rows } = await this.pool.query<{ outcomes: ClickOutcome[]; watermark: string | null }>(
      "SELECT outcomes, watermark FROM apply_clicks($1, $2, $3, $4, $5, $6)",
      [
        clicks.map((c) => c.userid),
        clicks.map((c) => c.eventId),
        clicks.map((c) => c.eventTimeMs),
        clicks.map((c) => c.event),
        clicks.map((c) => c.url),
        this.windows.slideMs,
      ],
    );
    return { outcomes: rows[0]!.outcomes, watermarkMs: num(rows[0]!.watermark) };
  }

  /**
   * Emits the windows the watermark closed, or every window holding data when `idleMs` is given and no click was applied for that long;
   * at most `maxWindows` in one transaction. Undefined when nothing was due.
   */
  async emit(latenessMs: number, idleMs: number | null, maxWindows: number): Promise<Emission | undefined> {
    const { rows } = await this.pool.query<{ emitted_from: string | null; emitted_before: string | null; emitted_rows: string }>(
      "SELECT * FROM emit_windows($1, $2, $3, $4, $5)",
      [this.windows.sizeMs, this.windows.slideMs, latenessMs, idleMs, maxWindows],
    );
    const r = rows[0]!;
    const fromMs = num(r.emitted_from);
    const beforeMs = num(r.emitted_before);
    if (fromMs === undefined || beforeMs === undefined || beforeMs <= fromMs) return undefined;
    return { fromMs, beforeMs, rows: Number(r.emitted_rows) };
  }

  /** Emitted windows not yet published, oldest first, whole: as many as hold about `maxRows` rows (at least one). */
  async unpublished(maxRows: number): Promise<EmittedWindow[]> {
    const { rows: windows } = await this.pool.query<{ start_ms: string; n: string }>(
      `SELECT (extract(epoch FROM window_start) * 1000)::bigint AS start_ms, count(*) AS n FROM click_metrics, progress
       WHERE window_start < timestamptz 'epoch' + emitted_before_ms * interval '1 millisecond'
         AND (published_before_ms IS NULL OR window_start >= timestamptz 'epoch' + published_before_ms * interval '1 millisecond')
       GROUP BY window_start ORDER BY window_start LIMIT 1000`,
    );
    let total = 0;
    const chosen: number[] = [];
    for (const w of windows) {
      if (chosen.length > 0 && total + Number(w.n) > maxRows) break;
      chosen.push(Number(w.start_ms));
      total += Number(w.n);
    }
    if (chosen.length === 0) return [];
    const { rows } = await this.pool.query<{ start_ms: string; userid: string; event: string; url: string; event_count: string }>(
      `SELECT (extract(epoch FROM window_start) * 1000)::bigint AS start_ms, userid, event, url, event_count FROM click_metrics
       WHERE window_start >= timestamptz 'epoch' + $1 * interval '1 millisecond' AND window_start <= timestamptz 'epoch' + $2 * interval '1 millisecond'
       ORDER BY window_start, userid COLLATE "C", event COLLATE "C", url COLLATE "C"`,
      [chosen[0], chosen.at(-1)],
    );
    const byStart = new Map<number, WindowRow[]>(chosen.map((s) => [s, []]));
    for (const r of rows) byStart.get(Number(r.start_ms))!.push({ userid: r.userid, event: r.event, url: r.url, eventCount: Number(r.event_count) });
    return chosen.map((startMs) => ({ startMs, rows: byStart.get(startMs)! }));
  }

  /** Every window starting before `beforeMs` is on the stream. */
  async markPublished(beforeMs: number): Promise<void> {
    await this.pool.query("UPDATE progress SET published_before_ms = greatest(published_before_ms, $1)", [beforeMs]);
  }

  /** Whether every emitted window is published. */
  async allPublished(): Promise<boolean> {
    const { rows } = await this.pool.query<{ done: boolean }>(
      "SELECT emitted_before_ms IS NULL OR published_before_ms >= emitted_before_ms OR NOT EXISTS (SELECT FROM click_metrics) AS done FROM progress",
    );
    return rows[0]!.done;
  }

  async progress(): Promise<StoreProgress> {
    const { rows } = await this.pool.query(
      `SELECT watermark_ms, emitted_before_ms, published_before_ms, last_applied_at, applied_clicks, duplicate_clicks, late_clicks, emitted_rows,
         (SELECT count(*) FROM panes) AS pane_rows FROM progress`,
    );
    const r = rows[0]!;
    return {
      watermarkMs: num(r.watermark_ms),
      emittedBeforeMs: num(r.emitted_before_ms),
      publishedBeforeMs: num(r.published_before_ms),
      lastAppliedAt: r.last_applied_at,
      appliedClicks: BigInt(r.applied_clicks),
      duplicateClicks: BigInt(r.duplicate_clicks),
      lateClicks: BigInt(r.late_clicks),
      emittedRows: BigInt(r.emitted_rows),
      paneRows: BigInt(r.pane_rows),
    };
  }

  /**
   * Forgets applied ids older than `dedupRetentionMs` behind the watermark (a click that old is late anyway) and emitted rows older than
   * `metricsRetentionMs`, at most `batch` rows of each a call; returns how many went.
   */
  async prune(dedupRetentionMs: number, metricsRetentionMs: number, batch = 10_000): Promise<{ ids: number; rows: number }> {
    const ids = await this.pool.query(
      `DELETE FROM applied_clicks WHERE ctid = ANY (ARRAY(
         SELECT ctid FROM applied_clicks WHERE event_time_ms < (SELECT watermark_ms FROM progress) - $1 LIMIT $2))`,
      [dedupRetentionMs, batch],
    );
    const rows = await this.pool.query(
      `DELETE FROM click_metrics WHERE ctid = ANY (ARRAY(
         SELECT ctid FROM click_metrics, progress
         WHERE window_start < timestamptz 'epoch' + (watermark_ms - $1) * interval '1 millisecond'
           AND window_start < timestamptz 'epoch' + published_before_ms * interval '1 millisecond' LIMIT $2))`,
      [metricsRetentionMs, batch],
    );
    return { ids: ids.rowCount ?? 0, rows: rows.rowCount ?? 0 };
  }

  async ping(): Promise<boolean> {
    await this.pool.query("SELECT 1");
    return true;
  }
}
