import type { Logger } from "@recsys/logging";
import { Counter, registry } from "@recsys/metrics";
import type { ProfileStore } from "./pg-store.js";

const pruned = new Counter({
  name: "recsys_profile_pruned_total",
  help: "Rows profile deleted at their limits: applied_events past their users' horizons, parked_clicks whose page never came",
  labelNames: ["table"] as const,
  registers: [registry],
});

/**
 * Every `intervalMs` (and once at start): applied event ids past their users' horizons go, and
 * clicks parked longer than `parkedClickMaxAgeMs`. A failed pass is logged and tried at the next.
 */
export function startPruning(opts: { store: ProfileStore; logger: Logger; intervalMs: number; parkedClickMaxAgeMs: number }): { stop(): void } {
  const pass = async () => {
    try {
      const ids = await opts.store.pruneAppliedEvents();
      const parked = await opts.store.expireParkedClicks(opts.parkedClickMaxAgeMs);
      pruned.inc({ table: "applied_events" }, ids);
      pruned.inc({ table: "parked_clicks" }, parked);
      if (ids + parked > 0) opts.logger.info({ appliedEvents: ids, parkedClicks: parked }, "pruned");
    } catch (err) {
      opts.logger.warn({ err: String(err) }, "pruning failed, trying again at the next pass");
    }
  };
  void pass();
  const timer = setInterval(() => void pass(), opts.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
