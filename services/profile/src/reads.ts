import type pg from "pg";
import type { Db } from "./cancellable.js";
import type { Sessions } from "./sessions.js";
import type { EventRow, Interest, SimilarPage } from "./types.js";

/** Id order: ids of digits in numeric order (shorter first), then byte order; pages without an id last. */
const ID_ORDER = `c.id = '', length(c.id), c.id COLLATE "C", c.url`;

const EVENT_COLUMNS = `c.id, c.url, c.title, c.text AS abstract,
  (SELECT count(*) FROM likes l WHERE l.page_id = c.id AND l.liked)::int AS "likeCount"`;

export async function events(db: Db, limit: number, offset: number): Promise<EventRow[]> {
  const r = await db.query<EventRow>(
    `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c
     ORDER BY ${ID_ORDER} LIMIT $1 OFFSET $2`,
    [limit, offset],
  );
  return r.rows;
}

export async function eventsById(db: Db, ids: string[]): Promise<EventRow[]> {
  const r = await db.query<EventRow>(
    `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c WHERE c.id = ANY($1::text[])
     ORDER BY ${ID_ORDER}`,
    [ids],
  );
  return r.rows;
}

export async function eventsLiked(db: Db, userid: string): Promise<EventRow[]> {
  const r = await db.query<EventRow>(
    `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c
     WHERE c.id IN (SELECT page_id FROM likes WHERE userid = $1 AND liked)
     ORDER BY ${ID_ORDER}`,
    [userid],
  );
  return r.rows;
}

/** One user's SimilarContent question. */
export interface SimilarContentAsk {
  userid: string;
  limit: number;
  /** Also the pages the user has seen. */
  includeSeen: boolean;
}

/** The urls of the pages a user has seen (the `$userid` parameter): clicked, liked or unliked; NULL for none. */
const seenUrls = (userid: string) => `(SELECT array_agg(x.url) FROM (
    SELECT p.url FROM user_page_terms p WHERE p.userid = ${userid} AND p.clicks > 0
    UNION SELECT s.url FROM likes l JOIN content s ON s.id = l.page_id WHERE l.userid = ${userid} AND l.page_id <> ''
  ) x)`;

export async function recommendedEvents(db: Db, userid: string, limit: number, includeSeen: boolean): Promise<EventRow[]> {
  // An exact scan by inner product, as in similarContentMany: the inner join with the interest
  // leaves nothing without one.
  const r = await db.query<EventRow>(
    `WITH q AS MATERIALIZED (SELECT sum, vector_norm(sum) AS norm FROM interests WHERE userid = $1 AND vector_norm(sum) > 0),
          seen AS MATERIALIZED (SELECT CASE WHEN $3 THEN NULL ELSE ${seenUrls("$1")} END AS urls),
          ranked AS (SELECT c.url, c.embedding <#> q.sum AS ip FROM content c, q, seen
                     WHERE seen.urls IS NULL OR c.url <> ALL(seen.urls) ORDER BY ip ASC, c.url ASC LIMIT $2)
     SELECT ${EVENT_COLUMNS}, (-r.ip / q.norm)::float8 AS score FROM ranked r JOIN content c ON c.url = r.url, q
     ORDER BY r.ip ASC, c.url ASC`,
    [userid, limit, includeSeen],
  );
  return r.rows;
}

/**
 * The pages nearest in meaning to the page at `url`, as SimilarContent ranks them for an interest equal to its embedding: never
 * the page itself, nor (with a userid) a page that user has seen. undefined when no page has that url.
 */
export async function relatedContent(db: Db, url: string, limit: number, userid: string): Promise<SimilarPage[] | undefined> {
  const page = await db.query("SELECT 1 FROM content WHERE url = $1", [url]);
  if (page.rowCount === 0) return undefined;
  // An exact scan by inner product, as in similarContentMany, with the page's embedding for the interest.
  const r = await db.query<SimilarPage>(
    `WITH p AS MATERIALIZED (SELECT embedding, vector_norm(embedding) AS norm FROM content WHERE url = $1),
          seen AS MATERIALIZED (SELECT CASE WHEN $3 = '' THEN NULL ELSE ${seenUrls("$3")} END AS urls),
          ranked AS (SELECT c.url, c.title, c.embedding <#> p.embedding AS ip FROM content c, p, seen
                     WHERE c.url <> $1 AND (seen.urls IS NULL OR c.url <> ALL(seen.urls)) ORDER BY ip ASC, c.url ASC LIMIT $2)
     SELECT r.url, r.title, COALESCE(-r.ip / NULLIF(p.norm, 0), 0)::float8 AS similarity FROM ranked r, p ORDER BY r.ip ASC, r.url ASC`,
    [url, limit, userid],
  );
  return r.rows;
}

export async function personalizedEventSearch(db: Db, query: string, userid: string, limit: number): Promise<EventRow[]> {
  const r = await db.query<EventRow>(
    `WITH q AS (SELECT sum FROM interests WHERE userid = $2 AND vector_norm(sum) > 0),
          t AS (SELECT websearch_to_tsquery('english', $1) AS query)
     SELECT ${EVENT_COLUMNS}, COALESCE(1 - (c.embedding <=> (SELECT sum FROM q)), 0)::float8 AS score
     FROM content c, t WHERE c.search @@ t.query
     ORDER BY score DESC, ts_rank(c.search, t.query) DESC, c.url ASC LIMIT $3`,
    [query, userid, limit],
  );
  return r.rows;
}

export async function similarContentMany(db: Db, requests: ReadonlyArray<SimilarContentAsk>): Promise<SimilarPage[][]> {
  if (requests.length === 0) return [];
  const result = await db.query<SimilarPage & { n: string }>({
    // Prepared once per connection: planning the lateral join cost 0.1-0.3 ms a statement.
    name: "similar-content-many",
    // The scan orders by the inner product alone (no interest: NULL, last, so url order); the
    // division by the norm is done for the rows kept, not for every page. The pages a user has
    // seen are read once per request and left out of the scan, unless asked for.
    text: `SELECT u.n, s.url, s.title, COALESCE(-s.ip / q.norm, 0)::float8 AS similarity
     FROM unnest($1::text[], $2::int[], $3::bool[]) WITH ORDINALITY AS u(userid, lim, include_seen, n)
     LEFT JOIN LATERAL (SELECT sum, vector_norm(sum) AS norm FROM interests WHERE userid = u.userid AND vector_norm(sum) > 0) q ON true
     LEFT JOIN LATERAL (SELECT ${seenUrls("u.userid")} AS urls) seen ON NOT u.include_seen
     CROSS JOIN LATERAL (
       SELECT c.url, c.title, c.embedding <#> q.sum AS ip FROM content c
       WHERE seen.urls IS NULL OR c.url <> ALL(seen.urls)
       ORDER BY ip ASC NULLS LAST, c.url ASC LIMIT u.lim
     ) s
     ORDER BY u.n, s.ip ASC NULLS LAST, s.url ASC`,
    values: [requests.map((r) => r.userid), requests.map((r) => r.limit), requests.map((r) => r.includeSeen)],
  });
  const out: SimilarPage[][] = requests.map(() => []);
  for (const { n, ...page } of result.rows) out[Number(n) - 1]!.push(page);
  return out;
}

/** Read on a client with the vector type registered, so that the sum comes back as numbers. */
export async function interest(sessions: Sessions, userid: string): Promise<Interest | undefined> {
  return sessions.withClient(async (db) => {
    const r = await db.query<{ sum: number[]; terms: string }>("SELECT sum, terms FROM interests WHERE userid = $1", [userid]);
    const row = r.rows[0];
    return row && { sum: row.sum, terms: Number(row.terms) };
  });
}

export async function like(pool: pg.Pool, userid: string, pageId: string): Promise<{ liked: boolean; appliedUrl: string | null } | undefined> {
  const r = await pool.query<{ liked: boolean; applied_url: string | null }>("SELECT liked, applied_url FROM likes WHERE userid = $1 AND page_id = $2", [
    userid,
    pageId,
  ]);
  const row = r.rows[0];
  return row && { liked: row.liked, appliedUrl: row.applied_url };
}

export async function counts(pool: pg.Pool): Promise<{ pages: bigint; parkedClicks: bigint }> {
  const r = await pool.query<{ pages: string; parked: string }>(
    "SELECT (SELECT count(*) FROM content) AS pages, (SELECT count(*) FROM parked_clicks) AS parked",
  );
  const row = r.rows[0]!;
  return { pages: BigInt(row.pages), parkedClicks: BigInt(row.parked) };
}
