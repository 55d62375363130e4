import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@recsys/contracts/analytics/v1/analytics";
import { waitFor } from "@recsys/loadgen/sender";
import { url } from "./stack.js";

// What analytics costs beside the rest: its CPU per click while the reference clicks go in, how long it takes to catch up,
// and how long a closed window takes to reach its store, from its own histogram.

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** analytics' own series (GET /metrics.json). */
async function samples(): Promise<Sample[]> {
  const res = await fetch(`${url.analytics}/metrics.json`, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) throw new Error(`analytics /metrics.json: HTTP ${res.status}`);
  return (await res.json()) as Sample[];
}

const total = (s: Sample[], name: string) => s.filter((x) => x.name === name).reduce((sum, x) => sum + x.value, 0);

/** The cumulative buckets of a histogram, by upper bound. */
function buckets(s: Sample[], name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const x of s) if (x.name === `${name}_bucket`) out.set(x.labels.le === "+Inf" ? Infinity : Number(x.labels.le), x.value);
  return out;
}

/**
 * The q-quantile of the observations between two readings of a histogram, interpolated linearly within its bucket (as Prometheus'
 * histogram_quantile does); undefined without observations. The top bucket answers its lower bound.
 */
export function quantileBetween(before: Map<number, number>, after: Map<number, number>, q: number): number | undefined {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => (after.get(b) ?? 0) - (before.get(b) ?? 0));
  const n = counts.at(-1) ?? 0;
  if (n <= 0) return undefined;
  const rank = q * n;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i]! < rank) continue;
    const lower = i === 0 ? 0 : bounds[i - 1]!;
    if (bounds[i] === Infinity) return lower;
    const below = i === 0 ? 0 : counts[i - 1]!;
    const inBucket = counts[i]! - below;
    return lower + (bounds[i]! - lower) * (inBucket === 0 ? 1 : (rank - below) / inBucket);
  }
  return bounds.at(-2);
}

const LAG = "recsys_analytics_emission_lag_seconds";

/** A reading of analytics to measure a phase from. */
export async function analyticsReading() {
  const s = await samples();
  return { cpuSeconds: total(s, "process_cpu_seconds_total"), lag: buckets(s, LAG), atMs: performance.now() };
}

/** Waits until analytics has applied every CLICKS message up to `lastSequence` (a fresh analytics first reads the whole stream). */
export async function waitForAnalytics(lastSequence: bigint) {
  const analytics = createClient(AnalyticsService, createGrpcTransport({ baseUrl: url.analytics }));
  let floor = 0n;
  await waitFor(
    async () => (floor = (await analytics.progress({})).ackFloorStreamSequence) >= lastSequence,
    1_800_000,
    async () => `analytics has applied up to stream sequence ${floor}, not ${lastSequence},`,
  );
}

/** Waits until analytics has applied every CLICKS message up to `lastSequence`; then its CPU per click since `from` and the time it took. */
export async function analyticsCaughtUp(from: Awaited<ReturnType<typeof analyticsReading>>, lastSequence: bigint, clicks: number) {
  await waitForAnalytics(lastSequence);
  const to = await analyticsReading();
  return { cpuMicrosPerClick: ((to.cpuSeconds - from.cpuSeconds) * 1e6) / clicks, seconds: (to.atMs - from.atMs) / 1000 };
}

/** Emission lag quantiles (ms) of the windows closed between two readings. */
export function emissionLag(from: Awaited<ReturnType<typeof analyticsReading>>, to: Awaited<ReturnType<typeof analyticsReading>>) {
  const ms = (q: number) => {
    const s = quantileBetween(from.lag, to.lag, q);
    return s === undefined ? null : Math.round(s * 1000 * 10) / 10;
  };
  return { p50Ms: ms(0.5), p99Ms: ms(0.99), windows: (to.lag.get(Infinity) ?? 0) - (from.lag.get(Infinity) ?? 0) };
}
