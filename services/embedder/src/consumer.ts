import {
  consumerNames,
  PublishFailedError,
  StreamReadFailedError,
  runDurableConsumer,
  StreamFullError,
  type Bus,
  type CrashAfterEffects,
  type Disposition,
  type StreamFill,
} from "@recsys/bus";
import type { Logger } from "@recsys/logging";
import { QueueFullError } from "./batcher.js";
import { embedPageMessage, jetStreamEmbeddingsLog } from "./content.js";

export interface ContentStats {
  embedded: number;
  stale: number;
  undecodable: number;
}

/**
 * Consumes CONTENT with a durable consumer shared by every embedder replica: each page goes through
 * the same batching queue as the RPC, and is acked after its embedding is stored in EMBEDDINGS.
 */
export function runContentConsumer(opts: {
  bus: Bus;
  embed: (text: string) => Promise<Float32Array>;
  model: string;
  logger: Logger;
  concurrency: number;
  stats: ContentStats;
  /** EMBEDDINGS' fill: a full stream holds pages back (retried) instead of letting JetStream trim it. */
  fill?: StreamFill;
  crashAfterEffects?: CrashAfterEffects;
  signal: AbortSignal;
}) {
  const log = jetStreamEmbeddingsLog(opts.bus, opts.fill);
  return runDurableConsumer({
    bus: opts.bus,
    stream: opts.bus.topology.contentStream,
    ...consumerNames("embedder", "content"),
    filterSubject: opts.bus.topology.contentSubjects,
    concurrency: opts.concurrency,
    crashAfterEffects: opts.crashAfterEffects,
    logger: opts.logger,
    signal: opts.signal,
    async handle(m): Promise<Disposition> {
      try {
        const v = await embedPageMessage(m.data, { log, embed: opts.embed, model: opts.model });
        if (v.status === "undecodable") {
          opts.stats.undecodable++;
          return { kind: "dead-letter", cause: "undecodable", reason: `undecodable: ${v.error}` };
        }
        if (v.status === "stale") opts.stats.stale++;
        else opts.stats.embedded++;
        return { kind: "ack" };
      } catch (err) {
        // The RPC has the queue full: wait for it to drain rather than compete.
        if (err instanceof QueueFullError) return { kind: "retry", delayMs: 200, reason: err.message };
        return busFailure(err);
      }
    },
  });
}

/**
 * A publish or a read of a stream that failed, or a full stream, is waited out (retried with backoff for as long as it lasts),
 * never dead-lettered; anything else is thrown (a poison message after its deliveries).
 */
export function busFailure(err: unknown): Disposition {
  if (err instanceof StreamFullError || err instanceof PublishFailedError || err instanceof StreamReadFailedError)
    return { kind: "retry", reason: err.message };
  throw err;
}
