import { eventIdOf } from "./hashing.js";
import {
  checkEventId,
  checkEventTime,
  checkEventType,
  checkProperties,
  checkUrl,
  checkUserid,
  DEFAULT_EVENT_TYPE,
  type PropertyInput,
  type PropertyValue,
} from "@recsys/validation";

export interface ClickFields {
  userid: string;
  url: string;
  event_time: string;
  event_id: string;
  event?: string;
  properties?: Record<string, PropertyInput>;
}

export interface ValidClick {
  eventId: string;
  userid: string;
  url: string;
  eventTimeMs: number;
  /** The event type; "view" when the client named none. */
  event: string;
  properties: Record<string, PropertyValue>;
}

/**
 * Validates one click and fills in what the client left out; throws FieldError naming the field.
 * Without an event_id it gets a hash of its content, so that a retry of the same click is recognised as the same event; without
 * an event_time as well, its content holds the time of receipt, and a retry is a new click.
 */
export function toValidClick(input: ClickFields, nowMs: number, maxClockSkewMs: number): ValidClick {
  const userid = checkUserid(input.userid);
  const url = checkUrl(input.url);
  const eventTimeMs = input.event_time === "" ? nowMs : checkEventTime(input.event_time, nowMs, maxClockSkewMs);
  const event = checkEventType(input.event ?? "");
  const properties = checkProperties(input.properties ?? {});
  const eventId = input.event_id === "" ? clickEventId(userid, url, eventTimeMs, event) : checkEventId(input.event_id);
  return { eventId, userid, url, eventTimeMs, event, properties };
}

/**
 * Hash of (userid, url, event time in ms), and the event type unless "view" (so the ids of untyped clicks are what they were):
 * equal for "…00Z" and "…00.000Z", different for any other change.
 */
export function clickEventId(userid: string, url: string, eventTimeMs: number, event = DEFAULT_EVENT_TYPE): string {
  return eventIdOf(event === DEFAULT_EVENT_TYPE ? [userid, url, eventTimeMs] : [userid, url, eventTimeMs, event]);
}
