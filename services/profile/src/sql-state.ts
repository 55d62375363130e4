/** PostgreSQL's SQLSTATE codes, read from an error, and what they say about trying again. */
import { sqlState } from "@recsys/postgres";

export { sqlState };

/**
 * A value PostgreSQL can never store: retrying will not help. SQLSTATE class 22 (e.g. a NUL in text), and 54000, a value past one
 * of its limits (e.g. an index entry over 2,704 bytes; validation bounds urls and userids below that, so only a message from
 * before those bounds can bring one).
 */
export function isDataError(err: unknown): boolean {
  const state = sqlState(err);
  return state !== undefined && (state.startsWith("22") || state === "54000");
}

// Deadlock and serialization failure: the transaction did nothing and may simply run again.
const RETRYABLE = new Set(["40P01", "40001"]);

/** True for a deadlock or a serialization failure: the transaction may simply run again. */
export function isRetryable(err: unknown): boolean {
  return RETRYABLE.has(sqlState(err) ?? "");
}
