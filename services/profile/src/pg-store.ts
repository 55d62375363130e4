import pg from "pg";
import { registerTypes, toSql } from "pgvector/pg";
import type { Logger } from "@recsys/logging";
import type { ClickToApply } from "@recsys/bus";
import { difference, sameVector, scaled } from "./vectors.js";

/** The PostgreSQL schema of a namespace: tests run many namespaces on one database. */
export function schemaFor(namespace: string): string {
  return namespace ? `${namespace}_recsys` : "recsys";
}

/** A pool whose every connection works in `schema` (public stays on the path for the vector type). */
export function createPool(opts: { databaseUrl: string; schema: string; max: number; logger: Logger }): pg.Pool {
  const pool = new pg.Pool({
    connectionString: opts.databaseUrl,
    max: opts.max,
    options: `-c search_path=${opts.schema},public`,
    connectionTimeoutMillis: 5_000,
  });
  // A client losing its server (a restart) emits "error": an idle one on the pool, a checked-out one
  // between two queries on itself. Without a listener either would crash the process; the query in
  // progress fails on its own and its message is redelivered.
  pool.on("error", (err) => opts.logger.warn({ err: String(err) }, "idle PostgreSQL client failed"));
  pool.on("connect", (client) => client.on("error", (err) => opts.logger.warn({ err: String(err) }, "PostgreSQL client failed")));
  return pool;
}

export interface PageEmbedding {
  url: string;
  id: string;
  title: string;
  text: string;
  /** L2-normalized, of the configured dimension. */
  embedding: number[];
  version: bigint;
  model: string;
}

export interface LikeToApply {
  eventId: string;
  userid: string;
  pageId: string;
  liked: boolean;
  sourceTimeMs: bigint;
}

export interface InterestToApply {
  eventId: string;
  userid: string;
  /** L2-normalized, of the configured dimension. */
  embedding: number[];
  sourceTimeMs: bigint;
}

/** "expired": older than its user's latest click by more than the retention; refused, nothing changed. */
export type ClickOutcome = { status: "applied" } | { status: "parked" } | { status: "duplicate" } | { status: "expired" };
/** "applied": the state changed (its term added, removed, or waiting for the page); "superseded": a later like of the pair is stored. */
export type LikeOutcome = { status: "applied" } | { status: "superseded" } | { status: "duplicate" } | { status: "expired" };
export type InterestOutcome = { status: "applied" } | { status: "duplicate" } | { status: "expired" };

/** Applied event ids are kept this long in event time behind their user's latest event of the kind (covisit's DEDUP_RETENTION_MS too). */
export const DEFAULT_DEDUP_RETENTION_MS = 7 * 24 * 3600_000;
export type EmbeddingOutcome =
  | { status: "inserted"; foldedClicks: number }
  | { status: "updated"; correctedUsers: number; foldedClicks: number }
  | { status: "stale"; storedVersion: bigint };

/** A page as the event queries return it. */
export interface EventRow {
  id: string;
  url: string;
  title: string;
  abstract: string;
  likeCount: number;
  score: number;
}

export interface SimilarPage {
  url: string;
  title: string;
  similarity: number;
}

const MAX_ATTEMPTS = 5;
// Deadlock and serialization failure: the transaction did nothing and may simply run again.
const RETRYABLE = new Set(["40P01", "40001"]);

/** Pages, interests and parked clicks in PostgreSQL; every update is one transaction. */
export class ProfileStore {
  private readonly typed = new WeakSet<pg.PoolClient>();

  constructor(
    private readonly pool: pg.Pool,
    /** How far behind its user's latest event an event may be and still be told from a duplicate (see migration 007). */
    private readonly dedupRetentionMs: number = DEFAULT_DEDUP_RETENTION_MS,
  ) {}

  /**
   * Folds one click into its user's interest, or parks it until its page is embedded: a batch of one.
   */
  async applyClick(click: ClickToApply): Promise<ClickOutcome> {
    return (await this.applyClicks([click]))[0]!;
  }

  /**
   * Folds clicks into their users' interests, or parks those whose page is not embedded yet, all
   * in one transaction and one round trip (apply_clicks, migrations 005 and 006). Each click has
   * `applyClick`'s effect, as if applied one after the other in order: an event id its user
   * applied before, in an earlier call or earlier in `clicks`, changes nothing and is a
   * "duplicate" (as is an id recorded before ids were per user). Serialized per
   * url with `applyEmbedding`, so a click is never parked after its page's parked clicks were
   * folded. One outcome per click, in order.
   */
  applyClicks(clicks: readonly ClickToApply[]): Promise<ClickOutcome[]> {
    if (clicks.length === 0) return Promise.resolve([]);
    const params = [clicks.map((c) => c.eventId), clicks.map((c) => c.userid), clicks.map((c) => c.url), clicks.map((c) => c.eventTimeMs)];
    return this.retrying(() =>
      this.withClient(async (db) => {
        const { rows } = await db.query<{ outcomes: Array<ClickOutcome["status"]> }>(
          "SELECT apply_clicks($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint) AS outcomes",
          [...params, this.dedupRetentionMs],
        );
        return rows[0]!.outcomes.map((status) => ({ status }) as ClickOutcome);
      }),
    );
  }

  /**
   * Stores a page's embedding if its version is newer than the stored one. A new embedding of a
   * known page corrects the sums of the users who clicked or liked it by terms × (new − old); clicks
   * parked for the page and likes of its id waiting for it are folded in. Interests stay the mean of
   * the current embeddings.
   */
  applyEmbedding(version: PageEmbedding): Promise<EmbeddingOutcome> {
    let page = version;
    // What PostgreSQL stores is float4; do the arithmetic on exactly those values.
    const embedding = page.embedding.map(Math.fround);
    return this.transaction(async (db) => {
      await lockUrl(db, page.url);
      const stored = await db.query<{ embedding: number[]; version: string; id: string }>(
        "SELECT embedding, version, id FROM content WHERE url = $1 FOR UPDATE",
        [page.url],
      );
      const old = stored.rows[0];
      if (old && BigInt(old.version) >= page.version) return { status: "stale", storedVersion: BigInt(old.version) };
      // A version sent without an id (the Content mutation's is optional) keeps the page's id.
      if (page.id === "" && old) page = { ...page, id: old.id };
      // Likes name pages by id: take the ids' locks too (sorted, so two pages never wait on each other in a cycle).
      const ids = [...new Set([page.id, old?.id ?? ""])].filter((id) => id !== "").sort();
      for (const id of ids) await lockPageId(db, id);
      const row = [page.url, page.id, page.title, page.text, toSql(embedding), page.version.toString(), page.model];
      let correctedUsers = 0;
      if (!old) {
        await db.query("INSERT INTO content (url, id, title, text, embedding, version, model) VALUES ($1, $2, $3, $4, $5, $6, $7)", row);
      } else {
        await db.query("UPDATE content SET id = $2, title = $3, text = $4, embedding = $5, version = $6, model = $7 WHERE url = $1", row);
        const previous = old.embedding.map(Math.fround);
        if (!sameVector(previous, embedding)) correctedUsers = await correctInterests(db, page.url, difference(embedding, previous));
      }
      if (old && old.id !== "" && old.id !== page.id) {
        // The url no longer carries the id its likes named: take those terms out, and give them to
        // another page with that id if there is one.
        await unapplyLikesOf(db, page.url);
        await foldWaitingLikes(db, old.id);
      }
      if (page.id !== "") await foldWaitingLikes(db, page.id);
      const foldedClicks = await foldParkedClicks(db, page.url);
      return old ? { status: "updated", correctedUsers, foldedClicks } : { status: "inserted", foldedClicks };
    });
  }

  /**
   * Stores the like state of (user, page id) unless a later one is stored, and moves the user's
   * interest with it: a like adds the page's embedding as a term, an unlike takes it out. A like
   * of a page not embedded yet is kept and folded in when the page arrives.
   */
  applyLike(like: LikeToApply): Promise<LikeOutcome> {
    return this.transaction(async (db) => {
      await lockPageId(db, like.pageId);
      // Never expired: a like applied before, its id pruned since, is superseded by the stored state.
      const recorded = await recordApplied(db, "like", like.userid, like.eventId, like.sourceTimeMs, null);
      if (recorded !== "fresh") return { status: recorded };
      const stored = await db.query<{ source_time_ms: string; event_id: string; applied_url: string | null }>(
        "SELECT source_time_ms, event_id, applied_url FROM likes WHERE userid = $1 AND page_id = $2 FOR UPDATE",
        [like.userid, like.pageId],
      );
      const old = stored.rows[0];
      if (old && isLaterOrSame(BigInt(old.source_time_ms), old.event_id, like.sourceTimeMs, like.eventId)) return { status: "superseded" };
      let appliedUrl = old?.applied_url ?? null;
      if (!like.liked && appliedUrl !== null) {
        await removeLikeTerm(db, like.userid, appliedUrl);
        appliedUrl = null;
      }
      if (like.liked && appliedUrl === null) {
        const page = await pageWithId(db, like.pageId);
        if (page) {
          await addLikeTerms(db, [like.userid], page.url);
          appliedUrl = page.url;
        }
      }
      await db.query(
        `INSERT INTO likes (userid, page_id, liked, source_time_ms, event_id, applied_url) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (userid, page_id) DO UPDATE SET liked = excluded.liked, source_time_ms = excluded.source_time_ms,
           event_id = excluded.event_id, applied_url = excluded.applied_url`,
        [like.userid, like.pageId, like.liked, like.sourceTimeMs.toString(), like.eventId, appliedUrl],
      );
      return { status: "applied" };
    });
  }

  /** Adds a stated interest's embedding as a term of the user's interest, once per (user, event id). */
  applyInterest(interest: InterestToApply): Promise<InterestOutcome> {
    const embedding = interest.embedding.map(Math.fround);
    return this.transaction(async (db) => {
      const recorded = await recordApplied(db, "interest", interest.userid, interest.eventId, interest.sourceTimeMs, this.dedupRetentionMs);
      if (recorded !== "fresh") return { status: recorded };
      await db.query(
        `INSERT INTO interests (userid, sum, terms) VALUES ($1, $2, 1)
         ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + 1`,
        [interest.userid, toSql(embedding)],
      );
      return { status: "applied" };
    });
  }

  /** Deletes the applied ids past their users' horizons (migration 007); returns how many. */
  async pruneAppliedEvents(): Promise<number> {
    const r = await this.pool.query<{ n: string }>("SELECT prune_applied_events($1) AS n", [this.dedupRetentionMs]);
    return Number(r.rows[0]!.n);
  }

  /**
   * Clicks parked longer than `maxAgeMs` (their page never came) are deleted, and their ids with
   * them: the same click sent again once its page exists is applied. A url whose page is being
   * stored right now (its lock is held) is left for the next pass, so a click is never both folded
   * and dropped. Returns how many.
   */
  async expireParkedClicks(maxAgeMs: number): Promise<number> {
    const r = await this.pool.query<{ n: string }>(
      `WITH gone AS (
         DELETE FROM parked_clicks WHERE parked_at < now() - make_interval(secs => $1::float8 / 1000)
           AND pg_try_advisory_xact_lock(hashtextextended(url, 0))
         RETURNING userid, event_id
       ), ids AS (
         DELETE FROM applied_events a USING gone g WHERE a.userid = g.userid AND a.kind = 'click' AND a.event_id = g.event_id
       )
       SELECT count(*) AS n FROM gone`,
      [maxAgeMs],
    );
    return Number(r.rows[0]!.n);
  }

  /** Pages in id order (ID_ORDER). */
  async events(limit: number, offset: number): Promise<EventRow[]> {
    const r = await this.pool.query<EventRow>(
      `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c
       ORDER BY ${ID_ORDER} LIMIT $1 OFFSET $2`,
      [limit, offset],
    );
    return r.rows;
  }

  /** The pages carrying these ids, in id order. */
  async eventsById(ids: string[]): Promise<EventRow[]> {
    const r = await this.pool.query<EventRow>(
      `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c WHERE c.id = ANY($1::text[])
       ORDER BY ${ID_ORDER}`,
      [ids],
    );
    return r.rows;
  }

  /** Pages whose latest like by the user is a like, in id order. */
  async eventsLiked(userid: string): Promise<EventRow[]> {
    const r = await this.pool.query<EventRow>(
      `SELECT ${EVENT_COLUMNS}, 0::float8 AS score FROM content c
       WHERE c.id IN (SELECT page_id FROM likes WHERE userid = $1 AND liked)
       ORDER BY ${ID_ORDER}`,
      [userid],
    );
    return r.rows;
  }

  /** Pages by cosine similarity to the user's interest, desc, then url asc; none for a user without one. */
  async recommendedEvents(userid: string, limit: number): Promise<EventRow[]> {
    // An exact scan by inner product, as in similarContentMany: the inner join with the interest
    // leaves nothing without one.
    const r = await this.pool.query<EventRow>(
      `WITH q AS MATERIALIZED (SELECT sum, vector_norm(sum) AS norm FROM interests WHERE userid = $1 AND vector_norm(sum) > 0),
            ranked AS (SELECT c.url, c.embedding <#> q.sum AS ip FROM content c, q ORDER BY ip ASC, c.url ASC LIMIT $2)
       SELECT ${EVENT_COLUMNS}, (-r.ip / q.norm)::float8 AS score FROM ranked r JOIN content c ON c.url = r.url, q
       ORDER BY r.ip ASC, c.url ASC`,
      [userid, limit],
    );
    return r.rows;
  }

  /**
   * Pages whose title or text match `query` (websearch_to_tsquery, English), by similarity to the
   * user's interest (0 without one), then by text rank, then url.
   */
  async personalizedEventSearch(query: string, userid: string, limit: number): Promise<EventRow[]> {
    const r = await this.pool.query<EventRow>(
      `WITH q AS (SELECT sum FROM interests WHERE userid = $2 AND vector_norm(sum) > 0),
            t AS (SELECT websearch_to_tsquery('english', $1) AS query)
       SELECT ${EVENT_COLUMNS}, COALESCE(1 - (c.embedding <=> (SELECT sum FROM q)), 0)::float8 AS score
       FROM content c, t WHERE c.search @@ t.query
       ORDER BY score DESC, ts_rank(c.search, t.query) DESC, c.url ASC LIMIT $3`,
      [query, userid, limit],
    );
    return r.rows;
  }

  /** Pages by cosine similarity to the user's interest, desc, then url asc; similarity 0 without one. */
  async similarContent(userid: string, limit: number): Promise<SimilarPage[]> {
    return (await this.similarContentMany([{ userid, limit }]))[0]!;
  }

  /**
   * `similarContent` for several users in one statement, answers in order. An exact scan per user,
   * not the HNSW index: results must equal a brute-force ranking (ties and the cut at `limit`
   * included), and scanning a few thousand pages costs a millisecond. Page embeddings are unit
   * vectors, so the cosine is the inner product over the interest's norm: the scan computes only
   * the inner product (pgvector's <#> is its negative), a third of the arithmetic of <=>.
   */
  async similarContentMany(requests: ReadonlyArray<{ userid: string; limit: number }>): Promise<SimilarPage[][]> {
    if (requests.length === 0) return [];
    const result = await this.pool.query<SimilarPage & { n: string }>({
      // Prepared once per connection: planning the lateral join cost 0.1-0.3 ms a statement.
      name: "similar-content-many",
      // The scan orders by the inner product alone (no interest: NULL, last, so url order); the
      // division by the norm is done for the rows kept, not for every page.
      text: `SELECT u.n, s.url, s.title, COALESCE(-s.ip / q.norm, 0)::float8 AS similarity
       FROM unnest($1::text[], $2::int[]) WITH ORDINALITY AS u(userid, lim, n)
       LEFT JOIN LATERAL (SELECT sum, vector_norm(sum) AS norm FROM interests WHERE userid = u.userid AND vector_norm(sum) > 0) q ON true
       CROSS JOIN LATERAL (
         SELECT c.url, c.title, c.embedding <#> q.sum AS ip FROM content c ORDER BY ip ASC NULLS LAST, c.url ASC LIMIT u.lim
       ) s
       ORDER BY u.n, s.ip ASC NULLS LAST, s.url ASC`,
      values: [requests.map((r) => r.userid), requests.map((r) => r.limit)],
    });
    const out: SimilarPage[][] = requests.map(() => []);
    for (const { n, ...page } of result.rows) out[Number(n) - 1]!.push(page);
    return out;
  }

  /** The interest behind a user's recommendations, or undefined when the user has none. */
  async interest(userid: string): Promise<{ sum: number[]; terms: number } | undefined> {
    return this.withClient(async (db) => {
      const r = await db.query<{ sum: number[]; terms: string }>("SELECT sum, terms FROM interests WHERE userid = $1", [userid]);
      const row = r.rows[0];
      return row && { sum: row.sum, terms: Number(row.terms) };
    });
  }

  /** The stored like state of (user, page id), or undefined. */
  async like(userid: string, pageId: string): Promise<{ liked: boolean; appliedUrl: string | null } | undefined> {
    const r = await this.pool.query<{ liked: boolean; applied_url: string | null }>(
      "SELECT liked, applied_url FROM likes WHERE userid = $1 AND page_id = $2",
      [userid, pageId],
    );
    const row = r.rows[0];
    return row && { liked: row.liked, appliedUrl: row.applied_url };
  }

  async counts(): Promise<{ pages: bigint; parkedClicks: bigint }> {
    const r = await this.pool.query<{ pages: string; parked: string }>(
      "SELECT (SELECT count(*) FROM content) AS pages, (SELECT count(*) FROM parked_clicks) AS parked",
    );
    const row = r.rows[0]!;
    return { pages: BigInt(row.pages), parkedClicks: BigInt(row.parked) };
  }

  async ping(): Promise<boolean> {
    await this.pool.query("SELECT 1");
    return true;
  }

  private async withClient<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    const db = await this.pool.connect();
    let broken: Error | undefined;
    try {
      if (!this.typed.has(db)) {
        await registerTypes(db);
        this.typed.add(db);
      }
      return await fn(db);
    } catch (err) {
      // An error without a SQLSTATE is the connection's own: do not hand that client out again.
      if (!sqlState(err)) broken = err instanceof Error ? err : new Error(String(err));
      throw err;
    } finally {
      db.release(broken);
    }
  }

  /** Runs `fn` in a transaction, again on deadlock or serialization failure; other errors throw. */
  private transaction<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.retrying(() =>
      this.withClient(async (db) => {
        await db.query("BEGIN");
        try {
          const result = await fn(db);
          await db.query("COMMIT");
          return result;
        } catch (err) {
          await db.query("ROLLBACK").catch(() => undefined);
          throw err;
        }
      }),
    );
  }

  /** Runs `attempt` again on deadlock or serialization failure; other errors throw. */
  private async retrying<T>(attempt: () => Promise<T>): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        if (n >= MAX_ATTEMPTS || !RETRYABLE.has(sqlState(err) ?? "")) throw err;
        await new Promise((r) => setTimeout(r, Math.random() * 20 * n));
      }
    }
  }
}

/** A value PostgreSQL can never store (SQLSTATE class 22, e.g. a NUL in text): retrying will not help. */
export function isDataError(err: unknown): boolean {
  return sqlState(err)?.startsWith("22") ?? false;
}

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * Records a like's or an interest's event id as applied for its user; false when it was already.
 * An id recorded before ids were per user (migration 006) counts for every user, in its old form
 * `<kind>:<id>`.
 */
async function recordApplied(db: pg.PoolClient, kind: "like" | "interest", userid: string, eventId: string, eventTimeMs: bigint, retentionMs: number | null): Promise<"fresh" | "duplicate" | "expired"> {
  const r = await db.query<{ outcome: "fresh" | "duplicate" | "expired" }>("SELECT record_applied($1, $2, $3, $4, $5) AS outcome", [
    userid,
    kind,
    eventId,
    eventTimeMs.toString(),
    retentionMs,
  ]);
  return r.rows[0]!.outcome;
}

/** Clicks and embeddings of one url take turns; other urls go on in parallel. */
async function lockUrl(db: pg.PoolClient, url: string): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [url]);
}

/** sum += terms × delta for every user with terms (clicks, likes) from `url`; returns how many users. */
async function correctInterests(db: pg.PoolClient, url: string, delta: number[]): Promise<number> {
  // Row locks in userid order, so two pages corrected at once do not deadlock on shared users.
  const users = await db.query(
    "SELECT userid FROM interests WHERE userid IN (SELECT userid FROM user_page_terms WHERE url = $1) ORDER BY userid FOR UPDATE",
    [url],
  );
  const counts = await db.query<{ n: string }>("SELECT DISTINCT clicks + likes AS n FROM user_page_terms WHERE url = $1", [url]);
  for (const { n } of counts.rows) {
    await db.query(
      `UPDATE interests i SET sum = i.sum + $3::vector FROM user_page_terms c
       WHERE c.url = $1 AND c.clicks + c.likes = $2 AND i.userid = c.userid`,
      [url, n, toSql(scaled(delta, Number(n)))],
    );
  }
  return users.rowCount ?? 0;
}

/** Id order: ids of digits in numeric order (shorter first), then byte order; pages without an id last. */
const ID_ORDER = `c.id = '', length(c.id), c.id COLLATE "C", c.url`;

const EVENT_COLUMNS = `c.id, c.url, c.title, c.text AS abstract,
  (SELECT count(*) FROM likes l WHERE l.page_id = c.id AND l.liked)::int AS "likeCount"`;

/** True when the stored like (a) is at least as late as the incoming one (b): (time, event id) order. */
function isLaterOrSame(aTime: bigint, aId: string, bTime: bigint, bId: string): boolean {
  return aTime > bTime || (aTime === bTime && aId >= bId);
}

/** Likes and embeddings of one page id take turns. */
async function lockPageId(db: pg.PoolClient, id: string): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", [id]);
}

/** The page a like of `id` refers to: when several urls carry the id, the first in url order. */
async function pageWithId(db: pg.PoolClient, id: string): Promise<{ url: string } | undefined> {
  const r = await db.query<{ url: string }>("SELECT url FROM content WHERE id = $1 ORDER BY url LIMIT 1", [id]);
  return r.rows[0];
}

/** Adds the current embedding of `url` as one like term to each user's interest. */
async function addLikeTerms(db: pg.PoolClient, userids: string[], url: string): Promise<void> {
  await db.query(
    `INSERT INTO interests (userid, sum, terms) SELECT u, c.embedding, 1 FROM unnest($1::text[]) AS u, content c WHERE c.url = $2 ORDER BY u
     ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + 1`,
    [userids, url],
  );
  await db.query(
    `INSERT INTO user_page_terms (userid, url, clicks, likes) SELECT u, $2, 0, 1 FROM unnest($1::text[]) AS u
     ON CONFLICT (userid, url) DO UPDATE SET likes = user_page_terms.likes + 1`,
    [userids, url],
  );
}

/** Takes one like term of `url` (its current embedding) out of the user's interest. */
async function removeLikeTerm(db: pg.PoolClient, userid: string, url: string): Promise<void> {
  await db.query(
    "UPDATE interests SET sum = sum - (SELECT embedding FROM content WHERE url = $2), terms = terms - 1 WHERE userid = $1",
    [userid, url],
  );
  // A user whose last term went has no interest (not a zero vector with rounding dust).
  await db.query("DELETE FROM interests WHERE userid = $1 AND terms <= 0", [userid]);
  await db.query("UPDATE user_page_terms SET likes = likes - 1 WHERE userid = $1 AND url = $2", [userid, url]);
  await db.query("DELETE FROM user_page_terms WHERE userid = $1 AND url = $2 AND clicks = 0 AND likes <= 0", [userid, url]);
}

/** Takes out the terms of every like applied to `url`; they wait again for a page with their id. */
async function unapplyLikesOf(db: pg.PoolClient, url: string): Promise<void> {
  const users = await db.query<{ userid: string }>(
    "SELECT userid FROM likes WHERE applied_url = $1 ORDER BY userid FOR UPDATE",
    [url],
  );
  for (const { userid } of users.rows) await removeLikeTerm(db, userid, url);
  await db.query("UPDATE likes SET applied_url = NULL WHERE applied_url = $1", [url]);
}

/** Gives likes of `id` that wait for their page the embedding of the page now carrying it. */
async function foldWaitingLikes(db: pg.PoolClient, id: string): Promise<void> {
  const page = await pageWithId(db, id);
  if (!page) return;
  const waiting = await db.query<{ userid: string }>(
    "SELECT userid FROM likes WHERE page_id = $1 AND liked AND applied_url IS NULL ORDER BY userid FOR UPDATE",
    [id],
  );
  if (waiting.rows.length === 0) return;
  const userids = waiting.rows.map((r) => r.userid);
  await addLikeTerms(db, userids, page.url);
  await db.query("UPDATE likes SET applied_url = $2 WHERE page_id = $1 AND userid = ANY($3::text[])", [id, page.url, userids]);
}

/**
 * Moves the clicks parked for `url` into their users' interests (the page's stored embedding, once
 * per click); returns how many clicks. One upsert in userid order, as apply_clicks takes the rows,
 * so that a batch of clicks and this fold never wait for each other in a cycle.
 */
async function foldParkedClicks(db: pg.PoolClient, url: string): Promise<number> {
  const folded = await db.query(
    `INSERT INTO interests (userid, sum, terms)
     SELECT p.userid, sum(c.embedding), count(*) FROM parked_clicks p JOIN content c ON c.url = p.url
     WHERE p.url = $1 GROUP BY p.userid ORDER BY p.userid
     ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + excluded.terms`,
    [url],
  );
  if (folded.rowCount === 0) return 0;
  await db.query(
    `INSERT INTO user_page_terms (userid, url, clicks)
     SELECT userid, $1, count(*) FROM parked_clicks WHERE url = $1 GROUP BY userid ORDER BY userid
     ON CONFLICT (userid, url) DO UPDATE SET clicks = user_page_terms.clicks + excluded.clicks`,
    [url],
  );
  const deleted = await db.query("DELETE FROM parked_clicks WHERE url = $1", [url]);
  return deleted.rowCount ?? 0;
}
