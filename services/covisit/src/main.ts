import { connectBus, CrashAfterEffects, headGoneBeforeConsumer, natsAuthFrom, streamLimitsFrom } from "@recsys/bus";
import { readConfig } from "@recsys/config";
import { createLogger } from "@recsys/logging";
import { visitFilter } from "@recsys/validation";
import { covisitConfig, storeFrom } from "./config.js";
import { connectRedis } from "./redis-store.js";
import { DependencyHealth, timeCalls } from "@recsys/metrics";
import { onShutdown, serviceTokenFor, startRpcServer } from "@recsys/server";
import { adoptSingleDurable, clickDurables, clicksConsumer, consumerNeverDelivered, runClickConsumer, type ConsumerStats } from "./consumer.js";
import { covisitRoutes } from "./handlers.js";
import { runVisibilityConsumer, visibilityCaughtUp, visibilityConsumerExists } from "./visibility-consumer.js";

const config = readConfig(covisitConfig);
// An id is forgotten DEDUP_RETENTION_MS behind its user's newest click; a click that old must be
// late, or a redelivery of it would count again.
if (config.ALLOWED_LATENESS_MS >= config.DEDUP_RETENTION_MS) {
  throw new Error(
    `invalid configuration: ALLOWED_LATENESS_MS (${config.ALLOWED_LATENESS_MS}) must be less than DEDUP_RETENTION_MS (${config.DEDUP_RETENTION_MS})`,
  );
}
const logger = createLogger("covisit");
const redis = connectRedis(
  config.REDIS_URL,
  {
    enableAutoPipelining: true,
    maxRetriesPerRequest: null,
    retryStrategy: (attempt) => Math.min(5_000, attempt * 200),
  },
  config.REDIS_CLUSTER,
);
redis.on("error", (err) => logger.warn({ err: String(err) }, "redis"));
// An evicting Redis would drop counts (or the marker) silently when full; noeviction refuses the
// write instead, and covisit waits (NOT_SERVING) until memory is freed. Read from INFO, which
// covisit's Redis user may run (CONFIG it may not; deploy/compose.yaml), and a managed Redis answers.
const policy = await redis.info("memory").then(
  (info) => /^maxmemory_policy:(\S+)/m.exec(info)?.[1],
  (err: unknown) => void logger.warn({ err: String(err) }, "cannot read Redis' maxmemory-policy: make sure it is noeviction, or counts may be lost"),
);
if (policy && policy !== "noeviction") logger.error({ policy }, "Redis evicts keys when full: run it with maxmemory-policy noeviction, or counts may be lost");
const store = timeCalls(storeFrom(redis, config), "redis");
const bus = await connectBus({
  url: config.NATS_URL,
  name: "covisit",
  namespace: config.RECSYS_NAMESPACE,
  logger,
  auth: natsAuthFrom(config),
  ackWaitMs: config.BUS_ACK_WAIT_MS,
  limits: streamLimitsFrom(config),
});
// A covisit without durables on a CLICKS whose retention took its first messages would count from the middle: the rebuild applies
// those from the archive and creates the durables after them.
const firstHeld = await headGoneBeforeConsumer(bus, bus.topology.clicksStream, [
  clicksConsumer.durable,
  ...clickDurables(bus, config.PARTITIONS).map((d) => d.durable),
]);
if (firstHeld !== undefined) {
  logger.fatal(
    { stream: bus.topology.clicksStream, firstSeq: firstHeld },
    `${bus.topology.clicksStream} no longer holds its messages 1-${firstHeld - 1} (CLICKS_MAX_AGE_MS) and covisit has not consumed it yet: counting from ${firstHeld} would leave their co-visits out. Run \`pnpm covisit:rebuild\` first: it applies them from the archive`,
  );
  await bus.close();
  process.exit(1);
}
const stats: ConsumerStats = { applied: 0, duplicates: 0, erasures: 0, late: 0, overBudget: 0, undecodable: 0 };
// Counts start with the consumer's first delivery. Past it, a missing marker means Redis lost them:
// nothing is applied or answered until `pnpm covisit:rebuild` replays CLICKS.
if (await consumerNeverDelivered(bus, config.PARTITIONS)) await store.markFirstClick();
else if (!(await store.intact())) logger.error("Redis lost the co-visit counts: not applying clicks until `pnpm covisit:rebuild`");
await adoptSingleDurable(bus, config.PARTITIONS, logger);
const redisWrites = new DependencyHealth("redis");
const crashAfterEffects = new CrashAfterEffects(config.RECSYS_CRASH_AFTER_EFFECTS);
const stopConsuming = new AbortController();

// A new VISIBILITY durable (a first start, or after `pnpm covisit:rebuild` deleted it with Redis' keys) reads the compacted stream
// from its first message; covisit serves once every url's latest state is applied, so no hidden page is listed meanwhile.
const visibilityWasRead = await visibilityConsumerExists(bus);
const consumingVisibility = runVisibilityConsumer({
  bus,
  store,
  redis: redisWrites,
  logger,
  concurrency: config.COVISIT_CONCURRENCY,
  crashAfterEffects,
  signal: stopConsuming.signal,
});
consumingVisibility.catch((err: unknown) => {
  logger.fatal({ err: String(err) }, "visibility consumer failed");
  process.exit(1);
});
if (!visibilityWasRead) {
  logger.info({ stream: bus.topology.visibilityStream }, "reading every page's visibility before serving");
  await visibilityCaughtUp(bus, logger, stopConsuming.signal);
}
// From here readers of these counts in other processes (the gateway) may answer from them too.
if (await store.intact()) await store.markServed();

const server = await startRpcServer({
  name: "covisit",
  host: config.HOST,
  serviceToken: serviceTokenFor(config, "covisit", logger),
  port: config.COVISIT_PORT,
  routes: covisitRoutes(
    store,
    bus,
    clickDurables(bus, config.PARTITIONS).map((d) => d.durable),
  ),
  healthy: async () => bus.connected() && redis.status === "ready" && !redisWrites.failing && (await store.intact().catch(() => false)),
  problems: () => (redisWrites.problem ? [redisWrites.problem] : []),
  logger,
});
const consuming = runClickConsumer({
  bus,
  store,
  redis: redisWrites,
  logger,
  partitions: config.PARTITIONS,
  concurrency: config.COVISIT_CONCURRENCY,
  maxBatch: config.COVISIT_MAX_BATCH,
  stats,
  isVisit: visitFilter(config.VISIT_EVENTS),
  crashAfterEffects,
  signal: stopConsuming.signal,
});
consuming.catch((err: unknown) => {
  logger.fatal({ err: String(err) }, "click consumer failed");
  process.exit(1);
});

onShutdown(logger, async () => {
  stopConsuming.abort();
  await Promise.all([consuming, consumingVisibility]);
  await server.close();
  await bus.close();
  redis.disconnect();
});
