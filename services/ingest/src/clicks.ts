import { eventIdOf } from "./hashing.js";
import { checkEventId, checkEventTime, checkUrl, checkUserid } from "@recsys/validation";

export interface ClickFields {
  userid: string;
  url: string;
  event_time: string;
  event_id: string;
}

export interface ValidClick {
  eventId: string;
  userid: string;
  url: string;
  eventTimeMs: number;
}

/**
 * Validates one click and fills in what the client left out; throws FieldError naming the field.
 * Without an event_id it gets a hash of its content, so that a retry of the same click is recognised as the same event.
 */
export function toValidClick(input: ClickFields, nowMs: number, maxClockSkewMs: number): ValidClick {
  const userid = checkUserid(input.userid);
  const url = checkUrl(input.url);
  const eventTimeMs = input.event_time === "" ? nowMs : checkEventTime(input.event_time, nowMs, maxClockSkewMs);
  const eventId = input.event_id === "" ? clickEventId(userid, url, eventTimeMs) : checkEventId(input.event_id);
  return { eventId, userid, url, eventTimeMs };
}

/** Hash of (userid, url, event time in ms): equal for "…00Z" and "…00.000Z", different for any other change. */
export function clickEventId(userid: string, url: string, eventTimeMs: number): string {
  return eventIdOf([userid, url, eventTimeMs]);
}
