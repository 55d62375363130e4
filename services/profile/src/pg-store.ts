import pg from "pg";
import { registerTypes, toSql } from "pgvector/pg";
import type { Logger } from "@recsys/logging";
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
  // An idle client losing its server emits here; without a listener the process would crash.
  pool.on("error", (err) => opts.logger.warn({ err: String(err) }, "idle PostgreSQL client failed"));
  return pool;
}

export interface ClickToApply {
  eventId: string;
  userid: string;
  url: string;
  eventTimeMs: number;
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

export type ClickOutcome = { status: "applied" } | { status: "parked" } | { status: "duplicate" };
export type EmbeddingOutcome =
  | { status: "inserted"; foldedClicks: number }
  | { status: "updated"; correctedUsers: number; foldedClicks: number }
  | { status: "stale"; storedVersion: bigint };

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

  constructor(private readonly pool: pg.Pool) {}

  /**
   * Folds one click into its user's interest, or parks it until its page is embedded. Serialized
   * per url with `applyEmbedding`, so a click is never parked after its page's parked clicks were folded.
   */
  applyClick(click: ClickToApply): Promise<ClickOutcome> {
    return this.transaction(async (db) => {
      await lockUrl(db, click.url);
      const fresh = await db.query("INSERT INTO applied_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING", [click.eventId]);
      if (fresh.rowCount === 0) return { status: "duplicate" };
      const added = await db.query(
        `INSERT INTO interests (userid, sum, terms) SELECT $1, embedding, 1 FROM content WHERE url = $2
         ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + excluded.terms`,
        [click.userid, click.url],
      );
      if (added.rowCount === 0) {
        await db.query("INSERT INTO parked_clicks (event_id, userid, url, event_time_ms) VALUES ($1, $2, $3, $4)", [
          click.eventId,
          click.userid,
          click.url,
          click.eventTimeMs,
        ]);
        return { status: "parked" };
      }
      await db.query(
        `INSERT INTO user_page_clicks (userid, url, clicks) VALUES ($1, $2, 1)
         ON CONFLICT (userid, url) DO UPDATE SET clicks = user_page_clicks.clicks + 1`,
        [click.userid, click.url],
      );
      return { status: "applied" };
    });
  }

  /**
   * Stores a page's embedding if its version is newer than the stored one. A new embedding of a
   * known page corrects the sums of the users who clicked it by clicks × (new − old); clicks parked
   * for the page are folded in. Interests stay the mean of the current embeddings.
   */
  applyEmbedding(page: PageEmbedding): Promise<EmbeddingOutcome> {
    // What PostgreSQL stores is float4; do the arithmetic on exactly those values.
    const embedding = page.embedding.map(Math.fround);
    return this.transaction(async (db) => {
      await lockUrl(db, page.url);
      const stored = await db.query<{ embedding: number[]; version: string }>(
        "SELECT embedding, version FROM content WHERE url = $1 FOR UPDATE",
        [page.url],
      );
      const old = stored.rows[0];
      if (old && BigInt(old.version) >= page.version) return { status: "stale", storedVersion: BigInt(old.version) };
      const row = [page.url, page.id, page.title, page.text, toSql(embedding), page.version.toString(), page.model];
      let correctedUsers = 0;
      if (!old) {
        await db.query("INSERT INTO content (url, id, title, text, embedding, version, model) VALUES ($1, $2, $3, $4, $5, $6, $7)", row);
      } else {
        await db.query("UPDATE content SET id = $2, title = $3, text = $4, embedding = $5, version = $6, model = $7 WHERE url = $1", row);
        const previous = old.embedding.map(Math.fround);
        if (!sameVector(previous, embedding)) correctedUsers = await correctInterests(db, page.url, difference(embedding, previous));
      }
      const foldedClicks = await foldParkedClicks(db, page.url, embedding);
      return old ? { status: "updated", correctedUsers, foldedClicks } : { status: "inserted", foldedClicks };
    });
  }

  /** Pages by cosine similarity to the user's interest, desc, then url asc; similarity 0 without one. */
  async similarContent(userid: string, limit: number): Promise<SimilarPage[]> {
    // An exact scan, not the HNSW index: results must equal a brute-force ranking (ties and the cut
    // at `limit` included), and scanning a few thousand pages costs milliseconds. Ordering by the
    // COALESCE expression keeps the planner off the index.
    const result = await this.pool.query<SimilarPage>(
      `WITH q AS (SELECT sum FROM interests WHERE userid = $1 AND vector_norm(sum) > 0)
       SELECT url, title, COALESCE(1 - (embedding <=> (SELECT sum FROM q)), 0)::float8 AS similarity
       FROM content ORDER BY similarity DESC, url ASC LIMIT $2`,
      [userid, limit],
    );
    return result.rows;
  }

  /** The interest behind a user's recommendations, or undefined when the user has none. */
  async interest(userid: string): Promise<{ sum: number[]; terms: number } | undefined> {
    return this.withClient(async (db) => {
      const r = await db.query<{ sum: number[]; terms: string }>("SELECT sum, terms FROM interests WHERE userid = $1", [userid]);
      const row = r.rows[0];
      return row && { sum: row.sum, terms: Number(row.terms) };
    });
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
  private async transaction<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.withClient(async (db) => {
          await db.query("BEGIN");
          try {
            const result = await fn(db);
            await db.query("COMMIT");
            return result;
          } catch (err) {
            await db.query("ROLLBACK").catch(() => undefined);
            throw err;
          }
        });
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS || !RETRYABLE.has(sqlState(err) ?? "")) throw err;
        await new Promise((r) => setTimeout(r, Math.random() * 20 * attempt));
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

/** Clicks and embeddings of one url take turns; other urls go on in parallel. */
async function lockUrl(db: pg.PoolClient, url: string): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [url]);
}

/** sum += clicks × delta for every user who clicked `url`; returns how many users. */
async function correctInterests(db: pg.PoolClient, url: string, delta: number[]): Promise<number> {
  // Row locks in userid order, so two pages corrected at once do not deadlock on shared users.
  const users = await db.query(
    "SELECT userid FROM interests WHERE userid IN (SELECT userid FROM user_page_clicks WHERE url = $1) ORDER BY userid FOR UPDATE",
    [url],
  );
  const counts = await db.query<{ clicks: string }>("SELECT DISTINCT clicks FROM user_page_clicks WHERE url = $1", [url]);
  for (const { clicks } of counts.rows) {
    await db.query(
      `UPDATE interests i SET sum = i.sum + $3::vector FROM user_page_clicks c
       WHERE c.url = $1 AND c.clicks = $2 AND i.userid = c.userid`,
      [url, clicks, toSql(scaled(delta, Number(clicks)))],
    );
  }
  return users.rowCount ?? 0;
}

/** Moves the clicks parked for `url` into their users' interests; returns how many clicks. */
async function foldParkedClicks(db: pg.PoolClient, url: string, embedding: number[]): Promise<number> {
  const parked = await db.query<{ userid: string; n: number }>(
    "SELECT userid, count(*)::int AS n FROM parked_clicks WHERE url = $1 GROUP BY userid ORDER BY userid",
    [url],
  );
  if (parked.rows.length === 0) return 0;
  const usersByCount = new Map<number, string[]>();
  for (const { userid, n } of parked.rows) usersByCount.set(n, [...(usersByCount.get(n) ?? []), userid]);
  for (const [n, userids] of usersByCount) {
    await db.query(
      `INSERT INTO interests (userid, sum, terms) SELECT u, $2::vector, $3 FROM unnest($1::text[]) AS u ORDER BY u
       ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + excluded.terms`,
      [userids, toSql(scaled(embedding, n)), n],
    );
    await db.query(
      `INSERT INTO user_page_clicks (userid, url, clicks) SELECT u, $2, $3 FROM unnest($1::text[]) AS u
       ON CONFLICT (userid, url) DO UPDATE SET clicks = user_page_clicks.clicks + excluded.clicks`,
      [userids, url, n],
    );
  }
  const deleted = await db.query("DELETE FROM parked_clicks WHERE url = $1", [url]);
  return deleted.rowCount ?? 0;
}
