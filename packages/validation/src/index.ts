import { COVISIT_WINDOW_MS } from "./covisit-window.js";
import { CONTROL, checkWellFormed } from "./characters.js";
import { FieldError } from "./field-error.js";

export {
  checkEventType,
  checkProperties,
  DEFAULT_EVENT_TYPE,
  PROPERTY_LIMITS,
  visitFilter,
  type PropertyInput,
  type PropertyValue,
} from "./event-types.js";
export { FieldError } from "./field-error.js";
export { checkPageStart, decodeCursor, encodeCursor, MAX_CURSOR_CHARS } from "./cursor.js";

export { COVISIT_WINDOW_IN_WORDS, COVISIT_WINDOW_MS, DEFAULT_ALLOWED_LATENESS_MS } from "./covisit-window.js";

/**
 * A user's click budget counts the user's clicks within this much event time of each other: the
 * co-visit window, so that the budget also bounds the pairs one click adds.
 */
export const CLICK_BUDGET_WINDOW_MS = COVISIT_WINDOW_MS;

/**
 * The most clicks of one user within CLICK_BUDGET_WINDOW_MS of each other, by default: the reference data's busiest user has 36,
 * and at 60 one user adds at most 60 * 59 / 2 = 1,770 co-visit pairs a window, about 4 MB of Redis with urls of 2 KiB.
 */
export const DEFAULT_USER_CLICK_BUDGET = 60;

export const LIMITS = {
  useridChars: 256,
  urlChars: 2048,
  // Bounds in UTF-8 as well: PostgreSQL refuses an index entry over 2,704 bytes, and analytics' panes key holds a userid and a
  // url together (with the event and two times), profile's keys a url, or a url and a page id. 2,048 characters of CJK are
  // 6,144 bytes: such a click was accepted and then stopped analytics' partition of CLICKS for good. At these two bounds the
  // widest key (panes) is about 2,640 bytes; an ASCII url or a userid of up to 256 two-byte characters is not affected.
  useridBytes: 512,
  urlBytes: 2048,
  eventIdChars: 128,
  pageIdChars: 128,
  titleChars: 1024,
  textBytes: 32 * 1024,
  recommendationLimit: { min: 1, max: 1000, fallback: 10 },
  maxOffset: 1_000_000,
  queryChars: 1024,
} as const;

function chars(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function checkBytes(value: string, max: number, field: string): void {
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > max) throw new FieldError(field, `must be at most ${max} bytes of UTF-8, got ${bytes}`);
}

export function checkUserid(value: string, field = "userid"): string {
  checkWellFormed(value, field);
  if (value.length === 0) throw new FieldError(field, "must not be empty");
  if (chars(value) > LIMITS.useridChars) throw new FieldError(field, `must be at most ${LIMITS.useridChars} characters`);
  checkBytes(value, LIMITS.useridBytes, field);
  if (CONTROL.test(value)) throw new FieldError(field, "must not contain control characters");
  return value;
}

/** An absolute http(s) URL, kept verbatim: co-visits are counted per exact url string. */
export function checkUrl(value: string, field = "url"): string {
  checkWellFormed(value, field);
  if (value.length === 0) throw new FieldError(field, "must not be empty");
  if (chars(value) > LIMITS.urlChars) throw new FieldError(field, `must be at most ${LIMITS.urlChars} characters`);
  checkBytes(value, LIMITS.urlBytes, field);
  if (CONTROL.test(value) || /\s/.test(value)) throw new FieldError(field, "must not contain whitespace or control characters");
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new FieldError(field, "must be an absolute http(s) URL");
  }
  if ((parsed.protocol !== "http:" && parsed.protocol !== "https:") || parsed.hostname === "") {
    throw new FieldError(field, "must be an absolute http(s) URL");
  }
  return value;
}

export function checkEventId(value: string, field = "event_id"): string {
  checkWellFormed(value, field);
  if (chars(value) > LIMITS.eventIdChars) throw new FieldError(field, `must be at most ${LIMITS.eventIdChars} characters`);
  if (CONTROL.test(value) || /\s/.test(value)) throw new FieldError(field, "must not contain whitespace or control characters");
  return value;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** Milliseconds since the epoch of an RFC 3339 date-time; rejects impossible dates that Date.parse would roll over. */
export function parseRfc3339(value: string, field = "event_time"): number {
  const m = RFC3339.exec(value);
  if (!m) throw new FieldError(field, "must be an RFC 3339 date-time, e.g. 2024-01-02T00:00:00Z");
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  // Not Date.UTC: it reads the years 0-99 as 1900-1999, and 1900 is no leap year where the year 0 is.
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const daysInMonth = month === 2 ? (leap ? 29 : 28) : [4, 6, 9, 11].includes(month) ? 30 : 31;
  const offset = m[8]!;
  const offsetOk = offset.length === 1 || (Number(offset.slice(1, 3)) <= 23 && Number(offset.slice(4, 6)) <= 59);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth || hour > 23 || minute > 59 || second > 60 || !offsetOk) {
    throw new FieldError(field, "is not a valid date-time");
  }
  // A leap second (:60) is the last instant of its minute.
  const normalized = second === 60 ? value.replace(/:60(?=[.Zz+-])/, ":59") : value;
  const ms = Date.parse(normalized) + (second === 60 ? 999 : 0);
  if (!Number.isFinite(ms)) throw new FieldError(field, "is not a valid date-time");
  return ms;
}

/**
 * How far an event's time may be ahead of the receiving service's clock by default: enough for a device clock a little fast;
 * a time further ahead would move the user's watermark (or a page's version) past every real event of the next hours.
 */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 2 * 60_000;

/** An event's time: RFC 3339, at most `maxClockSkewMs` ahead of `nowMs`. */
export function checkEventTime(value: string, nowMs: number, maxClockSkewMs: number, field = "event_time"): number {
  const ms = parseRfc3339(value, field);
  if (ms > nowMs + maxClockSkewMs) {
    throw new FieldError(field, `must not be more than ${inWords(maxClockSkewMs)} ahead of the server's clock; it is ${inWords(ms - nowMs)} ahead`);
  }
  return ms;
}

/** A duration for a message: "23 h", "2 min", "120.001 s" (exact below ten minutes). */
function inWords(ms: number): string {
  if (ms >= 3_600_000) return `${Number((ms / 3_600_000).toFixed(1))} h`;
  if (ms >= 600_000 || (ms >= 60_000 && ms % 60_000 === 0)) return `${Number((ms / 60_000).toFixed(1))} min`;
  return `${ms / 1000} s`;
}

/** A page's own id from its source, e.g. "42672986"; optional unless `allowEmpty` is false. */
export function checkPageId(value: string, field = "id", allowEmpty = true): string {
  checkWellFormed(value, field);
  if (!allowEmpty && value === "") throw new FieldError(field, "must not be empty");
  if (chars(value) > LIMITS.pageIdChars) throw new FieldError(field, `must be at most ${LIMITS.pageIdChars} characters`);
  if (CONTROL.test(value) || /\s/.test(value)) throw new FieldError(field, "must not contain whitespace or control characters");
  return value;
}

export function checkTitle(value: string, field = "title"): string {
  checkWellFormed(value, field);
  if (chars(value) > LIMITS.titleChars) throw new FieldError(field, `must be at most ${LIMITS.titleChars} characters`);
  if (CONTROL.test(value)) throw new FieldError(field, "must not contain control characters");
  return value;
}

/**
 * Text to embed: at most 32 KiB of UTF-8; empty only when `allowEmpty`. Line breaks and tabs are text; NUL is not (PostgreSQL,
 * where a page's text is stored, cannot hold it: a page with one was accepted here and then refused there).
 */
export function checkText(value: string, field = "text", allowEmpty = false): string {
  checkWellFormed(value, field);
  if (value.includes("\u0000")) throw new FieldError(field, "must not contain NUL (U+0000)");
  if (!allowEmpty && value.trim() === "") throw new FieldError(field, "must not be empty");
  checkBytes(value, LIMITS.textBytes, field);
  return value;
}

/** The number of results to return; `undefined` or 0 mean the default. */
export function checkLimit(value: number | undefined, field = "limit"): number {
  const { min, max, fallback } = LIMITS.recommendationLimit;
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min || value > max) throw new FieldError(field, `must be between ${min} and ${max}`);
  return value;
}

/** How many results to skip: 0..1,000,000; `undefined` means 0. */
export function checkOffset(value: number | undefined, field = "offset"): number {
  if (value === undefined) return 0;
  if (!Number.isInteger(value) || value < 0 || value > LIMITS.maxOffset) throw new FieldError(field, `must be between 0 and ${LIMITS.maxOffset}`);
  return value;
}

/** A search query: words, "phrases", or, -not (PostgreSQL's websearch syntax). */
export function checkQuery(value: string, field = "query"): string {
  checkWellFormed(value, field);
  if (value.trim() === "") throw new FieldError(field, "must not be empty");
  if (chars(value) > LIMITS.queryChars) throw new FieldError(field, `must be at most ${LIMITS.queryChars} characters`);
  if (CONTROL.test(value)) throw new FieldError(field, "must not contain control characters");
  return value;
}

/** Runs a check and turns its FieldError into InvalidArgument for the wire. */
export function orInvalidArgument<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    if (err instanceof FieldError) throw err.toConnectError();
    throw err;
  }
}
