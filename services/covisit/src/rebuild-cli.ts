// Rebuilds the co-visit counts after Redis lost its data: from the CLICKS stream, and, for the messages its retention no longer
// holds, from the archive (services/archive, ARCHIVE_DIR). Stop covisit first; start it after: it applies the stream from where the
// archive left off. `pnpm covisit:rebuild` does all three.
import { ConsumerRunningError, connectBus, natsAuthFrom } from "@recsys/bus";
import { readConfig, z } from "@recsys/config";
import { createLogger } from "@recsys/logging";
import { visitFilter } from "@recsys/validation";
import { covisitConfig, storeFrom } from "./config.js";
import { connectRedis } from "./redis-store.js";
import { ArchiveGapError, clicksHeadInArchive, localArchiveDir } from "@recsys/lake/lake";
import { applyArchivedClicks, prepareRebuild } from "./rebuild.js";

const config = readConfig(
  covisitConfig.extend({
    // The archive of CLICKS: as the local stack keeps it unless set.
    ARCHIVE_DIR: z.string().min(1).default(localArchiveDir()),
  }),
);
const logger = createLogger("covisit-rebuild");
const redis = connectRedis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 3 }, config.REDIS_CLUSTER);
await redis.connect();
const bus = await connectBus({ url: config.NATS_URL, name: "covisit-rebuild", namespace: config.RECSYS_NAMESPACE, logger, auth: natsAuthFrom(config) });
try {
  const { firstSeq } = await clicksHeadInArchive(bus, config.ARCHIVE_DIR);
  const done = await prepareRebuild({ bus, redis, namespace: config.RECSYS_NAMESPACE });
  let fromArchive = "";
  let goesOn = `will apply the clicks of the ${done.messages} messages of ${bus.topology.clicksStream} again when it starts`;
  if (firstSeq > 1) {
    const { applied, beforeSeq } = await applyArchivedClicks({
      bus,
      store: storeFrom(redis, config),
      archiveDir: config.ARCHIVE_DIR,
      partitions: config.PARTITIONS,
      maxBatch: config.COVISIT_MAX_BATCH,
      isVisit: visitFilter(config.VISIT_EVENTS),
    });
    fromArchive = `; applied ${applied} clicks of messages 1-${beforeSeq - 1} from the archive in ${config.ARCHIVE_DIR}`;
    goesOn = `will go on from message ${beforeSeq} of ${bus.topology.clicksStream} when it starts`;
  }
  console.log(
    `covisit rebuild: deleted ${done.keysDeleted} Redis keys and the consumers${fromArchive}; covisit ${goesOn}, after every page's visibility from ${bus.topology.visibilityStream}`,
  );
} catch (err) {
  if (!(err instanceof ConsumerRunningError || err instanceof ArchiveGapError)) throw err;
  console.error(`covisit rebuild: ${err.message}`);
  process.exitCode = 1;
} finally {
  await bus.close();
  redis.disconnect();
}
