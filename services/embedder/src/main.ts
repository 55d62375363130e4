import { fileURLToPath } from "node:url";
import { connectBus, consumerNames, CrashAfterEffects, natsAuthFrom, StreamFill, streamLimitsFrom, warnIfHeadGone } from "@recsys/bus";
import { commonEnv, consumerEnv, port, positiveInt, readConfig, z } from "@recsys/config";
import { createLogger } from "@recsys/logging";
import { onShutdown, serviceTokenFor, startRpcServer } from "@recsys/server";
import { DEFAULT_MAX_BATCH_TOKENS } from "./batcher.js";
import { runContentConsumer, type ContentStats } from "./consumer.js";
import { embedderRoutes, MAX_TEXTS_PER_CALL } from "./handlers.js";
import { runInterestConsumer } from "./interests.js";
import { chooseModelDir } from "./model-dir.js";
import { ModelThread } from "./model-thread.js";

const config = readConfig(
  z.object({
    ...commonEnv,
    ...consumerEnv,
    EMBEDDER_PORT: port(50053),
    EMBEDDER_MODEL_DIR: z.string().optional(),
    EMBEDDER_MINILM_DIR: z.string().default(fileURLToPath(new URL("../../../../shared/models/all-MiniLM-L6-v2", import.meta.url))),
    EMBED_MAX_BATCH: positiveInt(32),
    EMBED_MAX_BATCH_TOKENS: positiveInt(DEFAULT_MAX_BATCH_TOKENS),
    EMBED_MAX_DELAY_MS: z.coerce.number().int().min(0).default(5),
    EMBED_MAX_QUEUE: positiveInt(4_096),
    EMBED_THREADS: positiveInt(2),
    CONTENT_CONCURRENCY: positiveInt(64),
  }),
);
const logger = createLogger("embedder");
const dir = chooseModelDir(config.EMBEDDER_MODEL_DIR, config.EMBEDDER_MINILM_DIR);
// The model, its tokenizer and the batching queue run on a thread of their own; this one serves RPCs and consumes the bus.
const model = await ModelThread.start(
  {
    dir,
    intraOpThreads: config.EMBED_THREADS,
    batcher: {
      maxBatch: config.EMBED_MAX_BATCH,
      maxBatchTokens: config.EMBED_MAX_BATCH_TOKENS,
      maxDelayMs: config.EMBED_MAX_DELAY_MS,
      maxQueue: Math.max(config.EMBED_MAX_QUEUE, MAX_TEXTS_PER_CALL),
    },
  },
  (err) => {
    logger.fatal({ err: String(err) }, "the model thread ended: nothing can be embedded");
    process.exit(1);
  },
);
logger.info({ dir, model: model.name, dimension: model.dimension, maxTokens: model.maxTokens }, "model loaded");
const bus = await connectBus({
  url: config.NATS_URL,
  name: "embedder",
  namespace: config.RECSYS_NAMESPACE,
  logger,
  auth: natsAuthFrom(config),
  ackWaitMs: config.BUS_ACK_WAIT_MS,
  limits: streamLimitsFrom(config),
});
const stats: ContentStats = { embedded: 0, stale: 0, undecodable: 0 };
// An embedder without its durables on a CONTENT or an ENGAGEMENT past its age embeds from there on: the older page versions and
// stated interests are in the archive only (a page's newest embedding stays on EMBEDDINGS). Said, not refused, as profile says it
// of its own durables.
for (const [stream, durable, age, what] of [
  [bus.topology.contentStream, consumerNames("embedder", "content").durable, "CONTENT_MAX_AGE_MS", "page versions are embedded"],
  [bus.topology.engagementStream, consumerNames("embedder", "stated-interests").durable, "ENGAGEMENT_MAX_AGE_MS", "stated interests are embedded"],
] as const)
  await warnIfHeadGone(bus, logger, stream, durable, age, what);

const server = await startRpcServer({
  name: "embedder",
  host: config.HOST,
  serviceToken: serviceTokenFor(config, "embedder", logger),
  port: config.EMBEDDER_PORT,
  routes: embedderRoutes(model, bus, logger),
  healthy: () => bus.connected(),
  logger,
  // 256 texts of 32 KiB each, and the envelope.
  maxRequestBytes: MAX_TEXTS_PER_CALL * 32 * 1024 + 1024 * 1024,
});
// The embedder writes EMBEDDINGS and INTEREST_EMBEDDINGS: full, it holds pages and interests back.
const fill = new StreamFill(
  bus,
  { [bus.topology.embeddingsStream]: config.EMBEDDINGS_MAX_BYTES, [bus.topology.interestEmbeddingsStream]: config.INTEREST_EMBEDDINGS_MAX_BYTES },
  logger,
);
fill.start();
const stopConsuming = new AbortController();
const crashAfterEffects = new CrashAfterEffects(config.RECSYS_CRASH_AFTER_EFFECTS);
const embedOne = async (text: string) => (await model.embed([text]))[0]!;
const consuming = Promise.all([
  runContentConsumer({
    bus,
    embed: embedOne,
    model: model.name,
    logger,
    concurrency: config.CONTENT_CONCURRENCY,
    stats,
    fill,
    crashAfterEffects,
    signal: stopConsuming.signal,
  }),
  runInterestConsumer({
    bus,
    embed: embedOne,
    model: model.name,
    logger,
    concurrency: config.CONTENT_CONCURRENCY,
    fill,
    crashAfterEffects,
    signal: stopConsuming.signal,
  }),
]);
consuming.catch((err: unknown) => {
  logger.fatal({ err: String(err) }, "consumer failed");
  process.exit(1);
});
logger.info(
  { port: server.port, maxBatch: config.EMBED_MAX_BATCH, maxBatchTokens: config.EMBED_MAX_BATCH_TOKENS, maxDelayMs: config.EMBED_MAX_DELAY_MS },
  "embedder ready",
);

onShutdown(logger, async () => {
  fill.stop();
  stopConsuming.abort();
  await consuming;
  await server.close();
  await bus.close();
  await model.close();
  logger.info({ ...stats, ...model.stats }, "embedder stopped");
});
