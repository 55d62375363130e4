import { setTimeout as sleep } from "node:timers/promises";
import pRetry from "p-retry";
import { isRetryable } from "./sql-state.js";

const MAX_ATTEMPTS = 5;

/** Runs `attempt` again on deadlock or serialization failure (up to 5 attempts, a short random wait between); other errors throw. */
export function retrying<T>(attempt: () => Promise<T>): Promise<T> {
  return pRetry(attempt, {
    retries: MAX_ATTEMPTS - 1,
    minTimeout: 0,
    shouldRetry: ({ error }) => isRetryable(error),
    // The wait grows with the attempt and is random, so that the transactions that collided do not
    // collide again; p-retry's own backoff is off.
    onFailedAttempt: async ({ error, attemptNumber }) => {
      if (isRetryable(error)) await sleep(Math.random() * 20 * attemptNumber);
    },
  });
}
