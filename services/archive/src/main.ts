import { resolve } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { connectBus, CrashAfterEffects, natsAuthFrom, streamLimitsFrom } from "@recsys/bus";
import { commonEnv, port, positiveInt, readConfig, z } from "@recsys/config";
import { createLogger } from "@recsys/logging";
import { onShutdown, serviceTokenFor, startRpcServer } from "@recsys/server";
import { TableArchiver } from "./archiver.js";
import { archiveRoutes } from "./handlers.js";
import { TABLES } from "./tables.js";

const config = readConfig(
  z.object({
    ...commonEnv,
    ARCHIVE_PORT: port(50056),
    // Where the Parquet files and the commit log live: <dir>/<table>/dt=YYYY-MM-DD/hour=HH/, <dir>/_commits/<table>/.
    ARCHIVE_DIR: z.string().min(1).default("archive"),
    // A file is closed at whichever comes first: this many rows, this many bytes of messages, or its first message this old.
    ARCHIVE_MAX_ROWS: positiveInt(500_000),
    ARCHIVE_MAX_BYTES: positiveInt(64 * 1024 * 1024),
    ARCHIVE_MAX_AGE_MS: positiveInt(30_000),
    // The fault tests' crash point: kill the process after its n-th file step (a file written, a flush committed, a file named).
    RECSYS_CRASH_AFTER_EFFECTS: z.coerce.number().int().min(0).default(0),
  }),
);
const logger = createLogger("archive");
const dir = resolve(config.ARCHIVE_DIR);
const bus = await connectBus({
  url: config.NATS_URL,
  name: "archive",
  namespace: config.RECSYS_NAMESPACE,
  logger,
  auth: natsAuthFrom(config),
  ackWaitMs: config.BUS_ACK_WAIT_MS,
  limits: streamLimitsFrom(config),
});
const duckdb = await DuckDBInstance.create(":memory:");
const crashAfterEffects = new CrashAfterEffects(config.RECSYS_CRASH_AFTER_EFFECTS);
const archivers = await Promise.all(
  TABLES.map(
    async (table) =>
      new TableArchiver({
        table,
        bus,
        dir,
        db: await duckdb.connect(),
        limits: { maxRows: config.ARCHIVE_MAX_ROWS, maxBytes: config.ARCHIVE_MAX_BYTES, maxAgeMs: config.ARCHIVE_MAX_AGE_MS },
        logger,
        crashAfterEffects,
      }),
  ),
);
const server = await startRpcServer({
  name: "archive",
  host: config.HOST,
  serviceToken: serviceTokenFor(config, "archive", logger),
  port: config.ARCHIVE_PORT,
  routes: archiveRoutes(archivers, bus),
  healthy: async () => bus.connected(),
  logger,
});
logger.info({ dir }, "archiving");

const stop = new AbortController();
const running = Promise.all(archivers.map((a) => a.run(stop.signal)));
running.catch((err: unknown) => {
  logger.fatal({ err: String(err) }, "archive failed");
  process.exit(1);
});

onShutdown(logger, async () => {
  stop.abort();
  await running;
  await server.close();
  await bus.close();
});
