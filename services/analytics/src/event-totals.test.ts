import { create } from "@bufbuild/protobuf";
import { encodeClickBatch, encodeUserDeleted } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyClickMessages } from "./consumer.js";
import { migrateWhenReachable } from "./pg.js";
import { AnalyticsReads } from "./reads.js";
import { AnalyticsStore } from "./store.js";
import { markAllPublished, schemaForTest } from "./testing.js";
import { hopWindows } from "./windows.js";

// EventMix reads each closed pane's clicks by event (pane_events, migration 004) instead of every pane row. With the open panes'
// rows, those totals must give what the pane rows sum to, whatever came before them (a schema migrated with panes in it, a
// previous build's apply_clicks running during the migration), and go with the panes when they are pruned.

const windows = hopWindows(30_000, 10_000);
const T0 = Date.parse("2024-01-02T00:00:00Z");
const schema = `test_event_totals_${process.pid}`;

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
  const { admin, pool, logger, reset, close, migrateAsPrevious } = schemaForTest(schema);
  beforeAll(reset);
  afterAll(close);

  it("give the panes' sums after a migration from panes kept before and written during it, emissions, duplicates and an erasure, and are pruned with the panes", async () => {
    // The schema as the previous build left it (migrations 001-003), with clicks counted by its apply_clicks.
    await migrateAsPrevious(3);
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

    // A replica of the previous build is counting clicks when the migration starts: its transaction commits while the
    // migration runs. The migration waits for it, and its clicks are in the totals.
    const previous = await pool.connect();
    try {
      await previous.query("BEGIN");
      const running = Array.from({ length: 50 }, (_, i) => ({ id: `r${i}`, userid: `u${i % 7}`, event: "view", seconds: 30 + i }));
      sent.push(...running);
      await previous.query("SELECT apply_clicks($1, $2, $3, $4, $5, $6, $7)", [
        running.map((c) => c.userid),
        running.map((c) => c.id),
        running.map((c) => T0 + c.seconds * 1000),
        running.map((c) => c.event),
        running.map(() => "https://e.org/a"),
        windows.sizeMs,
        windows.slideMs,
      ]);
      const migrated = migrateWhenReachable(admin, pool, schema, logger);
      await new Promise((r) => setTimeout(r, 300));
      await previous.query("COMMIT");
      // Migrated: the totals are taken from the panes there are.
      expect((await migrated)[0]).toBe("004_event_totals.sql");
    } finally {
      previous.release();
    }
    const whole = [T0 - 60_000, T0 + 600_000] as const;
    const mixOf = async (range: readonly [number, number]) => (await reads.eventMix(...range)).events;
    const totals = async () =>
      (
        await pool.query<{ rows: number; panes: number; before: string | null; emitted: string | null }>(
          `SELECT (SELECT count(*) FROM pane_events)::int AS rows, (SELECT count(*) FROM panes)::int AS panes, totals_before_ms AS before,
                  emitted_before_ms AS emitted FROM progress`,
        )
      ).rows[0]!;
    expect(await mixOf(whole)).toEqual(countByEvent(sent, ...whole));

    // Every window emitted (idle, the watermark at 79 s): the panes before 80 s are closed and keep their totals, a row per event.
    await store.emit(0, 0);
    const closed = await totals();
    expect(closed).toMatchObject({ before: String(T0 + 80_000), emitted: String(T0 + 80_000) });
    expect(closed.rows).toBeGreaterThan(0);
    expect(closed.rows).toBeLessThan(closed.panes);
    expect(await mixOf(whole)).toEqual(countByEvent(sent, ...whole));

    // Later clicks (from 100 s), each batch redelivered once, and a user erased with closed panes and open ones: an erasure keeps
    // the user's clicks in the aggregates. The periods mix closed panes' totals and open panes' rows.
    const later = await send(400, 100, ["view", "share"]);
    await applyClickMessages([message(later)], store);
    await applyClickMessages([encodeUserDeleted({ eventId: "e1", userid: "u3", ingestTimeMs: T0 })], store);
    expect(await mixOf(whole)).toEqual(countByEvent(sent, ...whole));
    for (const part of [
      [T0 + 20_000, T0 + 120_000],
      [T0 + 110_000, T0 + 140_000],
    ] as const)
      expect(await mixOf(part)).toEqual(countByEvent(sent, ...part));

    // Everything emitted and published, then pruned to 30 s behind the watermark (149 s), from the pane of 110 s: the totals of the
    // panes pruned go too.
    await store.emit(0, 0);
    expect(await totals()).toMatchObject({ before: String(T0 + 150_000) });
    expect(await mixOf(whole)).toEqual(countByEvent(sent, ...whole));
    await markAllPublished(store, pool);
    let pruned = { ids: 0, panes: 0, paneEvents: 0 };
    for (;;) {
      const p = await store.prune(3_600_000, 30_000);
      if (p.panes + p.paneEvents === 0) break;
      pruned = { ids: pruned.ids + p.ids, panes: pruned.panes + p.panes, paneEvents: pruned.paneEvents + p.paneEvents };
    }
    const keptFrom = Number((await pool.query("SELECT kept_from_ms FROM progress")).rows[0].kept_from_ms);
    expect(keptFrom).toBe(T0 + 110_000);
    expect(pruned.paneEvents).toBeGreaterThan(0);
    const left = await pool.query(
      "SELECT (SELECT count(*) FROM pane_events WHERE pane_start_ms < $1)::int AS totals, (SELECT count(*) FROM panes WHERE pane_start_ms < $1)::int AS panes",
      [keptFrom],
    );
    expect(left.rows[0]).toEqual({ totals: 0, panes: 0 });
    const kept = [keptFrom, T0 + 600_000] as const;
    expect(await mixOf(kept)).toEqual(countByEvent(sent, ...kept));
  });

  it("answers at most 1,000 event types, the most clicked, however many clients made up", async () => {
    const store = new AnalyticsStore(pool, windows);
    const reads = new AnalyticsReads(pool, windows);
    const sent: Sent[] = Array.from({ length: 1_100 }, (_, i) => ({ id: `t${i}`, userid: `m${i % 5}`, event: `made-up-${i}`, seconds: 200 + (i % 50) }));
    for (let k = 0; k < 3; k++) sent.push({ id: `v${k}`, userid: "m0", event: "view", seconds: 200 });
    await applyClickMessages([message(sent)], store);
    const range = [T0 + 200_000, T0 + 300_000] as const;
    const mix = (await reads.eventMix(...range)).events;
    expect(mix).toHaveLength(1_000);
    expect(mix).toEqual(countByEvent(sent, ...range).slice(0, 1_000));
    expect(mix[0]).toEqual({ event: "view", clicks: 3 });
  });
});
