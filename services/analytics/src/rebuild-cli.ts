// Rebuilds analytics' panes and windows after PostgreSQL lost them (or to count again): from the CLICKS stream, and, for the
// messages its retention no longer holds, from the archive (services/archive, ARCHIVE_DIR). Stop analytics first; start it after:
// it goes on from the stream and publishes the windows CLICK_METRICS does not have yet. `pnpm analytics:rebuild` does all three.
import { ConsumerRunningError, connectBus, idleConsumers, natsAuthFrom } from "@recsys/bus";
import { readConfig, z } from "@recsys/config";
import { applyArchivedHead, ArchiveGapError, durablesStartingAt, clicksHeadInArchive, localArchiveDir } from "@recsys/lake/lake";
import { createLogger } from "@recsys/logging";
import { quoteIdent } from "@recsys/postgres";
import { analyticsConfig } from "./config.js";
import { applyAndEmit } from "./consumer.js";
import { clicksConsumer, clicksDurable, visibilityConsumer } from "./durable.js";
import { createPool, migrateWhenReachable, schemaFor } from "./pg.js";
import { AnalyticsStore } from "./store.js";
import { WatermarkLog } from "./watermark-log.js";
import { hopWindows } from "./windows.js";

const config = readConfig(
  analyticsConfig.extend({
    // The archive of CLICKS: as the local stack keeps it unless set.
    ARCHIVE_DIR: z.string().min(1).default(localArchiveDir()),
  }),
);
const logger = createLogger("analytics-rebuild");
const schema = schemaFor(config.RECSYS_NAMESPACE);
const bus = await connectBus({ url: config.NATS_URL, name: "analytics-rebuild", namespace: config.RECSYS_NAMESPACE, logger, auth: natsAuthFrom(config) });
const pool = createPool({ databaseUrl: config.DATABASE_URL, schema, max: 2, statementTimeoutMs: config.PG_WRITE_TIMEOUT_MS, logger });
const migrationPool = createPool({ databaseUrl: config.MIGRATION_DATABASE_URL || config.DATABASE_URL, schema, max: 1, statementTimeoutMs: 0, logger });
try {
  const stream = bus.topology.clicksStream;
  const { firstSeq, messages: held } = await clicksHeadInArchive(bus, config.ARCHIVE_DIR);
  const consumers = await idleConsumers(bus, stream, (name) => name === clicksDurable || name === clicksConsumer.durable, "analytics");
  // Hidden urls go with the schema: the VISIBILITY durable starts over, and the compacted stream gives every url's latest state again.
  const visibility = await idleConsumers(bus, bus.topology.visibilityStream, (name) => name === visibilityConsumer.durable, "analytics");
  // Panes, ids and progress go; the schema is made again as at a first start.
  await migrationPool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
  await migrateWhenReachable(migrationPool, pool, schema, logger);
  for (const c of consumers) await bus.jsm.consumers.delete(stream, c.name);
  for (const c of visibility) await bus.jsm.consumers.delete(bus.topology.visibilityStream, c.name);
  let fromArchive = "";
  let goesOn = `will apply the ${held} messages of ${stream} when it starts`;
  if (firstSeq > 1) {
    const store = new AnalyticsStore(pool, hopWindows(config.WINDOW_SIZE_MS, config.WINDOW_SLIDE_MS));
    const emission = { store, watermarks: new WatermarkLog(), logger, latenessMs: config.ALLOWED_LATENESS_MS, emitted: {} };
    let clicks = 0;
    // One message at a time, each followed by the windows it closed, as the consumer takes them; erasures in their places (nothing is
    // published meanwhile, so they wait for no publication).
    const beforeSeq = await applyArchivedHead({
      bus,
      dir: config.ARCHIVE_DIR,
      apply: async (messages) => {
        for (const m of messages) {
          for (const v of await applyAndEmit([m], emission)) if ("verdicts" in v) clicks += v.verdicts.filter((x) => x === "applied").length;
        }
      },
      startAt: durablesStartingAt(bus, [{ durable: clicksDurable, filterSubject: bus.topology.clicksSubjects }]),
    });
    fromArchive = `; applied ${clicks} clicks of messages 1-${beforeSeq - 1} from the archive in ${config.ARCHIVE_DIR}`;
    goesOn = `will go on from message ${beforeSeq} of ${stream} when it starts`;
  }
  console.log(`analytics rebuild: schema ${schema} made anew and the consumer deleted${fromArchive}; analytics ${goesOn}`);
} catch (err) {
  if (!(err instanceof ConsumerRunningError || err instanceof ArchiveGapError)) throw err;
  console.error(`analytics rebuild: ${err.message}`);
  process.exitCode = 1;
} finally {
  await bus.close();
  await Promise.all([pool.end(), migrationPool.end()]);
}
