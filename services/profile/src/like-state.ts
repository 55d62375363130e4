/** The rules of a (user, page id) like state, apart from the SQL that stores it. */

/** Where a like stands in its pair's history: the greatest (source time, event id) is the latest. */
export interface LikeVersion {
  sourceTimeMs: bigint;
  eventId: string;
}

/** True when the stored like (a) is at least as late as the incoming one (b): (time, event id) order. */
export function isLaterOrSame(a: LikeVersion, b: LikeVersion): boolean {
  return a.sourceTimeMs > b.sourceTimeMs || (a.sourceTimeMs === b.sourceTimeMs && a.eventId >= b.eventId);
}

/**
 * What a newer like state does to its user's interest: an unlike takes out the term a like applied,
 * a like adds one (once its page is embedded), anything else leaves the interest as it is.
 */
export function likeTermChange(liked: boolean, termApplied: boolean): "add" | "remove" | "keep" {
  if (!liked && termApplied) return "remove";
  if (liked && !termApplied) return "add";
  return "keep";
}
