import type { Logger } from "@recsys/logging";

/**
 * A warning about a store's failures, at most once every `everyMs`, with how many there were since the last: a store that is down
 * fails every read, thousands a second at the gateway's rates, and a line for each would flood the log.
 */
export function failureLog(logger: Logger, message: string, everyMs = 1_000, now: () => number = Date.now): (err: unknown) => void {
  let last = -Infinity;
  let since = 0;
  return (err) => {
    since++;
    const t = now();
    if (t - last < everyMs) return;
    logger.warn({ err, failures: since }, message);
    last = t;
    since = 0;
  };
}
