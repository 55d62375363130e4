import { eventIdOf, partitionOf } from "./hashing.js";
import { checkEventTime, checkPageId, checkText, checkTitle, checkUrl } from "@recsys/validation";

export interface PageFields {
  url: string;
  id: string;
  title: string;
  text: string;
  source_time: string;
}

export interface ValidPage {
  eventId: string;
  url: string;
  id: string;
  title: string;
  text: string;
  sourceTimeMs: number;
}

/**
 * Validates one page version; throws FieldError naming the field. Without a source_time the version is when ingest received it.
 * A source_time more than `maxClockSkewMs` after now is refused, or it would win over every real version until then.
 */
export function toValidPage(input: PageFields, nowMs: number, maxClockSkewMs: number): ValidPage {
  const url = checkUrl(input.url);
  const id = checkPageId(input.id);
  const title = checkTitle(input.title);
  const text = checkText(input.text);
  const sourceTimeMs = input.source_time === "" ? nowMs : checkEventTime(input.source_time, nowMs, maxClockSkewMs, "source_time");
  return { eventId: pageEventId(url, sourceTimeMs, title, text), url, id, title, text, sourceTimeMs };
}

/** The same version of a page (url, time, title, text) is the same event, so a retry is a duplicate. */
export function pageEventId(url: string, sourceTimeMs: number, title: string, text: string): string {
  return eventIdOf([url, sourceTimeMs, title, text]);
}

/** Versions of one url share a subject, so they are consumed in the order they were published. */
export function pagePartitionOf(url: string, partitions: number): number {
  return partitionOf(url, partitions);
}
