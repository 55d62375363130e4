// The servers the stack uses: the machine's own (scripts/infra.sh) unless the environment names others, as the services default.
const env = process.env;

export const machine = {
  nats: env.NATS_URL ?? "nats://127.0.0.1:4222",
  /** One address, or a comma-separated list of a cluster's (with REDIS_CLUSTER=true). */
  redis: env.REDIS_URL ?? "redis://127.0.0.1:6379",
  redisCluster: env.REDIS_CLUSTER === "true",
  postgres: env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test",
};
