/** PostgreSQL's SQLSTATE codes, read from an error, and what they say about trying again. */
import { isDataError, sqlState } from "@recsys/postgres";

export { isDataError, sqlState };

// Deadlock and serialization failure: the transaction did nothing and may simply run again.
const RETRYABLE = new Set(["40P01", "40001"]);

/** True for a deadlock or a serialization failure: the transaction may simply run again. */
export function isRetryable(err: unknown): boolean {
  return RETRYABLE.has(sqlState(err) ?? "");
}
