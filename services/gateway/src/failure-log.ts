import type { Logger } from "@recsys/logging";

/**
 * A warning written at most once every `everyMs`, its fields with `count` (how many times it happened since the last line, this
 * one included): a store that is down fails every read, and a client without a key or past its limit can be refused thousands of
 * times a second; a line for each would flood the log. The fields are those of the time that was written.
 */
export function throttledWarn<F extends object>(
  logger: Logger,
  message: string,
  count: string,
  everyMs = 1_000,
  now: () => number = Date.now,
): (fields: F) => void {
  let last = -Infinity;
  let since = 0;
  return (fields) => {
    since++;
    const t = now();
    if (t - last < everyMs) return;
    const line: Record<string, unknown> = { ...fields, [count]: since };
    logger.warn(line, message);
    last = t;
    since = 0;
  };
}

/** A store's failures as a throttled warning, with how many failed since the last line. */
export function failureLog(logger: Logger, message: string, everyMs = 1_000, now: () => number = Date.now): (err: unknown) => void {
  const warn = throttledWarn<{ err: unknown }>(logger, message, "failures", everyMs, now);
  return (err) => warn({ err });
}
