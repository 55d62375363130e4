import { toBinary } from "@bufbuild/protobuf";
import { InterestEmbeddingSchema, type InterestEmbedding } from "@recsys/contracts/events/v1/events";
import { userEventMessageId } from "./message-ids.js";
import type { Topology } from "./topology.js";

/**
 * A stated interest's embedding as it goes to INTEREST_EMBEDDINGS: on its user's partition, keyed by user and event. The embedder
 * publishes it; ingest counts its bytes against the user's budget before the embedder has made it, from the same message.
 */
export function interestEmbeddingMessage(topology: Topology, partition: number, e: InterestEmbedding): { subject: string; payload: Uint8Array; msgID: string } {
  return {
    subject: topology.interestEmbeddingsSubject(partition),
    payload: toBinary(InterestEmbeddingSchema, e),
    msgID: userEventMessageId("interest", e.userid, e.eventId),
  };
}
