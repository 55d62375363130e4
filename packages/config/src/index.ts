import { z } from "zod";

export { z };

/**
 * Reads one service's configuration from the environment, once, at start-up.
 * A bad value stops the process with a message naming every offending variable.
 */
export function readConfig<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
    throw new Error(`invalid configuration: ${problems}`);
  }
  return parsed.data;
}

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const bytes = (fallback: number) => z.coerce.number().int().min(1024).default(fallback);

/** Settings every service shares; each service extends this with its own. */
export const commonEnv = {
  /** One NATS server, or several of one cluster, comma-separated: the client connects to any and fails over to the others. */
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  /**
   * This service's own NATS user and password (deploy/nats/nats.conf gives each service one, with
   * the subjects it needs). Both empty: no authentication, for a NATS without users.
   */
  NATS_USER: z
    .string()
    .regex(/^[A-Za-z0-9_-]*$/, "letters, digits, _ and - only")
    .default(""),
  NATS_PASSWORD: z.string().default(""),
  /**
   * One Redis, or the nodes of a Redis Cluster comma-separated (seeds: the client learns the rest). REDIS_CLUSTER=true for a
   * cluster named by one node.
   */
  REDIS_URL: z.string().default("redis://127.0.0.1:6379"),
  REDIS_CLUSTER: z
    .enum(["true", "false", ""])
    .default("")
    .transform((v) => v === "true"),
  /**
   * Shards of covisit's counts and users (services/covisit/README.md): 1 on one Redis, more on a Redis Cluster so that they spread
   * over its primaries. covisit and every reader of its counts (the gateway) must agree; a change needs `covisit:rebuild`.
   */
  COVISIT_SHARDS: z.coerce.number().int().min(1).max(1024).default(1),
  /** Prefix of stream names, subjects and Redis keys, so that several stacks (tests) can share servers. */
  RECSYS_NAMESPACE: z
    .string()
    .regex(/^[a-z0-9_]*$/, "lower-case letters, digits and _ only")
    .default(""),
  /** Internal services listen on loopback unless told otherwise. */
  HOST: z.string().default("127.0.0.1"),
  // The credential the services share: required on every RPC when set, and off loopback (see @recsys/server).
  SERVICE_TOKEN: z
    .string()
    .refine((v) => v === "" || v.length >= 32, "must be at least 32 characters")
    .default(""),
  /** How long a consumer may hold a message unacked before JetStream redelivers it (after a crash). */
  BUS_ACK_WAIT_MS: z.coerce.number().int().min(1_000).default(30_000),
  /**
   * Subjects of CLICKS (by user) and CONTENT (by url): ingest publishes to them, covisit consumes
   * each in order. Every service must agree; change only on empty streams.
   */
  PARTITIONS: z.coerce.number().int().positive().default(8),
  // The size of each stream, in bytes (see StreamLimits in @recsys/bus): a full stream refuses new
  // events, DEAD_LETTERS drops its oldest letters. Every service must agree.
  CLICKS_MAX_BYTES: bytes(4 * GiB),
  CONTENT_MAX_BYTES: bytes(1 * GiB),
  EMBEDDINGS_MAX_BYTES: bytes(1 * GiB),
  ENGAGEMENT_MAX_BYTES: bytes(256 * MiB),
  INTEREST_EMBEDDINGS_MAX_BYTES: bytes(256 * MiB),
  DEAD_LETTERS_MAX_BYTES: bytes(256 * MiB),
  CLICK_METRICS_MAX_BYTES: bytes(1 * GiB),
  VISIBILITY_MAX_BYTES: bytes(64 * MiB),
  /**
   * Copies JetStream keeps of each stream (and its consumers), on as many servers: 1 on a single server, 3 on a cluster of
   * three or more (a message is stored once a majority has it, and the stream survives a server lost). Every service must agree.
   */
  STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  // CLICKS' retention by age (of the message in the stream): older clicks are kept only in the archive (services/archive), which
  // the rebuilds read. 7 days, the consumers' DEDUP_RETENTION_MS: a click older than that cannot be counted again anyway.
  CLICKS_MAX_AGE_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3600_000),
  // CONTENT's retention by age: without one, its size bounded the page versions of all time (1 GiB, about 1.2 million), and once
  // full every page was refused for good. With it, the size bounds the versions that come in over the age. The embedder has
  // embedded them by then (EMBEDDINGS keeps each url's newest embedding, compacted); the archive keeps the versions.
  CONTENT_MAX_AGE_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3600_000),
  // ENGAGEMENT's and INTEREST_EMBEDDINGS' retention by age: without one, their size bounded the likes and stated interests
  // of all time (256 MiB is about a million likes), and once full every user's were refused for good. With it, the size bounds
  // what comes in over the age. The archive keeps ENGAGEMENT's events; profile keeps their effect.
  ENGAGEMENT_MAX_AGE_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3600_000),
  INTEREST_EMBEDDINGS_MAX_AGE_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(7 * 24 * 3600_000),
  DEAD_LETTERS_MAX_AGE_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(30 * 24 * 3600_000),
  /**
   * The letters DEAD_LETTERS keeps per user and consumer (a click's, by its userid) and per message of no user: past it, that
   * user's oldest go, not anyone else's. One user's back-dated clicks would otherwise push every other letter out.
   */
  DEAD_LETTERS_PER_USER: z.coerce.number().int().positive().default(1_000),
};

/** Settings of the services that consume from the bus. */
export const consumerEnv = {
  /** Event types that count as visits (co-visits, interests), comma-separated; empty: every type. */
  VISIT_EVENTS: z.string().default(""),
  /** The fault tests' crash point: kill the process after its n-th message's effect, before the ack (0: never). */
  RECSYS_CRASH_AFTER_EFFECTS: z.coerce.number().int().min(0).default(0),
};

export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);
export const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
