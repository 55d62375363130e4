import { connectBus, consumerNames, CrashAfterEffects, natsAuthFrom, streamLimitsFrom, warnIfHeadGone } from "@recsys/bus";
import { commonEnv, consumerEnv, port, positiveInt, readConfig, z } from "@recsys/config";
import { createLogger } from "@recsys/logging";
import { visitFilter } from "@recsys/validation";
import { DependencyHealth, timeCalls } from "@recsys/metrics";
import { onShutdown, serviceTokenFor, startRpcServer } from "@recsys/server";
import { DEFAULT_CLICKS_PER_CALL, runClickConsumer, runEmbeddingConsumer, runInterestConsumer, runLikeConsumer, runVisibilityConsumer } from "./consumers.js";
import { profileRoutes } from "./handlers.js";
import { migrateWhenReachable } from "./migrations.js";
import { ProfileStore } from "./pg-store.js";
import { createPool, schemaFor } from "./pool.js";
import { startPruning } from "./pruning.js";
import { DEFAULT_DEDUP_RETENTION_MS } from "./types.js";

const config = readConfig(
  z.object({
    ...commonEnv,
    ...consumerEnv,
    PROFILE_PORT: port(50054),
    // The role profile works as: with MIGRATION_DATABASE_URL of another role, it only reads and
    // writes rows (the migrations grant it that and nothing more).
    DATABASE_URL: z.string().min(1).default("postgresql://postgres@127.0.0.1:5432/test"),
    // The role that owns the schema and runs the migrations at start; empty: DATABASE_URL's.
    MIGRATION_DATABASE_URL: z.string().default(""),
    // A role that may only read profile's tables (the gateway's, for SimilarContent), granted so by the migrations; empty: none.
    PG_READER_ROLE: z.string().default(""),
    // A streaming replica of DATABASE_URL's server that the queries read from; empty: they read the primary. Erasures and hidings
    // are acked only once the replica has replayed them, so DeleteUser and HidePage answer when reads there see them.
    READ_DATABASE_URL: z.string().default(""),
    // Consumers write on a pool of their own; queries read on another, so neither can starve the other.
    PG_POOL_MAX: positiveInt(8),
    PG_WRITE_TIMEOUT_MS: positiveInt(60_000),
    PG_QUERY_POOL_MAX: positiveInt(8),
    PG_QUERY_TIMEOUT_MS: positiveInt(5_000),
    PROFILE_CONCURRENCY: positiveInt(8),
    // Up to 256 clicks a call of apply_clicks (and up to 256 messages a batch), two batches at once:
    // profile's catch-up over the reference clicks peaked there (about 20,000 clicks/s, 31-32 us of
    // profile and as much of PostgreSQL CPU a click); larger calls gained nothing, smaller ones or
    // four batches at once cost more CPU a click.
    PROFILE_CLICK_BATCH: positiveInt(DEFAULT_CLICKS_PER_CALL),
    PROFILE_CLICK_CONCURRENCY: positiveInt(2),
    // A click that finds the click consumer caught up waits this long (the clicks arriving meanwhile go with it), so that its
    // interests are written after the click's acknowledgement and covisit's count rather than beside them on the same cores.
    PROFILE_CLICK_LINGER_MS: z.coerce.number().int().min(0).max(1_000).default(50),
    EMBEDDING_DIMENSION: positiveInt(384),
    // Applied event ids are kept this long in event time behind their user's latest event of the
    // kind; older events are refused as expired (dead-lettered). As covisit's.
    DEDUP_RETENTION_MS: positiveInt(DEFAULT_DEDUP_RETENTION_MS),
    // A click parked this long (its page never came) is dropped, with its id.
    PARKED_CLICK_MAX_AGE_MS: positiveInt(7 * 24 * 3600_000),
    // How often both are pruned.
    PRUNE_INTERVAL_MS: positiveInt(10 * 60_000),
  }),
);
const logger = createLogger("profile");
const schema = schemaFor(config.RECSYS_NAMESPACE);
const pool = createPool({ databaseUrl: config.DATABASE_URL, schema, max: config.PG_POOL_MAX, statementTimeoutMs: config.PG_WRITE_TIMEOUT_MS, logger });
const queryPool = createPool({
  databaseUrl: config.READ_DATABASE_URL || config.DATABASE_URL,
  schema,
  max: config.PG_QUERY_POOL_MAX,
  statementTimeoutMs: config.PG_QUERY_TIMEOUT_MS,
  logger,
});
// Migrations run without a statement timeout, on a connection of their own.
const migrationPool = createPool({ databaseUrl: config.MIGRATION_DATABASE_URL || config.DATABASE_URL, schema, max: 1, statementTimeoutMs: 0, logger });
const applied = await migrateWhenReachable(migrationPool, pool, schema, config.EMBEDDING_DIMENSION, logger, config.PG_READER_ROLE || undefined);
await migrationPool.end();
logger.info({ schema, applied }, "migrations up to date");
const store = timeCalls(new ProfileStore(pool, config.DEDUP_RETENTION_MS, config.READ_DATABASE_URL ? queryPool : undefined), "postgres");
const queries = timeCalls(new ProfileStore(queryPool, config.DEDUP_RETENTION_MS), "postgres");
const bus = await connectBus({
  url: config.NATS_URL,
  name: "profile",
  namespace: config.RECSYS_NAMESPACE,
  logger,
  auth: natsAuthFrom(config),
  ackWaitMs: config.BUS_ACK_WAIT_MS,
  limits: streamLimitsFrom(config),
});

// A profile without its durable on a stream whose retention took its first messages starts from there: those events are kept by
// the archive only (stated interests' embeddings nowhere: the embedder made them), and profile has no rebuild from it. Said, not
// refused: the newer events still make interests and likes.
for (const [stream, durable, age, what] of [
  [bus.topology.clicksStream, consumerNames("profile", "clicks").durable, "CLICKS_MAX_AGE_MS", "interests and histories start with the clicks"],
  [bus.topology.engagementStream, consumerNames("profile", "likes").durable, "ENGAGEMENT_MAX_AGE_MS", "likes start with the events"],
  [
    bus.topology.interestEmbeddingsStream,
    consumerNames("profile", "interest-embeddings").durable,
    "INTEREST_EMBEDDINGS_MAX_AGE_MS",
    "stated interests start with the embeddings",
  ],
] as const)
  await warnIfHeadGone(bus, logger, stream, durable, age, what);
const postgresWrites = new DependencyHealth("postgres");
const server = await startRpcServer({
  name: "profile",
  host: config.HOST,
  serviceToken: serviceTokenFor(config, "profile", logger),
  port: config.PROFILE_PORT,
  routes: profileRoutes(queries, bus),
  healthy: async () => bus.connected() && !postgresWrites.failing && (await queries.ping().catch(() => false)),
  problems: () => (postgresWrites.problem ? [postgresWrites.problem] : []),
  logger,
});
const stopConsuming = new AbortController();
const consumerOptions = {
  bus,
  store,
  postgres: postgresWrites,
  logger,
  concurrency: config.PROFILE_CONCURRENCY,
  crashAfterEffects: new CrashAfterEffects(config.RECSYS_CRASH_AFTER_EFFECTS),
  signal: stopConsuming.signal,
};
const consuming = Promise.all([
  runEmbeddingConsumer({ ...consumerOptions, dimension: config.EMBEDDING_DIMENSION }),
  runClickConsumer({
    ...consumerOptions,
    concurrency: config.PROFILE_CLICK_CONCURRENCY,
    maxBatch: config.PROFILE_CLICK_BATCH,
    clicksPerCall: config.PROFILE_CLICK_BATCH,
    lingerMs: config.PROFILE_CLICK_LINGER_MS,
    isVisit: visitFilter(config.VISIT_EVENTS),
  }),
  runLikeConsumer(consumerOptions),
  runInterestConsumer({ ...consumerOptions, dimension: config.EMBEDDING_DIMENSION }),
  runVisibilityConsumer(consumerOptions),
]);
consuming.catch((err: unknown) => {
  logger.fatal({ err: String(err) }, "consumer failed");
  process.exit(1);
});

const pruning = startPruning({ store, logger, intervalMs: config.PRUNE_INTERVAL_MS, parkedClickMaxAgeMs: config.PARKED_CLICK_MAX_AGE_MS });

onShutdown(logger, async () => {
  pruning.stop();
  stopConsuming.abort();
  await consuming;
  await server.close();
  await bus.close();
  await Promise.all([pool.end(), queryPool.end()]);
});
