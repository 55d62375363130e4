import { commonEnv, port, positiveInt, readConfig, z } from "@recsys/config";
import { connectBus } from "@recsys/bus";
import { createLogger } from "@recsys/logging";
import { DEFAULT_MAX_CLOCK_SKEW_MS } from "@recsys/validation";
import { onShutdown, startRpcServer } from "@recsys/server";
import { ingestRoutes } from "./handlers.js";
import { EventPublisher } from "./publisher.js";

const config = readConfig(
  z.object({
    ...commonEnv,
    INGEST_PORT: port(50051),
    // Subjects of CLICKS (by user) and CONTENT (by url); change only on empty streams.
    PARTITIONS: positiveInt(8),
    // How far ahead of this clock an event's time may be; later ones are refused.
    MAX_CLOCK_SKEW_MS: z.coerce.number().int().min(0).default(DEFAULT_MAX_CLOCK_SKEW_MS),
  }),
);
const logger = createLogger("ingest");
const bus = await connectBus({ url: config.NATS_URL, name: "ingest", namespace: config.RECSYS_NAMESPACE, logger, ackWaitMs: config.BUS_ACK_WAIT_MS });
const publisher = new EventPublisher(bus, config.PARTITIONS);
const server = await startRpcServer({
  name: "ingest",
  host: config.HOST,
  port: config.INGEST_PORT,
  routes: ingestRoutes(publisher, logger, { maxClockSkewMs: config.MAX_CLOCK_SKEW_MS }),
  healthy: () => bus.connected(),
  logger,
});
onShutdown(logger, async () => {
  await server.close();
  await bus.close();
});
