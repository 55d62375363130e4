import type { MsgHdrs } from "@recsys/bus";
import ms from "ms";

/** A message of DEAD_LETTERS as JetStream hands it out, from a consumer or a get by sequence. */
export interface StoredLetter {
  seq: number;
  time: Date;
  subject: string;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
}

/** A dead letter read: why it was kept, where it came from, and what a replay republishes. */
export interface DeadLetter {
  /** Its sequence in DEAD_LETTERS: what `show` and `replay` take. */
  sequence: number;
  /** When it was dead-lettered (ISO). */
  time: string;
  /** Who filed it, the part of its subject after `dlq.`: clicks (covisit), profile-clicks, content, ... */
  source: string;
  cause: string;
  reason: string;
  sourceStream: string | null;
  sourceSequence: number | null;
  /** Its index in the source message when the letter is one item of a batch (its data is that item alone). */
  sourceItem: number | null;
  /** Where a replay republishes it; letters written before this header existed have none. */
  sourceSubject: string | null;
  contentType: string | null;
  headers: Record<string, string>;
  data: Uint8Array;
}

/**
 * The cause of a letter written before the cause had a header of its own, read from its reason:
 * "late: …" and "undecodable: …" name it, a reason from PostgreSQL is "refused", a message that kept failing "poison".
 */
export function deadLetterCause(reason: string): string {
  const named = /^([a-z]+):/.exec(reason);
  if (named) return named[1]!;
  return reason.startsWith("refused") ? "refused" : "poison";
}

/** Reads a stored letter; `deadLetterPrefix` is the namespace's `dlq.` subject prefix. */
export function letterOf(m: StoredLetter, deadLetterPrefix: string): DeadLetter {
  const headers: Record<string, string> = {};
  for (const key of m.headers?.keys() ?? []) headers[key] = m.headers!.values(key).join(", ");
  const text = (key: string) => headers[key] || null;
  const count = (key: string) => (headers[key] ? Number(headers[key]) : null);
  const reason = headers["recsys-reason"] ?? "";
  return {
    sequence: m.seq,
    time: m.time.toISOString(),
    // dlq.<source>.<user or message>, or dlq.<source> for letters filed before they were filed by user.
    source: m.subject.startsWith(deadLetterPrefix) ? m.subject.slice(deadLetterPrefix.length).split(".")[0]! : m.subject,
    cause: text("recsys-cause") ?? deadLetterCause(reason),
    reason,
    sourceStream: text("recsys-source-stream"),
    sourceSequence: count("recsys-source-sequence"),
    sourceItem: count("recsys-source-item"),
    sourceSubject: text("recsys-source-subject"),
    contentType: text("content-type"),
    headers,
    data: m.data,
  };
}

export interface Selection {
  cause?: string;
  source?: string;
  /** Letters dead-lettered at or after this time (ms since the epoch). */
  sinceMs?: number;
  /** Only these DEAD_LETTERS sequences. */
  sequences?: number[];
}

export function selected(letter: DeadLetter, s: Selection): boolean {
  return (
    (s.cause === undefined || letter.cause === s.cause) &&
    (s.source === undefined || letter.source === s.source) &&
    (s.sinceMs === undefined || Date.parse(letter.time) >= s.sinceMs) &&
    (s.sequences === undefined || s.sequences.length === 0 || s.sequences.includes(letter.sequence))
  );
}

/**
 * The time `--since` stands for: an ISO time (2026-01-02T10:00:00Z), or a duration back from now
 * with its unit (90s, 30m, 1h, 2d). Throws, naming both forms, on anything else.
 */
export function sinceTime(value: string, nowMs = Date.now()): number {
  const v = value.trim();
  if (/^\d{4}-\d{2}-\d{2}/.test(v)) {
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  } else if (/[a-z]$/i.test(v)) {
    // A bare number would be read as milliseconds by `ms`: a unit is required instead.
    const back = ms(v as ms.StringValue);
    if (Number.isFinite(back) && back >= 0) return nowMs - back;
  }
  throw new Error(`"${value}" is neither an ISO time (2026-01-02T10:00:00Z) nor a duration with a unit (30m, 1h, 2d)`);
}

/** Where a letter came from, as `STREAM #seq` and the item's index when it was one item of a message. */
export function origin(letter: DeadLetter): string {
  if (!letter.sourceStream) return "?";
  const item = letter.sourceItem === null ? "" : ` item ${letter.sourceItem}`;
  return `${letter.sourceStream} #${letter.sourceSequence ?? "?"}${item}`;
}

const REASON_WIDTH = 80;

/** One line of `list`: sequence, time, cause, who filed it, where from, why (cut to a line). */
export function letterLine(letter: DeadLetter): string {
  const reason = letter.reason.length > REASON_WIDTH ? `${letter.reason.slice(0, REASON_WIDTH - 1)}…` : letter.reason;
  return [String(letter.sequence).padStart(6), letter.time, letter.cause.padEnd(11), letter.source.padEnd(14), origin(letter).padEnd(30), reason].join("  ");
}

/** Letters per cause, causes in name order. */
export function countByCause(letters: Iterable<Pick<DeadLetter, "cause">>): Record<string, number> {
  const counts = new Map<string, number>();
  for (const l of letters) counts.set(l.cause, (counts.get(l.cause) ?? 0) + 1);
  return Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b)));
}
