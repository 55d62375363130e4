import { commonEnv, consumerEnv, port, positiveInt, z } from "@recsys/config";
import { DEFAULT_ALLOWED_LATENESS_MS } from "@recsys/validation";

const DAY_MS = 24 * 3600_000;

/** analytics' settings: the service's, and its rebuild's, which applies clicks as the service does. */
export const analyticsConfig = z.object({
  ...commonEnv,
  ...consumerEnv,
  ANALYTICS_PORT: port(50055),
  // The fault tests' crash point of publication: kill the process after its n-th CLICK_METRICS message, before published_before moves (0: never).
  RECSYS_CRASH_AFTER_PUBLISHES: z.coerce.number().int().min(0).default(0),
  DATABASE_URL: z.string().min(1).default("postgresql://postgres@127.0.0.1:5432/test"),
  // The role that owns analytics' schema and migrates it at start; empty: DATABASE_URL's.
  MIGRATION_DATABASE_URL: z.string().default(""),
  PG_POOL_MAX: positiveInt(4),
  PG_WRITE_TIMEOUT_MS: positiveInt(60_000),
  PG_QUERY_POOL_MAX: positiveInt(4),
  PG_QUERY_TIMEOUT_MS: positiveInt(5_000),
  // Flink's HOP(slide, size): windows of WINDOW_SIZE_MS starting at every multiple of WINDOW_SLIDE_MS since the epoch.
  WINDOW_SIZE_MS: positiveInt(300_000),
  WINDOW_SLIDE_MS: positiveInt(10_000),
  ALLOWED_LATENESS_MS: z.coerce.number().int().min(0).default(DEFAULT_ALLOWED_LATENESS_MS),
  // With nothing waiting in CLICKS and no click applied for this long, every window holding data is emitted.
  IDLE_EMIT_MS: positiveInt(10_000),
  // How often emission looks for an idle stream and publication for emitted windows.
  EMIT_INTERVAL_MS: positiveInt(200),
  // A click that finds a partition's consumer caught up waits this long before it is applied, so that the window's writes run
  // after the click's acknowledgement and covisit's count rather than beside them on the same cores; a backlog goes at once.
  ANALYTICS_LINGER_MS: z.coerce.number().int().min(0).max(1_000).default(50),
  DEDUP_RETENTION_MS: positiveInt(7 * DAY_MS),
  CLICK_METRICS_RETENTION_MS: positiveInt(7 * DAY_MS),
  PRUNE_INTERVAL_MS: positiveInt(10 * 60_000),
});
