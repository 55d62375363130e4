import { setTimeout as sleep } from "node:timers/promises";
import { createLogger } from "@recsys/logging";
import { registry } from "@recsys/metrics";
import { describe, expect, it } from "vitest";
import { FORGET_BATCH, startPruning } from "./pruning.js";
import { testDatabase } from "./testing.js";

const { pool, store } = testDatabase("pruning", { emptyEachTest: true });
const logger = createLogger("profile").child({}, { level: "silent" });

async function pruned(table: string): Promise<number> {
  const metric = (await registry.getSingleMetric("recsys_profile_pruned_total")?.get())?.values ?? [];
  return metric.find((v) => v.labels.table === table)?.value ?? 0;
}

describe("the pruning pass", () => {
  it("forgets every user silent for the retention, however many more than one statement's batch", async () => {
    const silent = FORGET_BATCH * 2 + 5;
    // Users last heard from 8 days ago, two ids each, and one heard from now.
    await pool.query(`INSERT INTO event_watermarks (userid, kind, watermark_ms) SELECT 'u' || i, 'click', 0 FROM generate_series(1, $1) i`, [silent]);
    await pool.query("UPDATE event_watermarks SET applied_at = now() - interval '8 days'");
    await pool.query(
      `INSERT INTO applied_events (userid, kind, event_id, event_time_ms) SELECT 'u' || i, 'click', 'e' || j, 0 FROM generate_series(1, $1) i, generate_series(1, 2) j`,
      [silent],
    );
    await pool.query("INSERT INTO event_watermarks (userid, kind, watermark_ms) VALUES ('active', 'click', 0)");
    await pool.query("INSERT INTO applied_events (userid, kind, event_id, event_time_ms) VALUES ('active', 'click', 'e1', 0)");
    const [watermarksBefore, idsBefore] = [await pruned("event_watermarks"), await pruned("applied_events")];

    const pruning = startPruning({ store, logger, intervalMs: 3_600_000, parkedClickMaxAgeMs: 7 * 24 * 3600_000 });
    try {
      const deadline = Date.now() + 60_000;
      while ((await pruned("event_watermarks")) - watermarksBefore < silent && Date.now() < deadline) await sleep(100);
    } finally {
      pruning.stop();
    }
    const left = await pool.query<{ userid: string }>("SELECT userid FROM event_watermarks UNION ALL SELECT userid FROM applied_events");
    expect(left.rows.map((r) => r.userid)).toEqual(["active", "active"]);
    expect((await pruned("event_watermarks")) - watermarksBefore).toBe(silent);
    expect((await pruned("applied_events")) - idsBefore).toBe(silent * 2);
  });
});
