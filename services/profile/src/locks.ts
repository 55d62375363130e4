import type pg from "pg";

// Lock order of every write transaction, so that no two wait on each other in a cycle: the erasure
// lock, shared (erasures.ts; an erasure takes it alone and nothing else), then a page's url, then its
// page ids (sorted), then interest rows in userid order. All are transaction-scoped.

/** Clicks and embeddings of one url take turns; other urls go on in parallel. */
export async function lockUrl(db: pg.PoolClient, url: string): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [url]);
}

/** Likes and embeddings of one page id take turns. */
export async function lockPageId(db: pg.PoolClient, id: string): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))", [id]);
}
