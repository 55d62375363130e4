import { CovisitStore, DEFAULT_MAX_BATCH, keyPrefix, type ClickToApply } from "@recsys/covisit-store";
import { CREATE_CLICKS_TABLE, INSERT_CLICKS, REFERENCE_COVISIT_SQL } from "@recsys/loadgen/reference-sql";
import { laneIndex } from "@recsys/loadgen/sender";
import { Redis } from "ioredis";
import pg from "pg";
import type { Click } from "./reference-data.js";

// What the stack's throughput is compared with: the reference SQL recomputing everything, and
// Redis alone running covisit's script as fast as it can.

/** The reference SQL, a full recompute over the same clicks in PostgreSQL: the median of 3 runs. */
export async function sqlBaseline(clicks: Click[]) {
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test" });
  await client.connect();
  try {
    await client.query(CREATE_CLICKS_TABLE);
    await client.query(INSERT_CLICKS, [JSON.stringify(clicks)]);
    await client.query("ANALYZE clicks");
    const runs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await client.query(REFERENCE_COVISIT_SQL);
      runs.push(performance.now() - t0);
    }
    return runs.sort((a, b) => a - b)[1]!;
  } finally {
    await client.end();
  }
}

/** Redis' own CPU time so far (user + system), in seconds. */
export async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(info)?.[1] ?? NaN);
  return field("used_cpu_user") + field("used_cpu_sys");
}

/**
 * Redis' own speed at covisit's work: covisit's own store over every reference click, with no NATS, gRPC or other service in the way.
 * Each user's clicks go in order on one of 4 pipelined connections; the bound is the clicks one Redis core applies per second of its CPU.
 */
export async function redisBound(clicks: Click[]) {
  const namespace = `benchbound${Date.now().toString(36)}`;
  const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const admin = new Redis(redisUrl);
  const conns = Array.from({ length: 4 }, () => new Redis(redisUrl, { enableAutoPipelining: true }));
  try {
    const stores = conns.map((c) => new CovisitStore(c, namespace, 300_000));
    await stores[0]!.markFirstClick();
    const byStore = stores.map(() => [] as ClickToApply[]);
    clicks.forEach((c, k) =>
      byStore[laneIndex(c.userid, stores.length)]!.push({
        eventId: `bound-${k}`,
        userid: c.userid,
        url: c.url,
        eventTimeMs: Date.parse(c.event_time),
        event: "view",
      }),
    );
    await admin.config("RESETSTAT");
    const cpu0 = await redisCpuSeconds(admin);
    const t0 = performance.now();
    await Promise.all(
      byStore.map((list, i) => {
        const batches = [];
        for (let k = 0; k < list.length; k += DEFAULT_MAX_BATCH) batches.push(stores[i]!.applyClicks(list.slice(k, k + DEFAULT_MAX_BATCH)));
        return Promise.all(batches);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpuSeconds = (await redisCpuSeconds(admin)) - cpu0;
    let commands = 0;
    for (const l of (await admin.info("commandstats")).split("\n")) {
      const m = /^cmdstat_(\w+):calls=(\d+)/.exec(l);
      if (m && !["evalsha", "eval", "info", "config", "script"].includes(m[1]!)) commands += Number(m[2]);
    }
    let cursor = "0";
    do {
      const [next, keys] = await admin.scan(cursor, "MATCH", `${keyPrefix(namespace)}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length) await admin.unlink(...keys);
    } while (cursor !== "0");
    return {
      clicksPerSecond: clicks.length / cpuSeconds,
      wallClicksPerSecond: clicks.length / seconds,
      cpuMicrosPerClick: (cpuSeconds * 1e6) / clicks.length,
      commandsPerClick: commands / clicks.length,
      redisOpsPerSecond: commands / cpuSeconds,
    };
  } finally {
    admin.disconnect();
    for (const c of conns) c.disconnect();
  }
}
