import type pg from "pg";
import type { ClickToApply } from "@recsys/bus";
import type { HopWindows } from "./windows.js";
import { firstWindowWithData, windowRows, type WindowRow } from "./window-rows.js";

export type ClickOutcome = "applied" | "duplicate" | "late";

/** The rows of one emitted window, ordered by userid, event, url. */
export interface EmittedWindow {
  startMs: number;
  rows: WindowRow[];
}

export interface Emission {
  /** Window starts emitted: [fromMs, beforeMs). */
  fromMs: number;
  beforeMs: number;
}

export interface StoreProgress {
  watermarkMs?: number;
  emittedBeforeMs?: number;
  publishedBeforeMs?: number;
  lastAppliedAt: Date;
  appliedClicks: bigint;
  duplicateClicks: bigint;
  lateClicks: bigint;
  /** Rows published to CLICK_METRICS. */
  emittedRows: bigint;
  /** Pane rows a click can still change (their pane is in an unemitted window). */
  paneRows: bigint;
  /** Every pane row held: the open ones and the store of emitted windows. */
  storedPaneRows: bigint;
  /** Windows starting before this are not answered (their panes may be pruned). */
  keptFromMs?: number;
}

const num = (v: string | null): number | undefined => (v === null ? undefined : Number(v));

/** analytics' state in PostgreSQL (migrations/): panes, applied ids and where the stream stands. */
export class AnalyticsStore {
  constructor(
    private readonly pool: pg.Pool,
    readonly windows: HopWindows,
  ) {}

  /** The clicks of CLICKS messages, in one transaction: ids, pane increments, watermark. A redelivery changes nothing. */
  async applyClicks(clicks: ClickToApply[]): Promise<{ outcomes: ClickOutcome[]; watermarkMs?: number }> {
    if (clicks.length === 0) return { outcomes: [] };
    const { rows } = await this.pool.query<{ outcomes: ClickOutcome[]; watermark: string | null }>(
      "SELECT outcomes, watermark FROM apply_clicks($1, $2, $3, $4, $5, $6, $7)",
      [
        clicks.map((c) => c.userid),
        clicks.map((c) => c.eventId),
        clicks.map((c) => c.eventTimeMs),
        clicks.map((c) => c.event),
        clicks.map((c) => c.url),
        this.windows.sizeMs,
        this.windows.slideMs,
      ],
    );
    return { outcomes: rows[0]!.outcomes, watermarkMs: num(rows[0]!.watermark) };
  }

  /**
   * Forgets a user (an erasure): their pane rows join the erased users' ('' userid: counted in EventMix and Trending, answered by no
   * ClickMetrics and never published) and their applied ids go, so their next clicks are a new user's. With `whenPublished`, refused
   * (false, nothing changed) while an emitted window is not yet on CLICK_METRICS, whose rows must stay as emitted until published.
   */
  async eraseUser(userid: string, whenPublished: boolean): Promise<boolean> {
    const { rows } = await this.pool.query<{ erased: boolean }>("SELECT erased FROM erase_user($1, $2)", [userid, whenPublished]);
    return rows[0]!.erased;
  }

  /** Keeps a url's visibility unless a state of a later VISIBILITY sequence is kept: "stale" when nothing changed (a redelivery, an older state). */
  async applyVisibility(v: { url: string; hidden: boolean; seq: number }): Promise<"applied" | "stale"> {
    const r = await this.pool.query(
      `INSERT INTO url_visibility (url, hidden, seq) VALUES ($1, $2, $3)
       ON CONFLICT (url) DO UPDATE SET hidden = excluded.hidden, seq = excluded.seq WHERE url_visibility.seq < excluded.seq`,
      [v.url, v.hidden, v.seq],
    );
    return r.rowCount === 1 ? "applied" : "stale";
  }

  /** Emits the windows the watermark closed, or every window holding data when `idleMs` is given and no click was applied for that long. Undefined when nothing was due. */
  async emit(latenessMs: number, idleMs: number | null): Promise<Emission | undefined> {
    const { rows } = await this.pool.query<{ emitted_from: string | null; emitted_before: string | null }>("SELECT * FROM emit_windows($1, $2, $3, $4)", [
      this.windows.sizeMs,
      this.windows.slideMs,
      latenessMs,
      idleMs,
    ]);
    const fromMs = num(rows[0]!.emitted_from);
    const beforeMs = num(rows[0]!.emitted_before);
    if (fromMs === undefined || beforeMs === undefined || beforeMs <= fromMs) return undefined;
    // The panes closed now keep their totals by event for EventMix (migration 004), and come into Trending's totals (005).
    await this.closePanes();
    return { fromMs, beforeMs };
  }

  /**
   * The next emitted windows not yet published, oldest first, as many as hold about `maxRows` rows (at least one), and where they end:
   * `beforeMs` is undefined when every emitted window is published.
   */
  async unpublished(maxRows: number): Promise<{ windows: EmittedWindow[]; beforeMs?: number }> {
    const { rows } = await this.pool.query<{ emitted_before_ms: string | null; published_before_ms: string | null; kept_from_ms: string | null }>(
      "SELECT emitted_before_ms, published_before_ms, kept_from_ms FROM progress",
    );
    const emittedBefore = num(rows[0]!.emitted_before_ms);
    const publishedBefore = num(rows[0]!.published_before_ms) ?? num(rows[0]!.kept_from_ms);
    if (emittedBefore === undefined || publishedBefore === undefined || publishedBefore >= emittedBefore) return { windows: [] };
    const { sizeMs, slideMs } = this.windows;
    const first = await firstWindowWithData(this.pool, this.windows, publishedBefore);
    if (first === undefined || first >= emittedBefore) return { windows: [], beforeMs: emittedBefore };
    // A window has at most as many rows as the pane rows it holds: take as many windows as the first one's rows allow.
    const { rows: held } = await this.pool.query<{ n: string }>("SELECT count(*) AS n FROM panes WHERE pane_start_ms >= $1 AND pane_start_ms < $2", [
      first,
      first + sizeMs,
    ]);
    const windowsAtOnce = Math.max(1, Math.min(sizeMs / slideMs, Math.floor(maxRows / Math.max(1, Number(held[0]!.n)))));
    const beforeMs = Math.min(emittedBefore, first + windowsAtOnce * slideMs);
    const byStart = new Map<number, WindowRow[]>();
    for (const r of await windowRows(this.pool, this.windows, { fromMs: first, beforeMs })) {
      let list = byStart.get(r.windowStartMs);
      if (!list) byStart.set(r.windowStartMs, (list = []));
      list.push(r);
    }
    return { windows: [...byStart].map(([startMs, rows]) => ({ startMs, rows })), beforeMs };
  }

  /** Every window starting before `beforeMs` is on the stream, with `rows` rows more than before; false if that was known already. */
  async markPublished(beforeMs: number, rows: number): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `UPDATE progress SET published_before_ms = $1, emitted_rows = emitted_rows + $2
       WHERE published_before_ms IS NULL OR published_before_ms < $1`,
      [beforeMs, rows],
    );
    return rowCount === 1;
  }

  /** Where emission and publication stand: one row read. */
  async emissionState() {
    const { rows } = await this.pool.query("SELECT watermark_ms, emitted_before_ms, published_before_ms, last_applied_at FROM progress");
    const r = rows[0]!;
    return {
      watermarkMs: num(r.watermark_ms),
      emittedBeforeMs: num(r.emitted_before_ms),
      publishedBeforeMs: num(r.published_before_ms),
      lastAppliedAt: r.last_applied_at as Date,
    };
  }

  async progress(): Promise<StoreProgress> {
    const { rows } = await this.pool.query(
      `SELECT watermark_ms, emitted_before_ms, published_before_ms, kept_from_ms, last_applied_at, applied_clicks, duplicate_clicks, late_clicks,
         emitted_rows, (SELECT count(*) FROM panes WHERE emitted_before_ms IS NULL OR pane_start_ms >= emitted_before_ms) AS pane_rows,
         (SELECT count(*) FROM panes) AS stored_pane_rows
       FROM progress`,
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
      storedPaneRows: BigInt(r.stored_pane_rows),
      keptFromMs: num(r.kept_from_ms),
    };
  }

  /**
   * Forgets applied ids older than `dedupRetentionMs` behind the watermark (a click that old is late anyway), and the panes of windows
   * starting more than `metricsRetentionMs` behind it once those are published (queries then answer from `kept_from_ms`) with their
   * totals by event, at most
   * `batch` rows of each a call; returns how many went.
   */
  async prune(dedupRetentionMs: number, metricsRetentionMs: number, batch = 10_000): Promise<{ ids: number; panes: number; paneEvents: number }> {
    // Totals an emission left behind (a crash after it, a replica of a previous build) are taken here at the latest.
    await this.closePanes();
    const ids = await this.pool.query(
      `DELETE FROM applied_clicks WHERE ctid = ANY (ARRAY(
         SELECT ctid FROM applied_clicks WHERE event_time_ms < (SELECT watermark_ms FROM progress) - $1 LIMIT $2))`,
      [dedupRetentionMs, batch],
    );
    const panes = await this.pool.query(
      `WITH cut AS (
         UPDATE progress SET kept_from_ms = greatest(kept_from_ms,
           least(published_before_ms, (watermark_ms - $1) - mod(mod(watermark_ms - $1, $3) + $3, $3)))
         WHERE published_before_ms IS NOT NULL
         RETURNING kept_from_ms)
       DELETE FROM panes WHERE ctid = ANY (ARRAY(SELECT ctid FROM panes, cut WHERE pane_start_ms < cut.kept_from_ms LIMIT $2))`,
      [metricsRetentionMs, batch, this.windows.slideMs],
    );
    // The panes' totals by event go with them (a few rows a pane).
    const totals = await this.pool.query(
      `DELETE FROM pane_events WHERE ctid = ANY (ARRAY(
         SELECT ctid FROM pane_events WHERE pane_start_ms < (SELECT kept_from_ms FROM progress) LIMIT $1))`,
      [batch],
    );
    return { ids: ids.rowCount ?? 0, panes: panes.rowCount ?? 0, paneEvents: totals.rowCount ?? 0 };
  }

  /** Takes the closed panes' totals by event, then moves Trending's totals, each in a transaction of its own: only the first holds progress. */
  private async closePanes(): Promise<void> {
    await this.pool.query("SELECT close_pane_totals()");
    await this.pool.query("SELECT move_trending_totals()");
  }

  async ping(): Promise<boolean> {
    await this.pool.query("SELECT 1");
    return true;
  }
}
