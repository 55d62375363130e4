// Deletes everything one namespace of the project stored: streams, Redis keys, PostgreSQL schema.
import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Redis } from "ioredis";
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
  const redis = new Redis(env.REDIS_URL ?? "redis://127.0.0.1:6379", { lazyConnect: true });
  await redis.connect();
  try {
    const pattern = `${namespace ? `${namespace}:` : ""}recsys:*`;
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length) await redis.unlink(...keys);
    } while (cursor !== "0");
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
