import { create, toBinary } from "@bufbuild/protobuf";
import { encodeClickBatch, encodeUserDeleted } from "@recsys/bus";
import { ClickSchema, PageVisibilitySchema } from "@recsys/contracts/events/v1/events";
import { createLogger } from "@recsys/logging";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyClickMessages, dispositionOf } from "./consumer.js";
import { createPool, migrateWhenReachable } from "./pg.js";
import { AnalyticsReads } from "./reads.js";
import { AnalyticsStore } from "./store.js";
import { markAllPublished } from "./testing.js";
import { applyVisibilityMessage } from "./visibility.js";
import { hopWindows } from "./windows.js";

// The store in the real PostgreSQL (its own schema), fed as the consumers feed it: windows of 30 s every 10 s.

const databaseUrl = process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test";
const logger = createLogger("analytics-test");
const windows = hopWindows(30_000, 10_000);
const T0 = Date.parse("2024-01-02T00:00:00Z");
let seq = 0;

let pool: pg.Pool;
let store: AnalyticsStore;
let reads: AnalyticsReads;

async function freshSchema(name: string) {
  const schema = `test_${name}_${process.pid}`;
  const admin = createPool({ databaseUrl, schema, max: 1, statementTimeoutMs: 0, logger });
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  pool = createPool({ databaseUrl, schema, max: 2, statementTimeoutMs: 30_000, logger });
  await migrateWhenReachable(admin, pool, schema, logger);
  await admin.end();
  store = new AnalyticsStore(pool, windows);
  reads = new AnalyticsReads(pool, windows);
  return schema;
}

const clicks = (...cs: Array<[userid: string, url: string, secondsAfterT0: number, event?: string]>) =>
  encodeClickBatch(
    cs.map(([userid, url, s, event]) =>
      create(ClickSchema, { eventId: `c-${++seq}`, userid, url, event: event ?? "", eventTimeMs: BigInt(T0 + s * 1000), ingestTimeMs: BigInt(T0) }),
    ),
  );
const erasure = (userid: string) => encodeUserDeleted({ eventId: `e-${++seq}`, userid, ingestTimeMs: T0 });

/** Everything emitted published, as the emitter does it. */
const publishAll = () => markAllPublished(store, pool);

const rowsOf = async (filter: { userid?: string; url?: string }) =>
  (await reads.clickMetrics({ ...filter, limit: 1000 })).rows.map((r) => `${(r.windowStartMs - T0) / 1000}|${r.userid}|${r.url}|${r.eventCount}`);

describe("an erasure (UserDeleted on CLICKS)", () => {
  const schemas: string[] = [];
  beforeAll(async () => {
    schemas.push(await freshSchema("erasure"));
  });
  afterAll(async () => {
    for (const s of schemas) await pool.query(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
    await pool.end();
  });

  it("forgets the user's rows, emitted or not, while the other users' windows and the aggregates stay exact", async () => {
    // Windows up to the pane of 20 s are emitted (an idle emission) and published; the pane of 40 s is open when the erasure comes.
    expect(await applyClickMessages([clicks(["a", "u1", 1], ["b", "u1", 2], ["a", "u2", 15])], store)).toHaveLength(1);
    await store.emit(0, 0);
    await publishAll();
    await applyClickMessages([clicks(["a", "u1", 41], ["b", "u2", 42])], store);
    const before = {
      b: await rowsOf({ userid: "b" }),
      mix: await reads.eventMix(T0 - 20_000, T0 + 60_000),
      trending: await reads.trending(600_000, undefined, 10),
    };
    expect(await rowsOf({ userid: "a" })).not.toEqual([]);

    expect(await applyClickMessages([erasure("a")], store, undefined, { waitPublishedMs: 1_000 })).toEqual([{ erased: "a" }]);
    // What comes after is a new user's.
    await applyClickMessages([clicks(["a", "u2", 45])], store);
    await store.emit(0, 0);
    await publishAll();

    // ClickMetrics: the new user's one click only, in its three windows; none of the user's rows by url either.
    expect((await rowsOf({ userid: "a" })).sort()).toEqual(["20|a|u2|1", "30|a|u2|1", "40|a|u2|1"]);
    expect((await rowsOf({ url: "u1" })).filter((r) => r.includes("|a|"))).toEqual([]);
    // Another user's rows are as before, and as the hop windows count them.
    expect((await rowsOf({ userid: "b" })).sort()).toEqual(["-20|b|u1|1", "-10|b|u1|1", "0|b|u1|1", "20|b|u2|1", "30|b|u2|1", "40|b|u2|1"].sort());
    expect(before.b.filter((r) => !r.startsWith("20|") && !r.startsWith("30|") && !r.startsWith("40|")).sort()).toEqual(
      ["-20|b|u1|1", "-10|b|u1|1", "0|b|u1|1"].sort(),
    );
    // Aggregates without userid keep the erased clicks (and gain the new one).
    const mix = await reads.eventMix(T0 - 20_000, T0 + 60_000);
    expect(mix.events).toEqual([{ event: "view", clicks: before.mix.events[0]!.clicks + 1 }]);
    const trending = await reads.trending(600_000, undefined, 10);
    expect(before.trending?.urls).toEqual([
      { url: "u1", clicks: 3 },
      { url: "u2", clicks: 2 },
    ]);
    expect(trending?.urls).toEqual([
      { url: "u1", clicks: 3 },
      { url: "u2", clicks: 3 },
    ]);
    // The user's applied ids are gone with them.
    const ids = await pool.query("SELECT count(*)::int AS n FROM applied_clicks WHERE userid = 'a'");
    expect(ids.rows[0].n).toBe(1);
  });

  it("waits while an emitted window is not yet published, and changes nothing meanwhile", async () => {
    await applyClickMessages([clicks(["c", "u3", 100])], store);
    await store.emit(0, 0);
    await expect(applyClickMessages([erasure("c")], store, undefined, { waitPublishedMs: 200 })).rejects.toThrow(/not yet on CLICK_METRICS/);
    const held = await pool.query("SELECT count(*)::int AS n FROM panes WHERE userid = 'c'");
    expect(held.rows[0].n).toBe(1);
    await publishAll();
    expect(await applyClickMessages([erasure("c")], store, undefined, { waitPublishedMs: 200 })).toEqual([{ erased: "c" }]);
    expect(await rowsOf({ userid: "c" })).toEqual([]);
  });
});

describe("a click PostgreSQL can never store", () => {
  beforeAll(async () => {
    await freshSchema("refused");
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS test_refused_${process.pid} CASCADE`);
    await pool.end();
  });

  it("is dead-lettered as refused, alone: the clicks around it count, once, and the message is acked instead of retried for good", async () => {
    // 1,000 CJK characters, 3,000 bytes, varied so that PostgreSQL cannot compress them: past its 2,704-byte index entry, as
    // validation bounds urls now; a message published before the bound could still carry one.
    const wide = `https://e.org/${Array.from({ length: 1_000 }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 20_000))).join("")}`;
    const message = clicks(["a", "u1", 1], ["b", wide, 2], ["c", "u1", 3]);
    const [first] = await applyClickMessages([message], store);
    expect(first).toMatchObject({ verdicts: ["applied", { refused: expect.stringMatching(/refused by PostgreSQL: .*index row size/) }, "applied"] });
    const disposition = dispositionOf(first!);
    expect(disposition).toMatchObject({ kind: "ack", deadLetters: [{ index: 1, cause: "refused" }] });
    expect(disposition.kind === "ack" && disposition.deadLetters?.length).toBe(1);
    // Redelivered (a crash before the ack): nothing counts twice.
    expect((await applyClickMessages([message], store))[0]).toMatchObject({ verdicts: ["duplicate", { refused: expect.any(String) }, "duplicate"] });
    await store.emit(0, 0);
    expect(await rowsOf({ url: "u1" })).toEqual(["-20|a|u1|1", "-20|c|u1|1", "-10|a|u1|1", "-10|c|u1|1", "0|a|u1|1", "0|c|u1|1"]);
    // The same url hidden (VISIBILITY): dead-lettered too, not retried.
    const hide = { seq: 1, data: toBinary(PageVisibilitySchema, create(PageVisibilitySchema, { eventId: "v-wide", url: wide, hidden: true })) };
    expect(await applyVisibilityMessage(hide, store)).toMatchObject({ kind: "dead-letter", cause: "refused" });
  });
});

describe("hidden urls in Trending", () => {
  beforeAll(async () => {
    await freshSchema("hidden");
  });
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS test_hidden_${process.pid} CASCADE`);
    await pool.end();
  });
  const visibility = (url: string, hidden: boolean, s: number) =>
    applyVisibilityMessage({ seq: s, data: toBinary(PageVisibilitySchema, create(PageVisibilitySchema, { eventId: `v-${s}`, url, hidden })) }, store);
  const top = async (limit: number) => (await reads.trending(600_000, undefined, limit))!.urls.map((u) => u.url);

  it("are never listed, the next urls take their places, an older state never overrides a newer one, and shown again they come back", async () => {
    // u1 clicked 4 times, u2 3, u3 2, u4 once.
    await applyClickMessages([clicks(["a", "u1", 1], ["b", "u1", 2], ["c", "u1", 3], ["d", "u1", 4], ["a", "u2", 5], ["b", "u2", 6], ["c", "u2", 7])], store);
    await applyClickMessages([clicks(["a", "u3", 8], ["b", "u3", 9], ["a", "u4", 11])], store);
    expect(await top(2)).toEqual(["u1", "u2"]);

    expect(await visibility("u1", true, 5)).toEqual({ kind: "ack" });
    expect(await top(2)).toEqual(["u2", "u3"]);
    expect(await visibility("u3", true, 6)).toEqual({ kind: "ack" });
    expect(await top(2)).toEqual(["u2", "u4"]);
    // An older state (a redelivery from before) does not show u1 again.
    expect(await visibility("u1", false, 3)).toEqual({ kind: "ack" });
    expect(await top(10)).toEqual(["u2", "u4"]);
    // Shown again, it comes back.
    await visibility("u1", false, 9);
    expect(await top(2)).toEqual(["u1", "u2"]);
    expect(await visibility("", true, 10)).toMatchObject({ kind: "dead-letter", cause: "undecodable" });
  });
});
