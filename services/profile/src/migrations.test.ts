import { readdirSync, readFileSync } from "node:fs";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { migrate } from "./migrations.js";
import { ProfileStore } from "./pg-store.js";
import { schemaFor } from "./pool.js";
import type { PageEmbedding } from "./types.js";
import { DIM, expectInterest as expectTerms, page, randomVectors, testDatabase } from "./testing.js";

// Migrations run in the real PostgreSQL, on schemas of their own, old ones included.
const { schema, pool, store } = testDatabase("migrations", { emptyEachTest: true });
// Every migration file shipped, applied once each.
const MIGRATIONS = readdirSync(new URL("../migrations/", import.meta.url))
  .filter((f) => f.endsWith(".sql"))
  .sort();

const { rnd, unitVector } = randomVectors(12345);
const status = (outcomes: Array<{ status: string }>) => outcomes.map((o) => o.status);

/** Runs `fn` on a schema of its own as the migrations before `first` left it; drops it after. */
async function withSchemaBefore(first: string, fn: (db: pg.Pool, schema: string) => Promise<void>) {
  const old = schemaFor(`unit${process.pid}_before${first}`);
  const db = new pg.Pool({
    connectionString: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test",
    max: 2,
    options: `-c search_path=${old},public`,
  });
  try {
    await db.query(`CREATE SCHEMA ${old}`);
    await db.query("CREATE TABLE schema_migrations (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())");
    for (const file of MIGRATIONS.filter((f) => f < first)) {
      await db.query(readFileSync(new URL(`../migrations/${file}`, import.meta.url), "utf8").replaceAll("{{EMBEDDING_DIMENSION}}", String(DIM)));
      await db.query("INSERT INTO schema_migrations (name) VALUES ($1)", [file]);
    }
    await fn(db, old);
  } finally {
    await db.query(`DROP SCHEMA IF EXISTS ${old} CASCADE`);
    await db.end();
  }
}

/** A page stored as a schema before the current code's migrations holds it: a row of content (the current store needs them all). */
async function storeOldPage(db: pg.Pool, p: PageEmbedding) {
  await db.query("INSERT INTO content (url, id, title, text, embedding, version, model) VALUES ($1, $2, $3, $4, $5, $6, $7)", [
    p.url,
    p.id,
    p.title,
    p.text,
    `[${p.embedding.join(",")}]`,
    p.version.toString(),
    p.model,
  ]);
}

/** Values in content's TOAST table of an embedding's size (its bytes without the varlena header). */
async function toastedEmbeddings(db: pg.Pool): Promise<number> {
  const toast = (await db.query<{ t: string }>("SELECT reltoastrelid::regclass::text AS t FROM pg_class WHERE oid = 'content'::regclass")).rows[0]!.t;
  const r = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT sum(length(chunk_data)) AS size FROM ${toast} GROUP BY chunk_id) v WHERE size = 4 + 4 * ${DIM}`,
  );
  return r.rows[0]!.n;
}

describe("migrations", () => {
  it("run twice are a no-op", async () => {
    const before = await pool.query("SELECT name, applied_at FROM schema_migrations ORDER BY name");
    expect(before.rows.map((r: { name: string }) => r.name)).toEqual(MIGRATIONS);
    await store.applyEmbedding(page("https://e.org/kept", unitVector()));
    expect(await migrate(pool, schema, DIM)).toEqual([]);
    expect(await migrate(pool, schema, DIM)).toEqual([]);
    expect((await pool.query("SELECT name, applied_at FROM schema_migrations ORDER BY name")).rows).toEqual(before.rows);
    expect(await store.counts()).toEqual({ pages: 1n, parkedClicks: 0n });
  });

  it("run at once from two replicas apply each migration once", async () => {
    const fresh = schemaFor(`unit${process.pid}_twice`);
    try {
      const results = await Promise.all([migrate(pool, fresh, DIM), migrate(pool, fresh, DIM)]);
      expect(results.flat().sort()).toEqual(MIGRATIONS);
    } finally {
      await pool.query(`DROP SCHEMA IF EXISTS ${fresh} CASCADE`);
    }
  });

  it("keep every embedding inside its page's row, those stored before 004 included, with the same values", async () => {
    // A database as migrations 001-003 left it, with pages whose rows exceed the TOAST threshold.
    await withSchemaBefore("004", async (oldPool, old) => {
      const words = () => Array.from({ length: 250 }, () => Math.floor(rnd() * 1e6).toString(36)).join(" ");
      const stored = new Map<string, number[]>(Array.from({ length: 20 }, (_, i) => [`https://e.org/big${i}`, unitVector()] as const));
      for (const [url, v] of stored) await storeOldPage(oldPool, { ...page(url, v), text: words() });
      expect(await toastedEmbeddings(oldPool)).toBe(20);
      expect(await migrate(oldPool, old, DIM)).toEqual(MIGRATIONS.filter((f) => f >= "004"));
      expect(await toastedEmbeddings(oldPool)).toBe(0);
      const added = unitVector();
      await new ProfileStore(oldPool).applyEmbedding({ ...page("https://e.org/big-new", added), text: words() });
      stored.set("https://e.org/big-new", added);
      expect(await toastedEmbeddings(oldPool)).toBe(0);
      const rows = (await oldPool.query<{ url: string; e: number[]; text: string }>("SELECT url, embedding::real[] AS e, text FROM content")).rows;
      expect(rows).toHaveLength(21);
      for (const r of rows) {
        expect(r.e.map(Math.fround)).toEqual(stored.get(r.url));
        expect(r.text.length).toBeGreaterThan(1000);
      }
    });
  });

  it("keep every event id applied before they were per user (006) applied: redelivered old events change nothing, parked clicks still fold", async () => {
    // A database as migrations 001-005 left it: two clicks applied, one parked, a like stored as
    // the user's latest, a like it superseded, and a stated interest.
    await withSchemaBefore("006", async (oldPool, old) => {
      const [a, late] = ["https://e.org/a", "https://e.org/late"];
      const vectors = new Map([
        [a, unitVector()],
        [late, unitVector()],
      ]);
      await storeOldPage(oldPool, { ...page(a, vectors.get(a)!), id: "1" });
      const before = await oldPool.query("SELECT apply_clicks($1, $2, $3, $4) AS o", [
        ["c1", "c2", "c3"],
        ["u", "u", "w"],
        [a, a, late],
        [10, 11, 12],
      ]);
      expect(before.rows[0].o).toEqual(["applied", "applied", "parked"]);
      await oldPool.query("INSERT INTO applied_events (event_id) VALUES ('like:L0'), ('like:L1'), ('interest:I1')");
      await oldPool.query("INSERT INTO likes (userid, page_id, liked, source_time_ms, event_id, applied_url) VALUES ('u', '1', false, 5, 'L1', NULL)");

      expect(await migrate(oldPool, old, DIM)).toEqual(MIGRATIONS.filter((f) => f >= "006"));
      const store = new ProfileStore(oldPool);
      // Redelivered, every old event is a duplicate: the clicks by any user (the old ids say none).
      expect(
        status(
          await store.applyClicks([a, a, late].map((url, i) => ({ eventId: `c${i + 1}`, userid: i < 2 ? "u" : "w", url, eventTimeMs: 10 + i, event: "view" }))),
        ),
      ).toEqual(["duplicate", "duplicate", "duplicate"]);
      expect(status(await store.applyClicks([{ eventId: "c1", userid: "x", url: a, eventTimeMs: 0 }]))).toEqual(["duplicate"]);
      expect(await store.applyLike({ eventId: "L1", userid: "u", pageId: "1", liked: false, sourceTimeMs: 5n })).toEqual({ status: "duplicate" });
      expect(await store.applyLike({ eventId: "L0", userid: "u", pageId: "1", liked: true, sourceTimeMs: 4n })).toEqual({ status: "duplicate" });
      expect(await store.applyInterest({ eventId: "I1", userid: "u", embedding: unitVector(), sourceTimeMs: 0n })).toEqual({ status: "duplicate" });
      // The parked click (its user known) and the stored like moved to the per-user records.
      const records = await oldPool.query("SELECT userid, kind, event_id, event_time_ms::int AS t FROM applied_events ORDER BY kind, userid");
      expect(records.rows).toEqual([
        { userid: "w", kind: "click", event_id: "c3", t: 12 },
        { userid: "u", kind: "like", event_id: "L1", t: 5 },
      ]);
      const legacy = await oldPool.query("SELECT event_id FROM legacy_applied_events ORDER BY event_id");
      expect(legacy.rows.map((r: { event_id: string }) => r.event_id)).toEqual(["c1", "c2", "interest:I1", "like:L0"]);
      // New ids apply; the parked click folds in when its page arrives.
      expect(status(await store.applyClicks([{ eventId: "c4", userid: "u", url: a, eventTimeMs: 13 }]))).toEqual(["applied"]);
      expect(await store.applyEmbedding(page(late, vectors.get(late)!))).toEqual({ status: "inserted", foldedClicks: 1 });
      await expectTerms(
        store,
        "u",
        [a, a, a].map((u) => vectors.get(u)!),
      );
      await expectTerms(store, "w", [vectors.get(late)!]);
    });
  });

  it("add erasures and hidden pages (008) to a database in use: nothing hidden or erased, the previous build's apply_clicks still works", async () => {
    await withSchemaBefore("008", async (oldPool, old) => {
      const [a, b] = ["https://e.org/a", "https://e.org/b"];
      const vectors = new Map([
        [a, unitVector()],
        [b, unitVector()],
      ]);
      for (const [url, v] of vectors) await storeOldPage(oldPool, page(url, v));
      const five = "SELECT apply_clicks($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint) AS o";
      expect((await oldPool.query(five, [["c1"], ["u"], [a], [10], 1000])).rows[0].o).toEqual(["applied"]);

      expect(await migrate(oldPool, old, DIM)).toEqual(["008_erasure_and_hidden_pages.sql", "009_silent_users_forgotten.sql"]);
      const store = new ProfileStore(oldPool);
      expect((await store.similarContent("u", 2, true)).map((p) => p.url)).toContain(a);
      expect((await store.similarContent("u", 2)).map((p) => p.url)).toEqual([b]);
      // A replica of the previous build, during the rollout, calls the five-argument version.
      expect((await oldPool.query(five, [["c2"], ["u"], [b], [11], 1000])).rows[0].o).toEqual(["applied"]);
      await expectTerms(store, "u", [vectors.get(a)!, vectors.get(b)!]);
      // The new build's clicks, erasures and hidings work on it.
      expect(status(await store.applyClicks([{ eventId: "c3", userid: "u", url: a, eventTimeMs: 12, event: "view", seq: 3 }]))).toEqual(["applied"]);
      expect(await store.eraseUser({ userid: "u", seq: 4, ingestTimeMs: 100 })).toBe("erased");
      expect(await store.interest("u")).toBeUndefined();
      expect(await store.applyVisibility({ url: a, hidden: true, seq: 1 })).toBe("applied");
      expect((await store.similarContent("u", 2)).map((p) => p.url)).toEqual([b]);
    });
  });

  it("forget silent users (009) from the migration on: every user already there counts as heard from then", async () => {
    await withSchemaBefore("009", async (oldPool, old) => {
      const a = "https://e.org/a";
      await storeOldPage(oldPool, page(a, unitVector()));
      const click = (eventId: string, userid: string, t: number) => ({ eventId, userid, url: a, eventTimeMs: t, event: "view", seq: t });
      const before = new ProfileStore(oldPool);
      expect(status(await before.applyClicks([click("c1", "quiet", 1), click("c2", "busy", 2)]))).toEqual(["applied", "applied"]);

      expect(await migrate(oldPool, old, DIM)).toEqual(["009_silent_users_forgotten.sql"]);
      const store = new ProfileStore(oldPool);
      expect(await store.forgetSilentUsers(10_000)).toEqual({ users: 0, ids: 0 });
      // Eight days on, one user was heard from again (by the build before, whose apply_clicks is the same function): only the
      // other is forgotten.
      await oldPool.query("UPDATE event_watermarks SET applied_at = applied_at - interval '8 days'");
      expect(status(await store.applyClicks([click("c3", "busy", 3)]))).toEqual(["applied"]);
      expect(await store.forgetSilentUsers(10_000)).toEqual({ users: 1, ids: 1 });
      const left = await oldPool.query("SELECT userid, event_id FROM applied_events ORDER BY event_id");
      expect(left.rows).toEqual([
        { userid: "busy", event_id: "c2" },
        { userid: "busy", event_id: "c3" },
      ]);
    });
  });

  it("refuse a dimension other than the stored one", async () => {
    await expect(migrate(pool, schema, 768)).rejects.toThrow(/dimension 384, EMBEDDING_DIMENSION is 768/);
  });

  it("refuse a reader role that does not exist, naming it, and change nothing", async () => {
    const before = await pool.query("SELECT name, applied_at FROM schema_migrations ORDER BY name");
    const missing = `recsys_reader_missing_${process.pid}`;
    await expect(migrate(pool, schema, DIM, undefined, missing)).rejects.toThrow(`the reader role ${missing} does not exist`);
    expect((await pool.query("SELECT name, applied_at FROM schema_migrations ORDER BY name")).rows).toEqual(before.rows);
  });
});
