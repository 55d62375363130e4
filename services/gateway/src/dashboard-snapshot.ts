import type { Sample } from "@recsys/metrics";

export const BACKENDS = ["ingest", "covisit", "embedder", "profile"] as const;
export type BackendName = (typeof BACKENDS)[number];

/** What one backend's port answered at one moment. */
export interface BackendScrape {
  service: BackendName;
  /** GET /healthz answered 200. */
  healthy: boolean;
  /** GET /metrics.json; undefined when it did not answer. */
  metrics?: Sample[];
}

/** What the dashboard shows, sent to the page every second. */
export interface DashboardSnapshot {
  at: string;
  services: Array<{ name: BackendName; healthy: boolean; metrics: boolean; residentBytes: number | null }>;
  clicks: {
    /** Clicks covisit applied to the co-visit counts (duplicates and late clicks not included). */
    applied: number | null;
    appliedPerSecond: number | null;
    /** Clicks ingest published to CLICKS. */
    published: number | null;
    publishedPerSecond: number | null;
  };
  lag: Array<{ service: BackendName; stream: string; consumer: string; messages: number }>;
  /** From analytics (null when it did not answer): clicks by event type and the top urls of the trending window. */
  analytics: DashboardAnalytics | null;
  embedBatches: {
    batches: number;
    texts: number;
    meanSize: number | null;
    /** Batches per size range, not cumulative. */
    buckets: Array<{ label: string; batches: number }>;
  } | null;
}

/**
 * The per-second rate of a counter over the last `windowMs`, from samples taken now and then. A
 * counter that went down was reset (its process restarted) and counts on from zero.
 */
export class CounterRate {
  private history: Array<{ atMs: number; increase: number }> = [];
  private increase = 0;
  private last: number | undefined;

  constructor(private readonly windowMs: number) {}

  /** Records the counter's value (undefined: not read this time) and answers the rate, or null with less than two samples. */
  observe(value: number | undefined, atMs: number): number | null {
    if (value !== undefined) {
      if (this.last !== undefined) this.increase += value >= this.last ? value - this.last : value;
      this.last = value;
      this.history.push({ atMs, increase: this.increase });
    }
    while (this.history.length > 0 && this.history[0]!.atMs < atMs - this.windowMs) this.history.shift();
    if (value === undefined || this.history.length < 2) return null;
    const first = this.history[0]!;
    const newest = this.history[this.history.length - 1]!;
    return newest.atMs > first.atMs ? ((newest.increase - first.increase) * 1000) / (newest.atMs - first.atMs) : null;
  }
}

/** The sum of the samples named `name` whose labels pass `where`; undefined when there are none. */
export function total(samples: Sample[], name: string, where: (labels: Record<string, string>) => boolean = () => true): number | undefined {
  let sum: number | undefined;
  for (const s of samples) if (s.name === name && where(s.labels)) sum = (sum ?? 0) + s.value;
  return sum;
}

/** What analytics said this moment: the trending urls of the last hour and the event mix of the same period. */
export interface DashboardAnalytics {
  from: string;
  to: string;
  events: Array<{ event: string; clicks: number }>;
  trending: Array<{ url: string; clicks: number }>;
}

/** Snapshots from scrapes; keeps the counters' history for their rates. */
export class DashboardState {
  private readonly applied: CounterRate;
  private readonly published: CounterRate;

  constructor(rateWindowMs = 5_000) {
    this.applied = new CounterRate(rateWindowMs);
    this.published = new CounterRate(rateWindowMs);
  }

  next(scrapes: BackendScrape[], atMs: number, analytics: DashboardAnalytics | null = null): DashboardSnapshot {
    const of = (service: BackendName) => scrapes.find((s) => s.service === service)?.metrics;
    const applied = total(of("covisit") ?? [], "recsys_covisit_clicks_total", (l) => l.outcome === "applied");
    const published = total(of("ingest") ?? [], "recsys_published_clicks_total");
    return {
      at: new Date(atMs).toISOString(),
      services: scrapes.map((s) => ({
        name: s.service,
        healthy: s.healthy,
        metrics: s.metrics !== undefined,
        residentBytes: total(s.metrics ?? [], "process_resident_memory_bytes") ?? null,
      })),
      clicks: {
        applied: applied ?? null,
        appliedPerSecond: this.applied.observe(applied, atMs),
        published: published ?? null,
        publishedPerSecond: this.published.observe(published, atMs),
      },
      lag: scrapes
        .flatMap((s) =>
          (s.metrics ?? [])
            .filter((m) => m.name === "recsys_consumer_lag_messages")
            .map((m) => ({ service: s.service, stream: m.labels.stream ?? "", consumer: m.labels.consumer ?? "", messages: m.value })),
        )
        .sort((a, b) => a.service.localeCompare(b.service) || a.consumer.localeCompare(b.consumer) || a.stream.localeCompare(b.stream)),
      analytics,
      embedBatches: batchSizes(of("embedder")),
    };
  }
}

/** recsys_embed_batch_size as batches per size range, from its cumulative buckets. */
export function batchSizes(samples: Sample[] | undefined): DashboardSnapshot["embedBatches"] {
  const batches = total(samples ?? [], "recsys_embed_batch_size_count");
  if (batches === undefined) return null;
  const texts = total(samples ?? [], "recsys_embed_batch_size_sum") ?? 0;
  const cumulative = new Map<number, number>();
  for (const s of samples ?? []) {
    if (s.name !== "recsys_embed_batch_size_bucket" || s.labels.le === undefined) continue;
    const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
    if (!Number.isNaN(le)) cumulative.set(le, (cumulative.get(le) ?? 0) + s.value);
  }
  const bounds = [...cumulative.keys()].sort((a, b) => a - b);
  const buckets = bounds.map((le, i) => {
    const below = i === 0 ? 0 : cumulative.get(bounds[i - 1]!)!;
    return { label: rangeLabel(i === 0 ? undefined : bounds[i - 1], le), batches: cumulative.get(le)! - below };
  });
  return { batches, texts, meanSize: batches > 0 ? texts / batches : null, buckets };
}

/** Batch sizes are whole numbers: (2, 4] reads "3–4", (1, 2] reads "2". */
function rangeLabel(lower: number | undefined, upper: number): string {
  if (upper === Infinity) return lower === undefined ? "all" : `>${lower}`;
  if (lower === undefined) return `≤${upper}`;
  const from = Math.floor(lower) + 1;
  return from >= upper ? String(upper) : `${from}–${upper}`;
}
