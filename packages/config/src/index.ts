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

/** Settings every service shares; each service extends this with its own. */
export const commonEnv = {
  NATS_URL: z.string().default("nats://127.0.0.1:4222"),
  REDIS_URL: z.string().default("redis://127.0.0.1:6379"),
  /** Prefix of stream names, subjects and Redis keys, so that several stacks (tests) can share servers. */
  RECSYS_NAMESPACE: z
    .string()
    .regex(/^[a-z0-9_]*$/, "lower-case letters, digits and _ only")
    .default(""),
  /** Internal services listen on loopback unless told otherwise. */
  HOST: z.string().default("127.0.0.1"),
  /** How long a consumer may hold a message unacked before JetStream redelivers it (after a crash). */
  BUS_ACK_WAIT_MS: z.coerce.number().int().min(1_000).default(30_000),
  /**
   * Subjects of CLICKS (by user) and CONTENT (by url): ingest publishes to them, covisit consumes
   * each in order. Every service must agree; change only on empty streams.
   */
  PARTITIONS: z.coerce.number().int().positive().default(8),
};

export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);
export const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);
