import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { consumerNames, consumerProgress, type Bus } from "@recsys/bus";
import { EmbedderService } from "@recsys/contracts/embedder/v1/embedder";
import type { Logger } from "@recsys/logging";
import { checkText, FieldError } from "@recsys/validation";
import { QueueFullError, type TextEmbedder } from "./batcher.js";
import { numbers } from "./numbers.js";

export const MAX_TEXTS_PER_CALL = 256;

/** The embedder's RPCs over `model`: its queue, and the name and dimension its answers give. */
export function embedderRoutes(model: TextEmbedder & { name: string; dimension: number }, bus: Bus, logger: Logger) {
  return (router: ConnectRouter) =>
    router.service(EmbedderService, {
      async embed(req) {
        if (req.texts.length === 0) throw new ConnectError("texts: must not be empty", Code.InvalidArgument);
        if (req.texts.length > MAX_TEXTS_PER_CALL) {
          throw new ConnectError(`texts: at most ${MAX_TEXTS_PER_CALL} per call, got ${req.texts.length}`, Code.InvalidArgument);
        }
        req.texts.forEach((t, i) => {
          try {
            checkText(t, `texts[${i}]`, true);
          } catch (err) {
            if (err instanceof FieldError) throw err.toConnectError();
            throw err;
          }
        });
        let vectors: Float32Array[];
        try {
          vectors = await model.embed(req.texts);
        } catch (err) {
          if (err instanceof QueueFullError) {
            logger.warn({ queued: err.waiting, asked: err.asked }, "embed refused: queue full");
            throw new ConnectError(err.message, Code.ResourceExhausted);
          }
          throw err;
        }
        return { embeddings: vectors.map((v) => ({ values: numbers(v) })), model: model.name, dimension: model.dimension };
      },
      async progress() {
        const [content, interests, embeddings, interestEmbeddings] = await Promise.all([
          consumerProgress(bus, bus.topology.contentStream, consumerNames("embedder", "content").durable),
          consumerProgress(bus, bus.topology.engagementStream, consumerNames("embedder", "stated-interests").durable),
          bus.jsm.streams.info(bus.topology.embeddingsStream),
          bus.jsm.streams.info(bus.topology.interestEmbeddingsStream),
        ]);
        return {
          contentAckFloor: content.ackFloor,
          embeddingsLastSequence: BigInt(embeddings.state.last_seq),
          queued: BigInt(model.queued),
          model: model.name,
          dimension: model.dimension,
          interestsAckFloor: interests.ackFloor,
          interestEmbeddingsLastSequence: BigInt(interestEmbeddings.state.last_seq),
        };
      },
    });
}
