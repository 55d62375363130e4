import type { Logger } from "@recsys/logging";
import { Counter, registry } from "@recsys/metrics";
import type { AnalyticsStore } from "./store.js";

const pruned = new Counter({
  name: "recsys_analytics_pruned_total",
  help: "Rows analytics deleted at their retention: applied_clicks past DEDUP_RETENTION_MS, panes and their totals by event (pane_events) past CLICK_METRICS_RETENTION_MS, behind the watermark",
  labelNames: ["table"] as const,
  registers: [registry],
});

/** Every `intervalMs` (and once at start), until a pass finds nothing more: a failed pass is logged and tried at the next. */
export function startPruning(opts: { store: AnalyticsStore; logger: Logger; intervalMs: number; dedupRetentionMs: number; metricsRetentionMs: number }) {
  let stopped = false;
  const pass = async () => {
    try {
      for (;;) {
        const { ids, panes, paneEvents } = await opts.store.prune(opts.dedupRetentionMs, opts.metricsRetentionMs);
        pruned.inc({ table: "applied_clicks" }, ids);
        pruned.inc({ table: "panes" }, panes);
        pruned.inc({ table: "pane_events" }, paneEvents);
        if (ids + panes + paneEvents > 0) opts.logger.info({ appliedClicks: ids, panes, paneEvents }, "pruned");
        if (stopped || ids + panes + paneEvents === 0) return;
      }
    } catch (err) {
      opts.logger.warn({ err: String(err) }, "pruning failed, trying again at the next pass");
    }
  };
  void pass();
  const timer = setInterval(() => void pass(), opts.intervalMs);
  timer.unref();
  return {
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
