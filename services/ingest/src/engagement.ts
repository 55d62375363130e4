import { checkEventId, checkEventTime, checkPageId, checkText, checkUserid } from "@recsys/validation";
import { eventIdOf } from "./hashing.js";

export interface LikeFields {
  userid: string;
  page_id: string;
  liked: boolean;
  source_time: string;
  event_id: string;
}

export interface ValidLike {
  eventId: string;
  userid: string;
  pageId: string;
  liked: boolean;
  sourceTimeMs: number;
}

export interface InterestFields {
  userid: string;
  text: string;
  source_time: string;
  event_id: string;
}

export interface ValidInterest {
  eventId: string;
  userid: string;
  text: string;
  sourceTimeMs: number;
}

/**
 * Validates one like or unlike; throws FieldError naming the field (a source_time more than `maxClockSkewMs` after now too).
 * The page need not be known yet: profile keeps the like and applies it when the page arrives.
 */
export function toValidLike(input: LikeFields, nowMs: number, maxClockSkewMs: number): ValidLike {
  const userid = checkUserid(input.userid);
  const pageId = checkPageId(input.page_id, "page_id", false);
  const sourceTimeMs = input.source_time === "" ? nowMs : checkEventTime(input.source_time, nowMs, maxClockSkewMs, "source_time");
  const eventId = input.event_id === "" ? eventIdOf(["like", userid, pageId, input.liked, sourceTimeMs]) : checkEventId(input.event_id);
  return { eventId, userid, pageId, liked: input.liked, sourceTimeMs };
}

/** Validates one stated interest. Throws FieldError naming the field, as `toValidLike`. */
export function toValidInterest(input: InterestFields, nowMs: number, maxClockSkewMs: number): ValidInterest {
  const userid = checkUserid(input.userid);
  const text = checkText(input.text);
  const sourceTimeMs = input.source_time === "" ? nowMs : checkEventTime(input.source_time, nowMs, maxClockSkewMs, "source_time");
  const eventId = input.event_id === "" ? eventIdOf(["interest", userid, text, sourceTimeMs]) : checkEventId(input.event_id);
  return { eventId, userid, text, sourceTimeMs };
}
