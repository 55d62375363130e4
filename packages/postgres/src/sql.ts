/** An identifier quoted for SQL: a schema or role name from configuration. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** PostgreSQL's SQLSTATE of an error, if PostgreSQL answered with one. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/**
 * A value PostgreSQL can never store: retrying will not help. SQLSTATE class 22 (e.g. a NUL in text), and 54000, a value past one
 * of its limits (e.g. an index entry over 2,704 bytes; validation bounds urls and userids below that, so only a message from
 * before those bounds can bring one).
 */
export function isDataError(err: unknown): boolean {
  const state = sqlState(err);
  return state !== undefined && (state.startsWith("22") || state === "54000");
}
