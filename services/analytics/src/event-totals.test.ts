import { copyFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import { encodeClickBatch, encodeUserDeleted } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { createLogger } from "@recsys/logging";
import { migrate } from "@recsys/postgres";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyClickMessages } from "./consumer.js";
import { createPool, migrateWhenReachable } from "./pg.js";
import { AnalyticsReads } from "./reads.js";
import { AnalyticsStore } from "./store.js";
import { hopWindows } from "./windows.js";

// EventMix reads each pane's clicks by event (pane_events, migration 004) instead of every pane row. Those totals must be what the
// pane rows sum to, whatever came before them (a schema migrated with panes in it), and go with the panes when they are pruned.

const databaseUrl = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
const logger = createLogger("analytics-test");
const windows = hopWindows(30_000, 10_000);
const T0 = Date.parse("2024-01-02T00:00:00Z");
const schema = `test_event_totals_${process.pid}`;
const migrations = new URL("../migrations/", import.meta.url);

type Sent = { id: string; userid: string; event: string; seconds: number };
const message = (cs: Sent[]) =>
  encodeClickBatch(
    cs.map((c) =>
      create(ClickSchema, {
        eventId: c.id,
        userid: c.userid,
        url: "https://e.org/a",
        event: c.event,
        eventTimeMs: BigInt(T0 + c.seconds * 1000),
        ingestTimeMs: BigInt(T0),
      }),
    ),
  );

/** The oracle: the distinct clicks sent (by userid and id) with event time in [fromMs, toMs), counted by event, most first. */
function countByEvent(sent: Sent[], fromMs: number, toMs: number) {
  const distinct = new Map(sent.map((c) => [`${c.userid}|${c.id}`, c]));
  const counts = new Map<string, number>();
  for (const c of distinct.values()) {
    const t = T0 + c.seconds * 1000;
    if (t >= fromMs && t < toMs) counts.set(c.event, (counts.get(c.event) ?? 0) + 1);
  }
  return [...counts].map(([event, clicks]) => ({ event, clicks })).sort((a, b) => b.clicks - a.clicks || (a.event < b.event ? -1 : 1));
}

describe("EventMix's totals by event", () => {
  let admin: pg.Pool;
  let pool: pg.Pool;
  const older = mkdtempSync(join(tmpdir(), "recsys-analytics-migrations-"));
  beforeAll(async () => {
    admin = createPool({ databaseUrl, schema, max: 1, statementTimeoutMs: 0, logger });
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    pool = createPool({ databaseUrl, schema, max: 2, statementTimeoutMs: 30_000, logger });
  });
  afterAll(async () => {
    await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await Promise.all([admin.end(), pool.end()]);
    rmSync(older, { recursive: true, force: true });
  });

  it("are the panes' sums after a migration from panes kept before them, duplicates and an erasure, and are pruned with the panes", async () => {
    // The schema as the previous build left it (migrations 001-003), with clicks counted by its apply_clicks.
    for (const f of readdirSync(migrations).filter((f) => /^00[1-3]_.*\.sql$/.test(f))) copyFileSync(new URL(f, migrations), join(older, f));
    await migrate(admin, { dir: pathToFileURL(`${older}/`), schema, lock: `recsys-analytics-migrations-${schema}` });
    const store = new AnalyticsStore(pool, windows);
    const reads = new AnalyticsReads(pool, windows);
    const sent: Sent[] = [];
    let n = 0;
    const send = async (count: number, from: number, events: string[]) => {
      const batch = Array.from({ length: count }, (_, i) => ({
        id: `c${++n}`,
        userid: `u${i % 7}`,
        event: events[i % events.length]!,
        seconds: from + (i % 50),
      }));
      sent.push(...batch);
      await applyClickMessages([message(batch)], store);
      return batch;
    };
    await send(300, 0, ["view", "purchase", "add_to_cart"]);

    // Migrated: the totals are taken from the panes there are.
    expect(await migrateWhenReachable(admin, pool, schema, logger)).toEqual(["004_event_totals.sql"]);
    const whole = [T0 - 60_000, T0 + 600_000] as const;
    expect((await reads.eventMix(...whole)).events).toEqual(countByEvent(sent, ...whole));

    // New clicks, each batch redelivered once, and a user erased: an erasure keeps the user's clicks in the aggregates.
    const later = await send(400, 60, ["view", "share"]);
    await applyClickMessages([message(later)], store);
    await applyClickMessages([encodeUserDeleted({ eventId: "e1", userid: "u3", ingestTimeMs: T0 })], store);
    expect((await reads.eventMix(...whole)).events).toEqual(countByEvent(sent, ...whole));
    const part = [T0 + 20_000, T0 + 80_000] as const;
    expect((await reads.eventMix(...part)).events).toEqual(countByEvent(sent, ...part));
    expect((await pool.query("SELECT count(*)::int AS n FROM pane_events")).rows[0].n).toBeLessThan(
      (await pool.query("SELECT count(*)::int AS n FROM panes")).rows[0].n,
    );

    // Everything emitted and published, then pruned to 30 s behind the watermark (109 s), from the pane of 70 s: the totals of the panes pruned go too.
    await store.emit(0, 0);
    for (;;) {
      const { windows: w, beforeMs } = await store.unpublished(20_000);
      if (beforeMs === undefined) break;
      await store.markPublished(
        beforeMs,
        w.reduce((k, x) => k + x.rows.length, 0),
      );
    }
    let pruned = { ids: 0, panes: 0, paneEvents: 0 };
    for (;;) {
      const p = await store.prune(3_600_000, 30_000);
      if (p.panes + p.paneEvents === 0) break;
      pruned = { ids: pruned.ids + p.ids, panes: pruned.panes + p.panes, paneEvents: pruned.paneEvents + p.paneEvents };
    }
    const keptFrom = Number((await pool.query("SELECT kept_from_ms FROM progress")).rows[0].kept_from_ms);
    expect(keptFrom).toBe(T0 + 70_000);
    expect(pruned.paneEvents).toBeGreaterThan(0);
    const left = await pool.query(
      "SELECT (SELECT count(*) FROM pane_events WHERE pane_start_ms < $1)::int AS totals, (SELECT count(*) FROM panes WHERE pane_start_ms < $1)::int AS panes",
      [keptFrom],
    );
    expect(left.rows[0]).toEqual({ totals: 0, panes: 0 });
    const kept = [keptFrom, T0 + 600_000] as const;
    expect((await reads.eventMix(...kept)).events).toEqual(countByEvent(sent, ...kept));
  });
});
