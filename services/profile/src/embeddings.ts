import type pg from "pg";
import { toSql } from "pgvector/pg";
import { foldParkedClicks } from "./clicks.js";
import { shareErasureLock } from "./erasures.js";
import { asStored, embeddingChange, sumCorrection } from "./interest-math.js";
import { foldWaitingLikes, unapplyLikesOf } from "./likes.js";
import { lockPageId, lockUrl } from "./locks.js";
import type { Sessions } from "./sessions.js";
import type { EmbeddingOutcome, PageEmbedding } from "./types.js";

/** Stores a page's embedding if newer than the stored one, correcting interests and folding what waited for it. */
export function applyEmbedding(sessions: Sessions, version: PageEmbedding): Promise<EmbeddingOutcome> {
  let page = version;
  const embedding = asStored(page.embedding);
  return sessions.transaction(async (db) => {
    // Folding parked clicks and waiting likes writes users' interests: never those of a user being erased.
    await shareErasureLock(db);
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
      const change = embeddingChange(asStored(old.embedding), embedding);
      if (change) correctedUsers = await correctInterests(db, page.url, change);
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

/** sum += terms × change for every user with terms (clicks, likes) from `url`; returns how many users. */
async function correctInterests(db: pg.PoolClient, url: string, change: number[]): Promise<number> {
  // Row locks in userid order, so two pages corrected at once do not deadlock on shared users.
  const users = await db.query("SELECT userid FROM interests WHERE userid IN (SELECT userid FROM user_page_terms WHERE url = $1) ORDER BY userid FOR UPDATE", [
    url,
  ]);
  const counts = await db.query<{ n: string }>("SELECT DISTINCT clicks + likes AS n FROM user_page_terms WHERE url = $1", [url]);
  for (const { n } of counts.rows) {
    await db.query(
      `UPDATE interests i SET sum = i.sum + $3::vector FROM user_page_terms c
       WHERE c.url = $1 AND c.clicks + c.likes = $2 AND i.userid = c.userid`,
      [url, n, toSql(sumCorrection(change, Number(n)))],
    );
  }
  return users.rowCount ?? 0;
}
