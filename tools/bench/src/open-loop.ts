import { setTimeout as sleep } from "node:timers/promises";
import { build as buildHistogram } from "hdr-histogram-js";

export interface LatencySummary {
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Requests completed per second over the run. */
  achievedPerSecond: number;
}

/**
 * Sends requests at a fixed rate whatever the answers do: request i is due at start + i / rate and its latency runs from then,
 * so a stall counts for every request due meanwhile (no coordinated omission); one a timer sent early counts from when it went out.
 */
export async function runOpenLoop(opts: {
  rate: number;
  durationMs: number;
  request: (i: number) => Promise<void>;
  now?: () => number;
}): Promise<LatencySummary> {
  const now = opts.now ?? (() => performance.now());
  const histogram = buildHistogram({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const total = Math.max(1, Math.round((opts.rate * opts.durationMs) / 1000));
  const start = now();
  let errors = 0;
  const inFlight: Array<Promise<void>> = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / opts.rate;
    const wait = due - now();
    if (wait > 1) await sleep(wait);
    const from = Math.min(due, now());
    inFlight.push(
      opts.request(i).then(
        () => histogram.recordValue(Math.max(1, Math.round((now() - from) * 1000))),
        () => {
          errors++;
        },
      ),
    );
  }
  await Promise.all(inFlight);
  const elapsed = now() - start;
  return {
    requests: total,
    errors,
    p50Ms: histogram.getValueAtPercentile(50) / 1000,
    p99Ms: histogram.getValueAtPercentile(99) / 1000,
    maxMs: histogram.maxValue / 1000,
    achievedPerSecond: ((total - errors) * 1000) / Math.max(elapsed, 1),
  };
}

/** The middle of `items` by `by` (of an even count, the lower of the two middle ones): the median of a few runs. */
export function median<T>(items: readonly T[], by: (item: T) => number): T {
  return items.slice().sort((a, b) => by(a) - by(b))[Math.floor((items.length - 1) / 2)]!;
}

/** p50/p99 of values in milliseconds, from an HDR histogram (microsecond resolution). */
export function percentiles(valuesMs: number[]): { p50Ms: number; p99Ms: number; maxMs: number } {
  const h = buildHistogram({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
  for (const v of valuesMs) h.recordValue(Math.max(1, Math.round(v * 1000)));
  return { p50Ms: h.getValueAtPercentile(50) / 1000, p99Ms: h.getValueAtPercentile(99) / 1000, maxMs: h.maxValue / 1000 };
}
