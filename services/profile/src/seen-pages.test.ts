import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { recommendedEvents, relatedContent, similarContentMany } from "./reads.js";
import { testDatabase } from "./testing.js";

// A user who has seen nearly the whole catalogue (a shared id, a crawler): every read that leaves seen pages out must still
// answer within profile's query timeout (PG_QUERY_TIMEOUT_MS, 5 s by default), and so must the users batched with it.
const { pool, schema } = testDatabase("seen");
const QUERY_TIMEOUT_MS = 5_000;
const PAGES = 30_050;
const SEEN = 30_000;
const urlOf = (i: number) => `https://e.org/p${String(i).padStart(6, "0")}`;
let reads: pg.Pool;

const parse = (v: string) => JSON.parse(v) as number[];
const dot = (a: number[], b: number[]) => a.reduce((s, x, k) => s + x * b[k]!, 0);

beforeAll(async () => {
  // The reads here are exact scans and do not use the HNSW index; building it for 30,000 random vectors takes minutes.
  await pool.query("DROP INDEX content_embedding_hnsw");
  await pool.query("SELECT setseed(0.25)");
  await pool.query(
    `INSERT INTO content (url, id, title, embedding, version)
     SELECT 'https://e.org/p' || lpad(i::text, 6, '0'), i::text, 'page ' || i,
            l2_normalize((SELECT array_agg(random() - 0.5) FROM generate_series(1, 384) WHERE i >= 0)::vector), 1
     FROM generate_series(0, $1 - 1) i`,
    [PAGES],
  );
  // reader clicked the first SEEN pages and liked one more; other clicked three.
  await pool.query("INSERT INTO user_page_terms (userid, url, clicks) SELECT 'reader', url, 1 FROM content ORDER BY url LIMIT $1", [SEEN]);
  await pool.query("INSERT INTO likes (userid, page_id, liked, applied_url, source_time_ms, event_id) VALUES ('reader', $1, true, $2, 1, 'l1')", [
    String(SEEN),
    urlOf(SEEN),
  ]);
  await pool.query("INSERT INTO user_page_terms (userid, url, clicks) VALUES ('other', $1, 1), ('other', $2, 1), ('other', $3, 1)", [
    urlOf(1),
    urlOf(2),
    urlOf(3),
  ]);
  // Unit vectors, as the embedder publishes them. reader's interest: a page's vector; other's: exactly the vector of page 7, which it
  // has not seen.
  await pool.query("INSERT INTO interests (userid, sum, terms) SELECT 'reader', embedding, 1 FROM content WHERE url = $1", [urlOf(5)]);
  await pool.query("INSERT INTO interests (userid, sum, terms) SELECT 'other', embedding, 1 FROM content WHERE url = $1", [urlOf(7)]);
  await pool.query("ANALYZE");
  reads = new pg.Pool({
    connectionString: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test",
    max: 2,
    options: `-c search_path=${schema},public -c statement_timeout=${QUERY_TIMEOUT_MS}`,
  });
}, 120_000);
afterAll(async () => {
  await reads?.end();
});

/** The pages reader has not seen (the last 49), with their vectors. */
async function unseen() {
  const r = await pool.query<{ url: string; embedding: string }>("SELECT url, embedding::text FROM content WHERE url > $1 ORDER BY url", [urlOf(SEEN)]);
  return r.rows.map((p) => ({ url: p.url, embedding: parse(p.embedding) }));
}
const vectorOf = async (sql: string, arg: string) => parse((await pool.query<{ v: string }>(sql, [arg])).rows[0]!.v);
/** The urls by inner product with `to`, desc, then url: the exact ranking. */
const ranking = (pages: Array<{ url: string; embedding: number[] }>, to: number[]) =>
  pages
    .map((p) => ({ url: p.url, ip: dot(p.embedding, to) }))
    .sort((a, b) => b.ip - a.ip || (a.url < b.url ? -1 : 1))
    .map((p) => p.url);

describe("a user who has seen 30,000 pages", () => {
  it("gets SimilarContent, RecommendedEvents and RelatedContent of the pages left, within the query timeout, as does a user batched with it", async () => {
    const left = await unseen();
    expect(left).toHaveLength(PAGES - SEEN - 1);
    const interest = await vectorOf("SELECT sum::text AS v FROM interests WHERE userid = $1", "reader");
    const want = ranking(left, interest).slice(0, 10);

    const [forReader, forOther] = await similarContentMany(reads, [
      { userid: "reader", limit: 10, includeSeen: false },
      { userid: "other", limit: 3, includeSeen: false },
    ]);
    expect(forReader!.map((p) => p.url)).toEqual(want);
    expect(forReader![0]!.similarity).toBeCloseTo(dot(left.find((p) => p.url === want[0])!.embedding, interest) / Math.hypot(...interest), 4);
    expect(forOther![0]).toMatchObject({ url: urlOf(7) });
    expect(forOther![0]!.similarity).toBeCloseTo(1, 5);
    expect(forOther!.map((p) => p.url)).not.toContain(urlOf(1));

    expect((await recommendedEvents(reads, "reader", 10, false)).map((e) => e.url)).toEqual(want);
    const of = left[0]!;
    const related = ranking(
      left.filter((p) => p.url !== of.url),
      of.embedding,
    ).slice(0, 10);
    expect((await relatedContent(reads, of.url, 10, "reader"))!.map((p) => p.url)).toEqual(related);
  }, 60_000);
});
