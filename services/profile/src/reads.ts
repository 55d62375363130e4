import type pg from "pg";
import type { Db } from "./cancellable.js";
import type { Sessions } from "./sessions.js";
import type { EventRow, Interest, SimilarPage } from "./types.js";

/** Id order: ids of digits in numeric order (shorter first), then byte order; pages without an id last. */
const ID_ORDER = `c.id = '', length(c.id), c.id COLLATE "C", c.url`;

const EVENT_COLUMNS = `c.id, c.url, c.title, c.text AS abstract,
  (SELECT count(*) FROM likes l WHERE l.page_id = c.id AND l.liked)::int AS "likeCount"`;

/** A page's place in id order: the next page starts after the page with this id and url. */
export interface EventKey {
  id: string;
  url: string;
}

/** One page of a list in id order, and the key of its last item when more follow. */
export interface EventPage {
  rows: EventRow[];
  next?: EventKey;
}

/** `ID_ORDER > key`, the key's id and url in parameters $n and $n+1 (the index content_id_order serves it). */
const AFTER = (n: number) => `(c.id = '', length(c.id), c.id COLLATE "C", c.url) > ($${n} = '', length($${n}), $${n} COLLATE "C", $${n + 1})`;

/** The first `limit` of rows fetched `limit + 1` deep, and whether more follow. */
function pageOf(rows: EventRow[], limit: number): EventPage {
  if (rows.length <= limit) return { rows };
  const kept = rows.slice(0, limit);
  return { rows: kept, next: { id: kept.at(-1)!.id, url: kept.at(-1)!.url } };
}

export async function events(db: Db, limit: number, offset: number, after?: EventKey): Promise<EventPage> {
  const r = await db.query<EventRow>(
    `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c
     WHERE $3::text IS NULL OR ${AFTER(3)}
     ORDER BY ${ID_ORDER} LIMIT $1 OFFSET $2`,
    [limit + 1, offset, after?.id ?? null, after?.url ?? null],
  );
  return pageOf(r.rows, limit);
}

export async function eventsById(db: Db, ids: string[]): Promise<EventRow[]> {
  const r = await db.query<EventRow>(
    `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c WHERE c.id = ANY($1::text[])
     ORDER BY ${ID_ORDER}`,
    [ids],
  );
  return r.rows;
}

export async function eventsLiked(db: Db, userid: string, limit: number, offset: number, after?: EventKey): Promise<EventPage> {
  const r = await db.query<EventRow>(
    `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c
     WHERE c.id IN (SELECT page_id FROM likes WHERE userid = $1 AND liked) AND ($4::text IS NULL OR ${AFTER(4)})
     ORDER BY ${ID_ORDER} LIMIT $2 OFFSET $3`,
    [userid, limit + 1, offset, after?.id ?? null, after?.url ?? null],
  );
  return pageOf(r.rows, limit);
}

/** One user's SimilarContent question. */
export interface SimilarContentAsk {
  userid: string;
  limit: number;
  /** Also the pages the user has seen. */
  includeSeen: boolean;
}

/**
 * `ranked`: the rows of `scan` (pages with their inner product `ip`) in (ip, url) order, without the urls of `seen` and the hidden
 * pages, at least `limit` of them when there are: the scan keeps its top-N sort, `limit` plus as many rows as there are pages to
 * leave out, and only those rows are checked, not every page of the scan. Materialized, so that it is planned for all its rows:
 * under the statement's LIMIT PostgreSQL chose to compare each row with every seen url, for the first rows' sake (a user with
 * 30,000 seen pages: 6.6 s, 75 million comparisons).
 */
const SCAN_PAST_SEEN = (scan: string, limit: string) => `ranked AS MATERIALIZED (
            SELECT r.* FROM (${scan} ORDER BY ip ASC, c.url ASC
              LIMIT ${limit} + (SELECT count(*) FROM seen) + (SELECT n FROM hidden)) r
            WHERE NOT EXISTS (SELECT FROM seen WHERE seen.url = r.url) AND ${NOT_HIDDEN("r")})`;

/** The urls of the pages a user has seen (the `$userid` parameter): clicked, liked or unliked, a row each. */
const seenRows = (userid: string) => `SELECT p.url FROM user_page_terms p WHERE p.userid = ${userid} AND p.clicks > 0
    UNION SELECT s.url FROM likes l JOIN content s ON s.id = l.page_id WHERE l.userid = ${userid} AND l.page_id <> ''`;

/**
 * `seen`: the urls a recommendation leaves out besides the hidden pages, a row each: unless `includeSeen` (an SQL boolean) the
 * user's seen pages, and `also` if given. Each row the scan keeps is looked up among them by a hash (an anti-join): an array of
 * them compared with each row grew with the square of the user's seen pages (2,500: 47 ms a statement).
 */
const SEEN = (userid: string, includeSeen: string, also?: string) =>
  `seen AS MATERIALIZED (SELECT x.url FROM (${seenRows(userid)}) x WHERE NOT ${includeSeen}${also ? ` UNION SELECT ${also}` : ""})`;

/**
 * `hidden`: how many pages are hidden from recommendations (a one-row CTE, read from a partial index), for a scan to read past.
 * Each row the scan keeps is then looked up among them (NOT_HIDDEN), as an anti-join: the hidden urls used to be read into an array
 * and compared with each row, which grew with the square of the list (20,000 hidden pages: 0.9 s a statement of one user, 62 s one
 * of 64; VISIBILITY holds up to about 300,000).
 */
const HIDDEN_COUNT = `hidden AS MATERIALIZED (SELECT count(*) AS n FROM page_visibility v WHERE v.hidden)`;
const NOT_HIDDEN = (row: string) => `NOT EXISTS (SELECT FROM page_visibility v WHERE v.url = ${row}.url AND v.hidden)`;

export async function recommendedEvents(db: Db, userid: string, limit: number, includeSeen: boolean): Promise<EventRow[]> {
  // An exact scan by inner product, as in similarContentMany: the inner join with the interest
  // leaves nothing without one.
  const r = await db.query<EventRow>(
    `WITH q AS MATERIALIZED (SELECT sum, vector_norm(sum) AS norm FROM interests WHERE userid = $1 AND vector_norm(sum) > 0),
          ${SEEN("$1", "$3")}, ${HIDDEN_COUNT},
          ${SCAN_PAST_SEEN("SELECT c.url, c.embedding <#> q.sum AS ip FROM content c, q", "$2")}
     SELECT ${EVENT_COLUMNS}, (-r.ip / q.norm)::float8 AS score FROM ranked r JOIN content c ON c.url = r.url, q
     ORDER BY r.ip ASC, c.url ASC LIMIT $2`,
    [userid, limit, includeSeen],
  );
  return r.rows;
}

/**
 * The pages nearest in meaning to the page at `url`, as SimilarContent ranks them for an interest equal to its embedding: never
 * the page itself, nor (with a userid) a page that user has seen. undefined when no page has that url.
 */
export async function relatedContent(db: Db, url: string, limit: number, userid: string): Promise<SimilarPage[] | undefined> {
  // An exact scan by inner product, as in similarContentMany, with the page's embedding for the interest.
  const r = await db.query<SimilarPage>(
    `WITH p AS MATERIALIZED (SELECT embedding, vector_norm(embedding) AS norm FROM content WHERE url = $1),
          ${SEEN("$3", "$3 = ''", "$1::text")}, ${HIDDEN_COUNT},
          ${SCAN_PAST_SEEN("SELECT c.url, c.title, c.embedding <#> p.embedding AS ip FROM content c, p", "$2")}
     SELECT r.url, r.title, COALESCE(-r.ip / NULLIF(p.norm, 0), 0)::float8 AS similarity FROM ranked r, p ORDER BY r.ip ASC, r.url ASC LIMIT $2`,
    [url, limit, userid],
  );
  // No rows: the page has no others to rank, or there is no such page (its own row is the only one that says which).
  if (r.rows.length === 0 && (await db.query("SELECT 1 FROM content WHERE url = $1", [url])).rowCount === 0) return undefined;
  return r.rows;
}

export async function personalizedEventSearch(db: Db, query: string, userid: string, limit: number): Promise<EventRow[]> {
  const r = await db.query<EventRow>(
    `WITH q AS (SELECT sum FROM interests WHERE userid = $2 AND vector_norm(sum) > 0),
          t AS (SELECT websearch_to_tsquery('english', $1) AS query)
     SELECT ${EVENT_COLUMNS}, COALESCE(1 - (c.embedding <=> (SELECT sum FROM q)), 0)::float8 AS score
     FROM content c, t WHERE c.search @@ t.query AND NOT EXISTS (SELECT FROM page_visibility v WHERE v.url = c.url AND v.hidden)
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
    // seen are read once per request, unless asked for, as rows keyed by the request's number and
    // the url; each row the scan keeps is looked up among them by that one key, which PostgreSQL
    // hashes (as two columns, its generic plan merged on the number alone and compared every url
    // of a request with every other, 3.3 million comparisons for a user with 2,500 seen pages).
    // The hidden pages are counted once per statement, and each row kept is looked up among them.
    text: `WITH ${HIDDEN_COUNT},
     u AS MATERIALIZED (SELECT * FROM unnest($1::text[], $2::int[], $3::bool[]) WITH ORDINALITY AS u(userid, lim, include_seen, n)),
     seen AS MATERIALIZED (SELECT u.n, u.n || ' ' || x.url AS key FROM u CROSS JOIN LATERAL (${seenRows("u.userid")}) x WHERE NOT u.include_seen),
     seen_n AS (SELECT n, count(*) AS c FROM seen GROUP BY n)
     SELECT u.n, s.url, s.title, COALESCE(-s.ip / q.norm, 0)::float8 AS similarity
     FROM u
     LEFT JOIN LATERAL (SELECT sum, vector_norm(sum) AS norm FROM interests WHERE userid = u.userid AND vector_norm(sum) > 0) q ON true
     LEFT JOIN seen_n ON seen_n.n = u.n
     CROSS JOIN hidden h
     CROSS JOIN LATERAL (
       SELECT c.url, c.title, c.embedding <#> q.sum AS ip FROM content c
       ORDER BY ip ASC NULLS LAST, c.url ASC LIMIT u.lim + coalesce(seen_n.c, 0) + h.n
     ) s
     WHERE NOT EXISTS (SELECT FROM seen WHERE seen.key = u.n || ' ' || s.url) AND ${NOT_HIDDEN("s")}
     ORDER BY u.n, s.ip ASC NULLS LAST, s.url ASC`,
    values: [requests.map((r) => r.userid), requests.map((r) => r.limit), requests.map((r) => r.includeSeen)],
  });
  const out: SimilarPage[][] = requests.map(() => []);
  // Each user's scan read past as many rows as it had pages to leave out: the first `limit` of what is left are the answer.
  for (const { n, ...page } of result.rows) {
    const list = out[Number(n) - 1]!;
    if (list.length < requests[Number(n) - 1]!.limit) list.push(page);
  }
  return out;
}

/** Whether profile holds any row of the user (none asked: false), and whether it stores a page at the url (none asked: false). */
export async function exists(db: Db, userid: string, url: string): Promise<{ user: boolean; page: boolean }> {
  const r = await db.query<{ user: boolean; page: boolean }>(
    `SELECT $1 <> '' AND (EXISTS (SELECT FROM interests WHERE userid = $1) OR EXISTS (SELECT FROM user_page_terms WHERE userid = $1)
         OR EXISTS (SELECT FROM parked_clicks WHERE userid = $1) OR EXISTS (SELECT FROM likes WHERE userid = $1)
         OR EXISTS (SELECT FROM applied_events WHERE userid = $1) OR EXISTS (SELECT FROM event_watermarks WHERE userid = $1)) AS "user",
       $2 <> '' AND EXISTS (SELECT FROM content WHERE url = $2) AS page`,
    [userid, url],
  );
  return r.rows[0]!;
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
