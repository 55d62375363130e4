// Rebuilds the co-visit counts from the CLICKS stream after Redis lost its data. Stop covisit
// first; start it after: it applies the whole stream again. `pnpm covisit:rebuild` does all three.
import { Redis } from "ioredis";
import { connectBus, natsAuthFrom } from "@recsys/bus";
import { commonEnv, readConfig, z } from "@recsys/config";
import { createLogger } from "@recsys/logging";
import { CovisitRunningError, prepareRebuild } from "./rebuild.js";

const config = readConfig(z.object({ ...commonEnv }));
const logger = createLogger("covisit-rebuild");
const redis = new Redis(config.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 3 });
await redis.connect();
const bus = await connectBus({ url: config.NATS_URL, name: "covisit-rebuild", namespace: config.RECSYS_NAMESPACE, logger, auth: natsAuthFrom(config) });
try {
  const done = await prepareRebuild({ bus, redis, namespace: config.RECSYS_NAMESPACE });
  console.log(
    `covisit rebuild: deleted ${done.keysDeleted} Redis keys and the consumer; covisit will apply the clicks of the ${done.messages} messages of ${bus.topology.clicksStream} again when it starts`,
  );
} catch (err) {
  if (!(err instanceof CovisitRunningError)) throw err;
  console.error(`covisit rebuild: ${err.message}`);
  process.exitCode = 1;
} finally {
  await bus.close();
  redis.disconnect();
}
