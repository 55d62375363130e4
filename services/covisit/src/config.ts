import { commonEnv, consumerEnv, port, positiveInt, z } from "@recsys/config";
import { DEFAULT_ALLOWED_LATENESS_MS, DEFAULT_USER_CLICK_BUDGET } from "@recsys/validation";
import { CovisitStore, type RedisClient, DEFAULT_DEDUP_RETENTION_MS, DEFAULT_MAX_BATCH, DEFAULT_SEEN_HORIZON_MS } from "./redis-store.js";

/** covisit's settings: the service's, and its rebuild's, which applies clicks as the service does. */
export const covisitConfig = z.object({
  ...commonEnv,
  ...consumerEnv,
  COVISIT_PORT: port(50052),
  ALLOWED_LATENESS_MS: z.coerce.number().int().min(0).default(DEFAULT_ALLOWED_LATENESS_MS),
  COVISIT_CONCURRENCY: positiveInt(2),
  COVISIT_MAX_BATCH: positiveInt(DEFAULT_MAX_BATCH),
  DEDUP_RETENTION_MS: z.coerce.number().int().min(1).default(DEFAULT_DEDUP_RETENTION_MS),
  // The most clicks of one user within the co-visit window of each other; ingest refuses more, covisit
  // dead-letters what reaches the bus anyway (another ingest replica, an older client).
  USER_CLICK_BUDGET: positiveInt(DEFAULT_USER_CLICK_BUDGET),
  // Recommendation with a userid leaves out the pages that user clicked this long before their newest click.
  SEEN_HORIZON_MS: positiveInt(DEFAULT_SEEN_HORIZON_MS),
  // Redis replicas that must hold a batch's writes before its messages are acknowledged (WAIT): 0 on one Redis, 1 on a Redis
  // Cluster with a replica per primary, so that a failover loses no acknowledged click.
  REDIS_WAIT_REPLICAS: z.coerce.number().int().min(0).max(5).default(0),
  REDIS_WAIT_TIMEOUT_MS: positiveInt(2_000),
});

/** The store as the service and its rebuild apply clicks with these settings. */
export function storeFrom(redis: RedisClient, config: z.infer<typeof covisitConfig>): CovisitStore {
  return new CovisitStore(
    redis,
    config.RECSYS_NAMESPACE,
    config.ALLOWED_LATENESS_MS,
    config.DEDUP_RETENTION_MS,
    config.USER_CLICK_BUDGET,
    config.SEEN_HORIZON_MS,
    // An erased user's tombstone lives as long as CLICKS keeps a message from before the erasure.
    config.CLICKS_MAX_AGE_MS,
    "counts",
    { shards: config.COVISIT_SHARDS, waitReplicas: config.REDIS_WAIT_REPLICAS, waitTimeoutMs: config.REDIS_WAIT_TIMEOUT_MS },
  );
}
