// Readings of a service's own metrics (GET /metrics.json, prom-client's JSON) to measure a phase between two of them.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A service's own series (GET /metrics.json). */
export async function samples(base: string): Promise<Sample[]> {
  const res = await fetch(`${base}/metrics.json`, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) throw new Error(`${base}/metrics.json: HTTP ${res.status}`);
  return (await res.json()) as Sample[];
}

export const total = (s: Sample[], name: string) => s.filter((x) => x.name === name).reduce((sum, x) => sum + x.value, 0);

/** The cumulative buckets of a histogram (the series with `labels`, if given), by upper bound. */
export function buckets(s: Sample[], name: string, labels: Record<string, string> = {}): Map<number, number> {
  const out = new Map<number, number>();
  const matches = (x: Sample) => Object.entries(labels).every(([k, v]) => x.labels[k] === v);
  for (const x of s) if (x.name === `${name}_bucket` && matches(x)) out.set(x.labels.le === "+Inf" ? Infinity : Number(x.labels.le), x.value);
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
