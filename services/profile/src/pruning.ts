import type { Logger } from "@recsys/logging";
import { Counter, registry } from "@recsys/metrics";
import type { ProfileStore } from "./pg-store.js";

const pruned = new Counter({
  name: "recsys_profile_pruned_total",
  help: "Rows profile deleted at their limits: applied_events past their users' horizons or of users silent for the retention, event_watermarks of those users, parked_clicks whose page never came",
  labelNames: ["table"] as const,
  registers: [registry],
});

/** How many silent (user, kind) pairs one statement forgets: a pass runs as many as it needs, each short. */
export const FORGET_BATCH = 10_000;

/**
 * Every `intervalMs` (and once at start): clicks parked longer than `parkedClickMaxAgeMs` go with their ids, applied event ids past
 * their users' horizons, and users silent for the retention with their ids and watermarks (in batches of FORGET_BATCH). A failed
 * pass is logged and tried at the next; a pass still running when the next is due is not doubled.
 */
export function startPruning(opts: { store: ProfileStore; logger: Logger; intervalMs: number; parkedClickMaxAgeMs: number }): { stop(): void } {
  let running = false;
  const pass = async () => {
    if (running) return;
    running = true;
    try {
      const parked = await opts.store.expireParkedClicks(opts.parkedClickMaxAgeMs);
      pruned.inc({ table: "parked_clicks" }, parked);
      const ids = await opts.store.pruneAppliedEvents();
      pruned.inc({ table: "applied_events" }, ids);
      let silent = { users: 0, ids: 0 };
      for (;;) {
        const batch = await opts.store.forgetSilentUsers(FORGET_BATCH);
        pruned.inc({ table: "event_watermarks" }, batch.users);
        pruned.inc({ table: "applied_events" }, batch.ids);
        silent = { users: silent.users + batch.users, ids: silent.ids + batch.ids };
        if (batch.users < FORGET_BATCH) break;
      }
      if (ids + parked + silent.users > 0)
        opts.logger.info({ appliedEvents: ids, parkedClicks: parked, silentUsers: silent.users, silentUsersIds: silent.ids }, "pruned");
    } catch (err) {
      opts.logger.warn({ err: String(err) }, "pruning failed, trying again at the next pass");
    } finally {
      running = false;
    }
  };
  void pass();
  const timer = setInterval(() => void pass(), opts.intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
