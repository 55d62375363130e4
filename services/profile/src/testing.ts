// Shared by the test files (not built into dist/): a schema of their own in the real PostgreSQL,
// seeded random vectors, and the definition of an interest to compare with.
import pg from "pg";
import { afterAll, beforeAll, beforeEach, expect } from "vitest";
import { interestMean } from "./interest-math.js";
import { migrate } from "./migrations.js";
import type { PageEmbedding } from "./types.js";
import { ProfileStore } from "./pg-store.js";
import { schemaFor } from "./pool.js";

export const DIM = 384;

/**
 * A migrated schema for one test file, dropped after it; with `emptyEachTest`, every table is
 * emptied before each test.
 */
export function testDatabase(label: string, opts: { maxConnections?: number; emptyEachTest?: boolean } = {}) {
  const schema = schemaFor(`unit${process.pid}_${label}`);
  const pool = new pg.Pool({
    connectionString: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test",
    max: opts.maxConnections ?? 8,
    options: `-c search_path=${schema},public`,
  });
  const store = new ProfileStore(pool);
  beforeAll(async () => {
    await migrate(pool, schema, DIM);
  });
  if (opts.emptyEachTest) {
    beforeEach(async () => {
      await pool.query(
        "TRUNCATE content, interests, user_page_terms, applied_events, legacy_applied_events, event_watermarks, parked_clicks, likes, page_visibility, erased_users",
      );
    });
  }
  afterAll(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    await pool.end();
  });
  return { schema, pool, store };
}

/** A page version with this embedding, as the embedder would publish it. */
export const page = (url: string, embedding: number[], version = 1n): PageEmbedding => ({
  url,
  id: url,
  title: `title of ${url}`,
  text: "",
  embedding,
  version,
  model: "test",
});

/** A repeatable random source, and random unit vectors rounded to float32 as PostgreSQL stores them. */
export function randomVectors(seed: number) {
  let state = seed;
  const rnd = () => (state = (state * 16807) % 2147483647) / 2147483647;
  const unitVector = (): number[] => {
    const v = Array.from({ length: DIM }, () => rnd() - 0.5);
    const n = Math.hypot(...v);
    return v.map((x) => Math.fround(x / n));
  };
  return { rnd, unitVector };
}

/** The definition: the user's interest is the mean of every term's current vector; no terms, no interest. */
export async function expectInterest(store: ProfileStore, userid: string, terms: number[][]) {
  const got = await store.interest(userid);
  if (terms.length === 0) {
    expect(got).toBeUndefined();
    return;
  }
  expect(got?.terms).toBe(terms.length);
  const mean = interestMean(got!.sum, got!.terms);
  const want = new Array<number>(DIM).fill(0);
  for (const t of terms) t.forEach((x, k) => (want[k]! += x / terms.length));
  expect(Math.max(...mean.map((x, k) => Math.abs(x - want[k]!)))).toBeLessThan(1e-5);
}
