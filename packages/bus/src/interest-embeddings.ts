import { toBinary } from "@bufbuild/protobuf";
import { InterestEmbeddingSchema, type InterestEmbedding } from "@recsys/contracts/events/v1/events";
import type { Bus } from "./connection.js";
import { userEventMessageId } from "./message-ids.js";
import { PublishFailedError, StreamFill } from "./stream-fill.js";
import type { Topology } from "./topology.js";

/**
 * A stated interest's embedding as it goes to INTEREST_EMBEDDINGS: on its user's partition, keyed by user and event. The embedder
 * publishes it (`publishInterestEmbedding`); ingest counts its bytes against the user's budget before the embedder has made it.
 */
export function interestEmbeddingMessage(topology: Topology, partition: number, e: InterestEmbedding): { subject: string; payload: Uint8Array; msgID: string } {
  return {
    subject: topology.interestEmbeddingsSubject(partition),
    payload: toBinary(InterestEmbeddingSchema, e),
    msgID: userEventMessageId("interest", e.userid, e.eventId),
  };
}

/** Publishes `e` as `interestEmbeddingMessage` makes it, within the stream's `fill` if given; a failure is a PublishFailedError. */
export async function publishInterestEmbedding(bus: Bus, partition: number, e: InterestEmbedding, fill?: StreamFill): Promise<void> {
  const out = interestEmbeddingMessage(bus.topology, partition, e);
  const stream = bus.topology.interestEmbeddingsStream;
  const giveBack = fill?.take(stream, StreamFill.sizeOf([out]));
  try {
    await bus.publish(out.subject, out.payload, { msgID: out.msgID, timeout: 10_000 });
  } catch (err) {
    giveBack?.();
    throw new PublishFailedError(stream, err);
  }
}
