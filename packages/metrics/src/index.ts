import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

export { Counter, Gauge, Histogram, Registry };

/** One registry per process, served at GET /metrics on the service's port. */
export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** One series at one moment: `x_bucket`, `x_sum` and `x_count` for a histogram's parts. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every series of a registry as plain samples (GET /metrics.json), from prom-client's own JSON. */
export async function metricSamples(from: Registry = registry): Promise<Sample[]> {
  const metrics = await from.getMetricsAsJSON();
  return metrics.flatMap((metric) =>
    metric.values.map((v) => ({
      name: "metricName" in v && typeof v.metricName === "string" ? v.metricName : metric.name,
      labels: Object.fromEntries(Object.entries(v.labels).map(([k, l]) => [k, String(l)])),
      value: v.value,
    })),
  );
}

/** Every series of this process carries `service`. */
export function setServiceName(service: string): void {
  registry.setDefaultLabels({ service });
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export const rpcDuration = new Histogram({
  name: "recsys_rpc_duration_seconds",
  help: "Time to answer an RPC, by method and status code",
  labelNames: ["method", "code"] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const publishedMessages = new Counter({
  name: "recsys_published_messages_total",
  help: "Messages published to a stream and acknowledged by JetStream (duplicates included)",
  labelNames: ["stream"] as const,
  registers: [registry],
});

export const consumedMessages = new Counter({
  name: "recsys_consumed_messages_total",
  help: "Messages a durable consumer settled, by outcome: ack (applied or found done before), retry (redelivered later), dead_letter",
  labelNames: ["stream", "consumer", "outcome"] as const,
  registers: [registry],
});

export const deadLettered = new Counter({
  name: "recsys_dead_lettered_total",
  help: "Messages this process put in DEAD_LETTERS, by source stream and cause (late, undecodable, poison)",
  labelNames: ["source", "cause"] as const,
  registers: [registry],
});

export const dependencyDuration = new Histogram({
  name: "recsys_dependency_duration_seconds",
  help: "Time of one call to Redis or PostgreSQL, by dependency and operation",
  labelNames: ["dependency", "operation"] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const embedBatchSize = new Histogram({
  name: "recsys_embed_batch_size",
  help: "Texts per model run",
  buckets: [1, 2, 4, 8, 16, 32, 64, 128],
  registers: [registry],
});

export const embedQueueWait = new Histogram({
  name: "recsys_embed_queue_wait_seconds",
  help: "Time a text waited in the batching queue before its model run started",
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export interface ConsumerPosition {
  stream: string;
  consumer: string;
  /** Messages in the stream not yet delivered to the consumer. */
  pending: bigint;
  /** Delivered, not yet acked. */
  ackPending: bigint;
}

const lagProbes: Array<() => Promise<ConsumerPosition>> = [];

/** Consumer lag, read from JetStream when scraped: messages not yet delivered plus not yet acked. */
export const consumerLag = new Gauge({
  name: "recsys_consumer_lag_messages",
  help: "Messages of a stream a durable consumer has not yet settled (pending + unacked), read from JetStream at scrape time",
  labelNames: ["stream", "consumer"] as const,
  registers: [registry],
  async collect() {
    this.reset();
    const positions = await Promise.allSettled(lagProbes.map((probe) => probe()));
    for (const p of positions) {
      if (p.status === "fulfilled") this.set({ stream: p.value.stream, consumer: p.value.consumer }, Number(p.value.pending + p.value.ackPending));
    }
  },
});

const dependencyUp = new Gauge({
  name: "recsys_dependency_up",
  help: "1 while the store a consumer writes to works, 0 while its writes fail and the messages wait for redelivery",
  labelNames: ["dependency"] as const,
  registers: [registry],
});

const dependencyFailures = new Counter({
  name: "recsys_dependency_failures_total",
  help: "Writes to a store that failed and were left for redelivery (retried with backoff for as long as the failure lasts)",
  labelNames: ["dependency"] as const,
  registers: [registry],
});

/**
 * Whether a store (Redis, PostgreSQL) takes our writes: failing from the first failed write until
 * the next one that works. Health reports NOT_SERVING while it fails; the metrics say since when.
 */
export class DependencyHealth {
  private failingSince: number | undefined;
  private lastError = "";

  constructor(readonly dependency: string) {
    dependencyUp.set({ dependency }, 1);
  }
  failed(reason: string): void {
    this.failingSince ??= Date.now();
    this.lastError = reason;
    dependencyUp.set({ dependency: this.dependency }, 0);
    dependencyFailures.inc({ dependency: this.dependency });
  }
  recovered(): void {
    if (this.failingSince === undefined) return;
    this.failingSince = undefined;
    dependencyUp.set({ dependency: this.dependency }, 1);
  }
  get failing(): boolean {
    return this.failingSince !== undefined;
  }
  /** The failure as health details show it, or undefined while the store works. */
  get problem(): string | undefined {
    return this.failingSince === undefined ? undefined : `${this.dependency} failing since ${new Date(this.failingSince).toISOString()}: ${this.lastError}`;
  }
}

export function watchConsumerLag(probe: () => Promise<ConsumerPosition>): void {
  lagProbes.push(probe);
}

/**
 * The same object, each call of a method that returns a promise timed in `recsys_dependency_duration_seconds{dependency, operation=<method>}`:
 * a store's every call to Redis or PostgreSQL, without timing code in each method.
 */
export function timeCalls<T extends object>(target: T, dependency: string): T {
  return new Proxy(target, {
    get(obj, key, receiver) {
      const value = Reflect.get(obj, key, receiver) as unknown;
      if (typeof value !== "function" || typeof key !== "string") return value;
      return (...args: unknown[]) => {
        const result = (value as (...a: unknown[]) => unknown).apply(obj, args);
        if (!(result instanceof Promise)) return result;
        const end = dependencyDuration.startTimer({ dependency, operation: key });
        return result.finally(end);
      };
    },
  });
}
