import { commonEnv, port, positiveInt, readConfig, z } from "@recsys/config";
import { connectBus, natsAuthFrom, StreamFill, streamLimitsFrom } from "@recsys/bus";
import { createLogger } from "@recsys/logging";
import { onShutdown, serviceTokenFor, startRpcServer } from "@recsys/server";
import { ingestRoutes } from "./handlers.js";
import { EventPublisher } from "./publisher.js";
import { ClickBudget } from "./budget.js";
import { DEFAULT_USER_ENGAGEMENT_BUDGET_BYTES, EngagementBudget, maxEngagementCost } from "./engagement-budget.js";
import { CLICK_BUDGET_WINDOW_MS, DEFAULT_MAX_CLOCK_SKEW_MS, DEFAULT_USER_CLICK_BUDGET } from "@recsys/validation";

const config = readConfig(
  z.object({
    ...commonEnv,
    INGEST_PORT: port(50051),
    // The most clicks of one user within the co-visit window of each other; the same setting for covisit.
    USER_CLICK_BUDGET: positiveInt(DEFAULT_USER_CLICK_BUDGET),
    // The most bytes of likes and stated interests of one user an hour (as ENGAGEMENT and INTEREST_EMBEDDINGS store them).
    USER_ENGAGEMENT_BUDGET_BYTES: positiveInt(DEFAULT_USER_ENGAGEMENT_BUDGET_BYTES),
    // The embeddings' dimension, as profile's: a stated interest's budget counts its embedding, which the embedder publishes.
    EMBEDDING_DIMENSION: positiveInt(384),
    // How far ahead of this clock an event's time may be; later ones are refused.
    MAX_CLOCK_SKEW_MS: z.coerce.number().int().min(0).default(DEFAULT_MAX_CLOCK_SKEW_MS),
    // How long DeleteUser and SetPageVisibility wait for the consumers to apply them before answering with those still pending.
    APPLY_WAIT_MS: positiveInt(10_000),
  }),
);
const logger = createLogger("ingest");
if (config.USER_ENGAGEMENT_BUDGET_BYTES < maxEngagementCost(config.EMBEDDING_DIMENSION)) {
  throw new Error(
    `USER_ENGAGEMENT_BUDGET_BYTES must be at least ${maxEngagementCost(config.EMBEDDING_DIMENSION)}, what the longest interest and its embedding take`,
  );
}
const bus = await connectBus({
  url: config.NATS_URL,
  name: "ingest",
  namespace: config.RECSYS_NAMESPACE,
  logger,
  auth: natsAuthFrom(config),
  ackWaitMs: config.BUS_ACK_WAIT_MS,
  limits: streamLimitsFrom(config),
});
const fill = new StreamFill(
  bus,
  {
    [bus.topology.clicksStream]: config.CLICKS_MAX_BYTES,
    [bus.topology.contentStream]: config.CONTENT_MAX_BYTES,
    [bus.topology.engagementStream]: config.ENGAGEMENT_MAX_BYTES,
    // Written by the embedder, read here: while one is full, the pages or interests that would add to it are refused.
    [bus.topology.embeddingsStream]: config.EMBEDDINGS_MAX_BYTES,
    [bus.topology.interestEmbeddingsStream]: config.INTEREST_EMBEDDINGS_MAX_BYTES,
    [bus.topology.visibilityStream]: config.VISIBILITY_MAX_BYTES,
  },
  logger,
);
fill.start();
const publisher = new EventPublisher(bus, config.PARTITIONS, fill);
const server = await startRpcServer({
  name: "ingest",
  host: config.HOST,
  serviceToken: serviceTokenFor(config, "ingest", logger),
  port: config.INGEST_PORT,
  routes: ingestRoutes(
    publisher,
    logger,
    {
      maxClockSkewMs: config.MAX_CLOCK_SKEW_MS,
      budget: new ClickBudget(config.USER_CLICK_BUDGET, CLICK_BUDGET_WINDOW_MS),
      engagementBudget: new EngagementBudget(config.USER_ENGAGEMENT_BUDGET_BYTES),
      embeddingDimension: config.EMBEDDING_DIMENSION,
    },
    { bus, waitMs: config.APPLY_WAIT_MS },
  ),
  healthy: () => bus.connected(),
  problems: () => fill.problems(),
  logger,
});
onShutdown(logger, async () => {
  fill.stop();
  await server.close();
  await bus.close();
});
