/** PostgreSQL's SQLSTATE codes, read from an error, and what they say about trying again. */
import { sqlState } from "@recsys/postgres";

export { sqlState };

/** A value PostgreSQL can never store (SQLSTATE class 22, e.g. a NUL in text): retrying will not help. */
export function isDataError(err: unknown): boolean {
  return sqlState(err)?.startsWith("22") ?? false;
}

// Deadlock and serialization failure: the transaction did nothing and may simply run again.
const RETRYABLE = new Set(["40P01", "40001"]);

/** True for a deadlock or a serialization failure: the transaction may simply run again. */
export function isRetryable(err: unknown): boolean {
  return RETRYABLE.has(sqlState(err) ?? "");
}
