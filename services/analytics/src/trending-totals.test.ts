import { create } from "@bufbuild/protobuf";
import { encodeClickBatch, encodeUserDeleted } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyClickMessages } from "./consumer.js";
import { TRENDING_PERIODS } from "./handlers.js";
import { migrateWhenReachable } from "./pg.js";
import { AnalyticsReads } from "./reads.js";
import { AnalyticsStore } from "./store.js";
import { markAllPublished, schemaForTest } from "./testing.js";
import { hopWindows } from "./windows.js";

// Trending reads each period's closed panes' clicks by event and url (trending_totals, migration 005), moved along as panes close,
// instead of every pane row of the period. Whatever the totals went through (a migration over panes kept before, emissions
// closing a pane or days at once, clicks sent again, late clicks, an erasure, hidden urls, pruning inside a period), Trending must
// rank the urls as the distinct clicks sent say.

const SLIDE = 10_000;
const windows = hopWindows(30_000, SLIDE);
const T0 = Date.parse("2024-03-04T00:00:00Z");
const MIN = 60_000;
const schema = `test_trending_totals_${process.pid}`;

type Sent = { id: string; userid: string; event: string; url: string; t: number };
const message = (cs: Sent[]) =>
  encodeClickBatch(
    cs.map((c) => create(ClickSchema, { eventId: c.id, userid: c.userid, url: c.url, event: c.event, eventTimeMs: BigInt(c.t), ingestTimeMs: BigInt(c.t) })),
  );

/** The oracle: distinct clicks sent (by userid and id) with event time in [fromMs, toMs), of `event` if given, by url, hidden ones left out. */
function rank(sent: Sent[], fromMs: number, toMs: number, event: string | undefined, hidden: Set<string>, limit: number) {
  const distinct = new Map(sent.map((c) => [`${c.userid}|${c.id}`, c]));
  const counts = new Map<string, number>();
  for (const c of distinct.values())
    if (c.t >= fromMs && c.t < toMs && (event === undefined || c.event === event) && !hidden.has(c.url)) counts.set(c.url, (counts.get(c.url) ?? 0) + 1);
  return [...counts]
    .map(([url, clicks]) => ({ url, clicks }))
    .sort((a, b) => b.clicks - a.clicks || (a.url < b.url ? -1 : 1))
    .slice(0, limit);
}

describe("Trending's totals by period", () => {
  const { admin, pool, logger, reset, close, migrateAsPrevious } = schemaForTest(schema);
  beforeAll(reset);
  afterAll(close);

  it("rank as the clicks say through a migration, emissions, redeliveries, late clicks, an erasure, hidden urls and pruning", async () => {
    // The schema as the previous build left it (migrations 001-004), with its panes.
    await migrateAsPrevious(4);
    const store = new AnalyticsStore(pool, windows);
    const reads = new AnalyticsReads(pool, windows);
    const sent: Sent[] = [];
    const hidden = new Set<string>();
    let n = 0;
    let watermark = Number.NEGATIVE_INFINITY;
    // `count` clicks spread over [fromMs, fromMs + spanMs): urls and events skewed differently, so the rankings differ by period.
    const send = async (count: number, fromMs: number, spanMs: number, again = false) => {
      const batch: Sent[] = Array.from({ length: count }, (_, i) => {
        const k = ++n;
        return {
          id: `c${k}`,
          userid: `u${k % 11}`,
          event: k % 5 === 0 ? "purchase" : "view",
          url: `https://e.org/p${String((k * k + Math.floor(fromMs / MIN)) % 13).padStart(2, "0")}`,
          t: fromMs + Math.floor((i * spanMs) / count),
        };
      });
      sent.push(...batch);
      watermark = Math.max(watermark, ...batch.map((c) => c.t));
      await applyClickMessages([message(batch)], store);
      if (again) await applyClickMessages([message(batch)], store);
    };
    const keptFrom = async () => Number((await pool.query("SELECT kept_from_ms FROM progress")).rows[0].kept_from_ms);
    const check = async (step: string) => {
      const toMs = Math.floor(watermark / SLIDE) * SLIDE + SLIDE;
      const k = await keptFrom();
      for (const [name, periodMs] of TRENDING_PERIODS)
        for (const event of [undefined, "purchase"]) {
          const t = await reads.trending(periodMs, event, 10);
          const fromMs = Math.max(toMs - periodMs, k);
          expect({ step, name, event, ...t }).toEqual({ step, name, event, fromMs, toMs, urls: rank(sent, fromMs, toMs, event, hidden, 10) });
        }
    };

    // 90 minutes of clicks, emitted by the previous build.
    for (let m = 0; m < 90; m += 10) await send(60, T0 + m * MIN, 10 * MIN);
    // A replica of the previous build emits as it did: its emissions leave Trending's totals behind, until this build's next.
    const previousEmit = async () => {
      await pool.query("SELECT * FROM emit_windows($1, $2, 0, null)", [windows.sizeMs, windows.slideMs]);
      await pool.query("SELECT close_pane_totals()");
    };
    await previousEmit();
    expect(await migrateWhenReachable(admin, pool, schema, logger)).toEqual(["005_trending_totals.sql"]);
    const periods = async () =>
      Object.fromEntries(
        (await pool.query<{ period_ms: string; before_ms: string | null }>("SELECT period_ms, before_ms FROM trending_periods")).rows.map((r) => [
          r.period_ms,
          r.before_ms === null ? null : Number(r.before_ms),
        ]),
      );
    const emittedBefore = async () => Number((await pool.query("SELECT emitted_before_ms FROM progress")).rows[0].emitted_before_ms);
    // The migration takes no totals (it holds progress, and every click batch would wait): Trending sums the panes until this
    // build's first emission takes them, as far as the panes are closed, the day's from the first pane.
    expect(await periods()).toEqual({ 300000: null, 3600000: null, 86400000: null });
    await check("migrated");

    // This build's first move takes the totals while a replica of the previous build prunes into the hour (its statement, which
    // calls no move): the prune waits for the move, and takes the panes it deletes out of the totals just taken.
    await markAllPublished(store, pool);
    const mover = await pool.connect();
    try {
      await mover.query("BEGIN");
      await mover.query("SELECT move_trending_totals()");
      const previousPrune = pool.query(
        `WITH cut AS (
           UPDATE progress SET kept_from_ms = greatest(kept_from_ms,
             least(published_before_ms, (watermark_ms - $1) - mod(mod(watermark_ms - $1, $2) + $2, $2)))
           WHERE published_before_ms IS NOT NULL
           RETURNING kept_from_ms)
         DELETE FROM panes WHERE ctid = ANY (ARRAY(SELECT ctid FROM panes, cut WHERE pane_start_ms < cut.kept_from_ms))`,
        [30 * MIN, SLIDE],
      );
      await new Promise((r) => setTimeout(r, 300));
      await mover.query("COMMIT");
      expect((await previousPrune).rowCount).toBeGreaterThan(0);
    } finally {
      mover.release();
    }
    expect(await keptFrom()).toBeGreaterThan(T0 + 30 * MIN);
    await check("first move beside a prune");

    // 26 hours more, 20 minutes at a time, each batch delivered twice, the windows closed emitted after each: panes come into
    // every period and leave it, some emitted by the previous build. A user is erased, urls hidden and shown again on the way,
    // and late clicks count nowhere.
    for (let m = 90; m < 26 * 60 + 90; m += 20) {
      await send(40, T0 + m * MIN, 20 * MIN, true);
      if (m % 300 === 30) await previousEmit();
      else await store.emit(0, null);
      if (m === 90) {
        const closed = await emittedBefore();
        expect(await periods()).toEqual({ 300000: closed, 3600000: closed, 86400000: closed });
      }
      if (m === 200) await applyClickMessages([encodeUserDeleted({ eventId: "e1", userid: "u3", ingestTimeMs: T0 })], store);
      if (m === 400) {
        await store.applyVisibility({ url: "https://e.org/p04", hidden: true, seq: 1 });
        hidden.add("https://e.org/p04");
      }
      if (m === 700) {
        await store.applyVisibility({ url: "https://e.org/p04", hidden: false, seq: 2 });
        hidden.delete("https://e.org/p04");
      }
      if (m === 1000) {
        const late = Array.from({ length: 30 }, (_, i) => ({
          id: `late${i}`,
          userid: "u1",
          event: "view",
          url: "https://e.org/p12",
          t: T0 + (m - 60) * MIN + i,
        }));
        await applyClickMessages([message(late)], store);
      }
      await check(`minute ${m}`);
    }
    // The totals hold a row per (event, url) clicked in a period, none for a key that left it.
    const rows = (
      await pool.query(
        "SELECT count(*)::int AS totals, count(*) FILTER (WHERE clicks <= 0)::int AS empty, (SELECT count(*)::int FROM panes) AS panes FROM trending_totals",
      )
    ).rows[0];
    expect(rows.totals).toBeGreaterThan(0);
    expect(rows.totals).toBeLessThan(rows.panes);
    expect(rows.empty).toBe(0);
    const moved = await emittedBefore();
    expect(await periods()).toEqual({ 300000: moved, 3600000: moved, 86400000: moved });

    // Two days later: one emission closes panes further than every period, whose totals then hold only the new panes.
    const later = T0 + (26 * 60 + 90) * MIN + 2 * 86_400_000;
    await send(50, later, 5 * MIN);
    await store.emit(0, null);
    await check("two days later");
    for (let m = 5; m < 120; m += 20) {
      await send(50, later + m * MIN, 20 * MIN);
      await store.emit(0, null);
      await check(`two days and ${m} minutes later`);
    }

    // Pruned to 30 minutes behind the watermark, inside the hour's and the day's periods: the panes pruned leave those totals as
    // kept_from moves, and Trending answers from kept_from, before and after the next emission.
    await markAllPublished(store, pool);
    for (;;) {
      const p = await store.prune(7 * 86_400_000, 30 * MIN);
      if (p.ids + p.panes + p.paneEvents === 0) break;
    }
    expect(await keptFrom()).toBeGreaterThan((await periods())[3600000]! - 3_600_000);
    expect(Number((await pool.query("SELECT count(*) FROM panes WHERE pane_start_ms < (SELECT kept_from_ms FROM progress)")).rows[0].count)).toBe(0);
    await check("pruned");
    await send(50, later + 125 * MIN, 5 * MIN);
    await store.emit(0, null);
    const last = await emittedBefore();
    expect(await periods()).toEqual({ 300000: last, 3600000: last, 86400000: last });
    await check("pruned, then emitted");
  });
});
