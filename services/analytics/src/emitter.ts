import { setTimeout as sleep } from "node:timers/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { consumerProgress, typedHeaders, type Bus, type CrashAfterEffects } from "@recsys/bus";
import { ClickMetricsBatchSchema } from "@recsys/contracts/events/v1/click_metrics";
import type { Logger } from "@recsys/logging";
import { Counter, Histogram, registry, type DependencyHealth } from "@recsys/metrics";
import { clicksDurable } from "./durable.js";
import type { AnalyticsStore, EmittedWindow } from "./store.js";
import type { WatermarkLog } from "./watermark-log.js";
import { closedBefore } from "./windows.js";

const emittedRows = new Counter({
  name: "recsys_analytics_emitted_rows_total",
  help: "Rows (window, userid, event, url, count) analytics published to CLICK_METRICS",
  registers: [registry],
});

const emissionLag = new Histogram({
  name: "recsys_analytics_emission_lag_seconds",
  help: "From the watermark closing a window (its end plus the allowed lateness) to the window being emitted: queryable, its clicks final",
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});

/** A message of CLICK_METRICS holds at most this many rows, and about this many bytes (NATS takes 1 MiB by default). */
const CHUNK_ROWS = 2_000;
const CHUNK_BYTES = 256 * 1024;

/** A window's rows cut into messages, always the same way for the same rows: each chunk's message id is then its own forever. */
export function chunksOf(w: EmittedWindow): EmittedWindow["rows"][] {
  const chunks: EmittedWindow["rows"][] = [];
  let chunk: EmittedWindow["rows"] = [];
  let bytes = 0;
  for (const r of w.rows) {
    const size = Buffer.byteLength(r.userid) + Buffer.byteLength(r.event) + Buffer.byteLength(r.url) + 24;
    if (chunk.length > 0 && (chunk.length >= CHUNK_ROWS || bytes + size > CHUNK_BYTES)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(r);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/** What emission needs to know. */
export interface EmissionOptions {
  store: AnalyticsStore;
  watermarks: WatermarkLog;
  logger: Logger;
  latenessMs: number;
  /** The newest emitted_before this process saw (another emission may have moved it further). */
  emitted: { beforeMs?: number };
}

/**
 * Emits every window due: those the watermark closed, and with `idleMs` (the consumer has nothing waiting) every window holding data
 * once no click was applied for that long. One row of progress moves; the windows' rows are their panes' sums from then on.
 */
export async function emitDue(opts: EmissionOptions, idleMs: number | null): Promise<void> {
  const { sizeMs, slideMs } = opts.store.windows;
  // Without the idle rule, nothing is due until the watermark closes a window past the last emission this process made.
  const watermarkMs = opts.watermarks.newest();
  const seen = opts.emitted.beforeMs;
  if (idleMs === null && watermarkMs !== undefined && seen !== undefined && closedBefore(watermarkMs, opts.latenessMs, opts.store.windows) <= seen) return;
  const e = await opts.store.emit(opts.latenessMs, idleMs);
  if (!e) return;
  opts.emitted.beforeMs = Math.max(seen ?? e.beforeMs, e.beforeMs);
  const now = Date.now();
  for (let s = e.fromMs; s < e.beforeMs; s += slideMs) {
    const closedAt = opts.watermarks.reachedAt(s + sizeMs + opts.latenessMs);
    if (closedAt !== undefined) emissionLag.observe((now - closedAt) / 1000);
  }
  opts.logger.debug({ from: new Date(e.fromMs).toISOString(), before: new Date(e.beforeMs).toISOString() }, "windows emitted");
}

export interface EmitterOptions extends EmissionOptions {
  bus: Bus;
  /** Failing while emission or publication fails (PostgreSQL or NATS), with the error. */
  health: DependencyHealth;
  idleMs: number;
  intervalMs: number;
  /** Kills the process after that many messages published to CLICK_METRICS, before published_before moves (fault tests). */
  crashAfterPublishes?: CrashAfterEffects;
  signal: AbortSignal;
}

/**
 * Emits the windows of an idle stream (the consumer emits those the watermark closes, after each message), then publishes what is
 * emitted and not yet published to CLICK_METRICS, window by window and chunk by chunk. After a crash before `published_before`
 * moved, the windows after it are summed again into the same rows cut the same way (an emitted window's panes no longer change),
 * and publication resumes after the stream's newest message; the message ids let the broker drop a repeat besides.
 */
export async function runEmitter(opts: EmitterOptions): Promise<void> {
  const { store, bus, logger } = opts;
  const { sizeMs } = store.windows;
  const caughtUp = async () => {
    const p = await consumerProgress(bus, bus.topology.clicksStream, [clicksDurable]);
    return p.pending === 0n && p.ackPending === 0n;
  };

  // The newest message on CLICK_METRICS when this process started publishing: a crash may have left a window partly published
  // after published_before. Its chunks up to that one are not published again, whatever the broker's duplicate window remembers.
  let resumeAfter: { startMs: number; chunk: number } | null | undefined;
  const newestOnStream = async () => {
    const m = await bus.jsm.streams.getMessage(bus.topology.clickMetricsStream, { last_by_subj: bus.topology.clickMetricsSubject });
    if (!m) return null;
    const b = fromBinary(ClickMetricsBatchSchema, m.data);
    return { startMs: Number(b.windowStartMs), chunk: b.chunk };
  };

  // Chunks one after another, so that the stream's newest message is always the furthest published.
  const publishWindow = async (w: EmittedWindow) => {
    const chunks = chunksOf(w);
    for (let chunk = 0; chunk < chunks.length; chunk++) {
      if (resumeAfter && (w.startMs < resumeAfter.startMs || (w.startMs === resumeAfter.startMs && chunk <= resumeAfter.chunk))) continue;
      await bus.publish(
        bus.topology.clickMetricsSubject,
        toBinary(
          ClickMetricsBatchSchema,
          create(ClickMetricsBatchSchema, {
            windowStartMs: BigInt(w.startMs),
            windowEndMs: BigInt(w.startMs + sizeMs),
            chunk,
            rows: chunks[chunk]!.map((r) => ({ userid: r.userid, event: r.event, url: r.url, eventCount: BigInt(r.eventCount) })),
          }),
        ),
        { msgID: `click-metrics-${w.startMs}-${chunk}`, headers: typedHeaders(ClickMetricsBatchSchema.typeName) },
      );
      opts.crashAfterPublishes?.ran(1, logger, bus.topology.clickMetricsStream);
    }
  };

  const publishEmitted = async () => {
    if (resumeAfter === undefined) resumeAfter = await newestOnStream();
    for (;;) {
      const { windows, beforeMs } = await store.unpublished(20_000);
      if (beforeMs === undefined) return;
      for (const w of windows) await publishWindow(w);
      const rows = windows.reduce((n, w) => n + w.rows.length, 0);
      if (await store.markPublished(beforeMs, rows)) emittedRows.inc(rows);
    }
  };

  while (!opts.signal.aborted) {
    try {
      // One read of progress a tick while nothing is due: the broker is asked only once no click came for the idle time.
      const s = await store.emissionState();
      const unemitted = s.watermarkMs !== undefined && (s.emittedBeforeMs === undefined || s.emittedBeforeMs <= s.watermarkMs);
      let due = s.emittedBeforeMs !== undefined && !(s.publishedBeforeMs !== undefined && s.publishedBeforeMs >= s.emittedBeforeMs);
      if (unemitted && Date.now() - s.lastAppliedAt.getTime() >= opts.idleMs && (await caughtUp().catch(() => false))) {
        await emitDue(opts, opts.idleMs);
        due = true;
      }
      if (due) await publishEmitted();
      opts.health.recovered();
    } catch (err) {
      opts.health.failed(String(err));
      logger.warn({ err: String(err) }, "emission failed, retrying");
    }
    await sleep(opts.intervalMs, undefined, { signal: opts.signal }).catch(() => undefined);
  }
}
