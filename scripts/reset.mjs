// Deletes everything one namespace of the project stored: streams, Redis keys, PostgreSQL schema.
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
// The store's own client and deletion, built (pnpm build): one Redis or a Redis Cluster alike.
import { connectRedis, deleteMatching } from "../packages/covisit-store/dist/index.js";
import pg from "pg";

export async function resetNamespace(namespace, env = process.env) {
  // Deleting streams needs the NATS admin where NATS has users (deploy/nats/nats.conf).
  const nc = await connect({
    servers: (env.NATS_URL ?? "nats://127.0.0.1:4222")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    ...(env.NATS_USER ? { user: env.NATS_USER, pass: env.NATS_PASSWORD } : {}),
  });
  try {
    const jsm = await jetstreamManager(nc);
    const prefix = namespace ? `${namespace.toUpperCase()}_` : "";
    for (const base of ["CLICKS", "DEAD_LETTERS", "CONTENT", "EMBEDDINGS", "ENGAGEMENT", "INTEREST_EMBEDDINGS", "CLICK_METRICS", "VISIBILITY"]) {
      await jsm.streams.delete(prefix + base).catch(() => false);
    }
  } finally {
    await nc.close();
  }
  const redis = connectRedis(env.REDIS_URL ?? "redis://127.0.0.1:6379", { lazyConnect: true }, env.REDIS_CLUSTER === "true");
  await redis.connect();
  try {
    await deleteMatching(redis, `${namespace ? `${namespace}:` : ""}recsys:*`);
  } finally {
    redis.disconnect();
  }
  // The schema belongs to the role that migrates it (see services/profile).
  const db = new pg.Client({ connectionString: env.MIGRATION_DATABASE_URL || env.DATABASE_URL || "postgresql://postgres@127.0.0.1:5432/test" });
  await db.connect();
  try {
    // profile keeps each namespace in a schema of its own.
    await db.query(`DROP SCHEMA IF EXISTS ${namespace ? `${namespace}_recsys` : "recsys"} CASCADE`);
    // analytics keeps its own.
    await db.query(`DROP SCHEMA IF EXISTS ${namespace ? `${namespace}_analytics` : "analytics"} CASCADE`);
  } finally {
    await db.end();
  }
}
