import type pg from "pg";
import { recordApplied } from "./applied-events.js";
import { erasedSince, shareErasureLock } from "./erasures.js";
import { isLaterOrSame, likeTermChange } from "./like-state.js";
import { lockPageId } from "./locks.js";
import type { Sessions } from "./sessions.js";
import type { LikeOutcome, LikeToApply } from "./types.js";

/** Stores a like state unless a later one of its (user, page id) is, moving the user's interest with it; dropped when accepted before its user's erasure. */
export function applyLike(sessions: Sessions, like: LikeToApply): Promise<LikeOutcome> {
  return sessions.transaction(async (db) => {
    await shareErasureLock(db);
    await lockPageId(db, like.pageId);
    if (await erasedSince(db, like.userid, like.ingestTimeMs ?? 0n)) return { status: "erased" };
    // Never expired: a like applied before, its id pruned since, is superseded by the stored state.
    const recorded = await recordApplied(db, "like", like.userid, like.eventId, like.sourceTimeMs, null);
    if (recorded !== "fresh") return { status: recorded };
    const stored = await db.query<{ source_time_ms: string; event_id: string; applied_url: string | null }>(
      "SELECT source_time_ms, event_id, applied_url FROM likes WHERE userid = $1 AND page_id = $2 FOR UPDATE",
      [like.userid, like.pageId],
    );
    const old = stored.rows[0];
    if (old && isLaterOrSame({ sourceTimeMs: BigInt(old.source_time_ms), eventId: old.event_id }, like)) return { status: "superseded" };
    let appliedUrl = old?.applied_url ?? null;
    const change = likeTermChange(like.liked, appliedUrl !== null);
    if (change === "remove" && appliedUrl !== null) {
      await removeLikeTerm(db, like.userid, appliedUrl);
      appliedUrl = null;
    }
    if (change === "add") {
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
  await db.query("UPDATE interests SET sum = sum - (SELECT embedding FROM content WHERE url = $2), terms = terms - 1 WHERE userid = $1", [userid, url]);
  // A user whose last term went has no interest (not a zero vector with rounding dust).
  await db.query("DELETE FROM interests WHERE userid = $1 AND terms <= 0", [userid]);
  await db.query("UPDATE user_page_terms SET likes = likes - 1 WHERE userid = $1 AND url = $2", [userid, url]);
  await db.query("DELETE FROM user_page_terms WHERE userid = $1 AND url = $2 AND clicks = 0 AND likes <= 0", [userid, url]);
}

/** Takes out the terms of every like applied to `url`; they wait again for a page with their id. */
export async function unapplyLikesOf(db: pg.PoolClient, url: string): Promise<void> {
  const users = await db.query<{ userid: string }>("SELECT userid FROM likes WHERE applied_url = $1 ORDER BY userid FOR UPDATE", [url]);
  for (const { userid } of users.rows) await removeLikeTerm(db, userid, url);
  await db.query("UPDATE likes SET applied_url = NULL WHERE applied_url = $1", [url]);
}

/** Gives likes of `id` that wait for their page the embedding of the page now carrying it. */
export async function foldWaitingLikes(db: pg.PoolClient, id: string): Promise<void> {
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
