import { create, fromBinary } from "@bufbuild/protobuf";
import { consumerNames, publishInterestEmbedding, runDurableConsumer, type StreamFill, type Bus, type CrashAfterEffects, type Disposition } from "@recsys/bus";
import { InterestEmbeddingSchema, StatedInterestSchema, type InterestEmbedding, type StatedInterest } from "@recsys/contracts/events/v1/events";
import type { Logger } from "@recsys/logging";
import { QueueFullError } from "./batcher.js";
import { busFailure } from "./consumer.js";
import { numbers } from "./numbers.js";

/**
 * The effect of one stated interest: embed its text and publish the vector, keyed by the interest's user and event_id.
 * A redelivery publishes the same message id again, which the stream's duplicate window drops and profile's applied events ignore after it.
 */
export async function embedInterestMessage(
  data: Uint8Array,
  deps: { embed: (text: string) => Promise<Float32Array>; publish: (e: InterestEmbedding) => Promise<void>; model: string },
): Promise<Disposition> {
  let s: StatedInterest;
  try {
    s = fromBinary(StatedInterestSchema, data);
  } catch (err) {
    return { kind: "dead-letter", cause: "undecodable", reason: `undecodable: ${String(err)}` };
  }
  if (!s.eventId || !s.userid || !s.text.trim()) return { kind: "dead-letter", cause: "undecodable", reason: "undecodable: missing event_id, userid or text" };
  let vector: Float32Array;
  try {
    vector = await deps.embed(s.text);
  } catch (err) {
    if (err instanceof QueueFullError) return { kind: "retry", delayMs: 200, reason: err.message };
    throw err;
  }
  try {
    await deps.publish(
      create(InterestEmbeddingSchema, {
        eventId: s.eventId,
        userid: s.userid,
        embedding: numbers(vector),
        sourceTimeMs: s.sourceTimeMs,
        model: deps.model,
        // profile forgets an interest accepted before its user's erasure by this time.
        ingestTimeMs: s.ingestTimeMs,
      }),
    );
  } catch (err) {
    return busFailure(err);
  }
  return { kind: "ack" };
}

/** Stated interests from ENGAGEMENT into INTEREST_EMBEDDINGS, through the same batching queue as the RPC. */
export function runInterestConsumer(opts: {
  bus: Bus;
  embed: (text: string) => Promise<Float32Array>;
  model: string;
  logger: Logger;
  concurrency: number;
  /** INTEREST_EMBEDDINGS' fill: a full stream holds interests back (retried). */
  fill?: StreamFill;
  crashAfterEffects?: CrashAfterEffects;
  signal: AbortSignal;
}) {
  const { bus } = opts;
  return runDurableConsumer({
    bus,
    stream: bus.topology.engagementStream,
    ...consumerNames("embedder", "stated-interests"),
    filterSubject: bus.topology.statedInterestsSubjects,
    concurrency: opts.concurrency,
    crashAfterEffects: opts.crashAfterEffects,
    logger: opts.logger,
    signal: opts.signal,
    handle: (m) =>
      embedInterestMessage(m.data, {
        embed: opts.embed,
        model: opts.model,
        // The stated interest's own subject suffix (its user partition) keeps per-user order.
        publish: (e) => publishInterestEmbedding(bus, Number(m.subject.slice(m.subject.lastIndexOf(".") + 1)), e, opts.fill),
      }),
  });
}
