import { CONTROL } from "./characters.js";
import { FieldError } from "./field-error.js";

/** The longest cursor taken: the sort keys in use (a page id, a url, a userid, an event type) fit well within it. */
export const MAX_CURSOR_CHARS = 8192;

type KeyPart = "string" | "number";
type KeyOf<S extends readonly KeyPart[]> = { [I in keyof S]: S[I] extends "number" ? number : string };

/**
 * Keyset paging's opaque cursors: the sort key of a page's last item, for the list named `list`, as base64url JSON. The next page
 * starts after it, so items added or removed meanwhile shift nothing; a cursor of another list, or one not made here, is refused.
 */
export function encodeCursor(list: string, key: ReadonlyArray<string | number>): string {
  return Buffer.from(JSON.stringify([list, ...key]), "utf8").toString("base64url");
}

/** The sort key `cursor` carries, of the shape `shape`; FieldError naming `field` for anything else. */
export function decodeCursor<const S extends readonly KeyPart[]>(list: string, cursor: string, shape: S, field = "cursor"): KeyOf<S> {
  const refused = () => new FieldError(field, `is not a cursor of ${list}: pass back a next_cursor ${list} answered`);
  if (cursor.length > MAX_CURSOR_CHARS || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw refused();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    throw refused();
  }
  if (!Array.isArray(parsed) || parsed[0] !== list || parsed.length !== shape.length + 1) throw refused();
  const key = parsed.slice(1);
  // No sort key holds a control character (validation refuses them), and PostgreSQL refuses a NUL in a parameter.
  const valid = (v: unknown, i: number) => typeof v === shape[i] && (typeof v === "number" ? Number.isSafeInteger(v) : !CONTROL.test(v as string));
  if (!key.every(valid)) throw refused();
  return key as KeyOf<S>;
}

/** Where a page starts: after a cursor, or at an offset; both at once is refused, naming `cursor`. */
export function checkPageStart(offset: number, cursor: string, field = "cursor"): void {
  if (cursor !== "" && offset !== 0) throw new FieldError(field, "give a cursor or an offset, not both");
}
