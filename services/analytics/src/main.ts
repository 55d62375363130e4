import { connectBus, CrashAfterEffects, headGoneBeforeConsumer, natsAuthFrom, streamLimitsFrom } from "@recsys/bus";
import { clicksConsumer, clicksDurable } from "./durable.js";
import { readConfig } from "@recsys/config";
import { analyticsConfig } from "./config.js";
import { createLogger } from "@recsys/logging";
import { DependencyHealth, timeCalls } from "@recsys/metrics";
import { onShutdown, serviceTokenFor, startRpcServer } from "@recsys/server";
import { runClickConsumer } from "./consumer.js";
import { runVisibilityConsumer } from "./visibility.js";
import { runEmitter } from "./emitter.js";
import { analyticsRoutes } from "./handlers.js";
import { createPool, migrateWhenReachable, schemaFor } from "./pg.js";
import { startPruning } from "./pruning.js";
import { AnalyticsReads } from "./reads.js";
import { AnalyticsStore } from "./store.js";
import { WatermarkLog } from "./watermark-log.js";
import { hopWindows } from "./windows.js";

const config = readConfig(analyticsConfig);
const windows = hopWindows(config.WINDOW_SIZE_MS, config.WINDOW_SLIDE_MS);
// A click older than its forgotten id must be late, or a redelivery of it would count again: it is when the ids outlive every open window.
if (config.ALLOWED_LATENESS_MS + config.WINDOW_SIZE_MS > config.DEDUP_RETENTION_MS) {
  throw new Error(
    `invalid configuration: ALLOWED_LATENESS_MS + WINDOW_SIZE_MS (${config.ALLOWED_LATENESS_MS + config.WINDOW_SIZE_MS}) must not exceed DEDUP_RETENTION_MS (${config.DEDUP_RETENTION_MS})`,
  );
}
const logger = createLogger("analytics");
const schema = schemaFor(config.RECSYS_NAMESPACE);
const pool = createPool({ databaseUrl: config.DATABASE_URL, schema, max: config.PG_POOL_MAX, statementTimeoutMs: config.PG_WRITE_TIMEOUT_MS, logger });
const queryPool = createPool({
  databaseUrl: config.DATABASE_URL,
  schema,
  max: config.PG_QUERY_POOL_MAX,
  statementTimeoutMs: config.PG_QUERY_TIMEOUT_MS,
  logger,
});
const migrationPool = createPool({ databaseUrl: config.MIGRATION_DATABASE_URL || config.DATABASE_URL, schema, max: 1, statementTimeoutMs: 0, logger });
const applied = await migrateWhenReachable(migrationPool, pool, schema, logger);
await migrationPool.end();
logger.info({ schema, applied }, "migrations up to date");

const store = timeCalls(new AnalyticsStore(pool, windows), "postgres");
const reads = timeCalls(new AnalyticsReads(queryPool, windows), "postgres");
const bus = await connectBus({
  url: config.NATS_URL,
  name: "analytics",
  namespace: config.RECSYS_NAMESPACE,
  logger,
  auth: natsAuthFrom(config),
  ackWaitMs: config.BUS_ACK_WAIT_MS,
  limits: streamLimitsFrom(config),
});
// An analytics without its durable on a CLICKS whose retention took its first messages would count from the middle: the rebuild
// applies those from the archive and creates the durable after them.
const firstHeld = await headGoneBeforeConsumer(bus, bus.topology.clicksStream, [clicksDurable, clicksConsumer.durable]);
if (firstHeld !== undefined) {
  logger.fatal(
    { stream: bus.topology.clicksStream, firstSeq: firstHeld },
    `${bus.topology.clicksStream} no longer holds its messages 1-${firstHeld - 1} (CLICKS_MAX_AGE_MS) and analytics has not consumed it yet: counting from ${firstHeld} would leave their clicks out of the windows. Run \`pnpm analytics:rebuild\` first: it applies them from the archive`,
  );
  await bus.close();
  process.exit(1);
}
const postgresWrites = new DependencyHealth("postgres");
const emission = new DependencyHealth("emission");
const server = await startRpcServer({
  name: "analytics",
  host: config.HOST,
  serviceToken: serviceTokenFor(config, "analytics", logger),
  port: config.ANALYTICS_PORT,
  routes: analyticsRoutes(store, reads, bus),
  healthy: async () => bus.connected() && !postgresWrites.failing && (await store.ping().catch(() => false)),
  problems: () => [postgresWrites.problem, emission.problem].filter((p): p is string => p !== undefined),
  logger,
});

const stop = new AbortController();
const watermarks = new WatermarkLog();
const emissionOptions = { store, watermarks, logger, latenessMs: config.ALLOWED_LATENESS_MS, emitted: {} };
const running = Promise.all([
  runClickConsumer({
    bus,
    emission: emissionOptions,
    postgres: postgresWrites,
    crashAfterEffects: new CrashAfterEffects(config.RECSYS_CRASH_AFTER_EFFECTS),
    // A publication a few emitter ticks behind is normal; one stuck longer redelivers the erasure later.
    erasureWaitMs: Math.max(10_000, 20 * config.EMIT_INTERVAL_MS),
    lingerMs: config.ANALYTICS_LINGER_MS,
    signal: stop.signal,
  }),
  runVisibilityConsumer({ bus, store, postgres: postgresWrites, logger, signal: stop.signal }),
  runEmitter({
    ...emissionOptions,
    bus,
    health: emission,
    idleMs: config.IDLE_EMIT_MS,
    intervalMs: config.EMIT_INTERVAL_MS,
    crashAfterPublishes: new CrashAfterEffects(config.RECSYS_CRASH_AFTER_PUBLISHES),
    signal: stop.signal,
  }),
]);
running.catch((err: unknown) => {
  logger.fatal({ err: String(err) }, "analytics failed");
  process.exit(1);
});
const pruning = startPruning({
  store,
  logger,
  intervalMs: config.PRUNE_INTERVAL_MS,
  dedupRetentionMs: config.DEDUP_RETENTION_MS,
  metricsRetentionMs: config.CLICK_METRICS_RETENTION_MS,
});

onShutdown(logger, async () => {
  pruning.stop();
  stop.abort();
  await running;
  await server.close();
  await bus.close();
  await Promise.all([pool.end(), queryPool.end()]);
});
