import { toSql } from "pgvector/pg";
import { recordApplied } from "./applied-events.js";
import { erasedSince, shareErasureLock } from "./erasures.js";
import { asStored } from "./interest-math.js";
import type { Sessions } from "./sessions.js";
import type { InterestOutcome, InterestToApply } from "./types.js";

/** Adds a stated interest's embedding as a term of the user's interest, once per (user, event id); dropped when accepted before its user's erasure. */
export function applyInterest(sessions: Sessions, interest: InterestToApply, retentionMs: number): Promise<InterestOutcome> {
  const embedding = asStored(interest.embedding);
  return sessions.transaction(async (db) => {
    await shareErasureLock(db);
    if (await erasedSince(db, interest.userid, interest.ingestTimeMs ?? 0n)) return { status: "erased" };
    const recorded = await recordApplied(db, "interest", interest.userid, interest.eventId, interest.sourceTimeMs, retentionMs);
    if (recorded !== "fresh") return { status: recorded };
    await db.query(
      `INSERT INTO interests (userid, sum, terms) VALUES ($1, $2, 1)
       ON CONFLICT (userid) DO UPDATE SET sum = interests.sum + excluded.sum, terms = interests.terms + 1`,
      [interest.userid, toSql(embedding)],
    );
    return { status: "applied" };
  });
}
