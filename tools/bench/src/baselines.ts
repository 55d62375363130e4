import {
  connectRedis,
  CovisitStore,
  DEFAULT_MAX_BATCH,
  deleteMatching,
  keyPrefix,
  redisNodes,
  type ClickToApply,
  type RedisClient,
} from "@recsys/covisit-store";
import { CREATE_CLICKS_TABLE, INSERT_CLICKS, REFERENCE_COVISIT_SQL } from "@recsys/loadgen/reference-sql";
import { laneIndex } from "@recsys/loadgen/sender";
import pg from "pg";
import { median } from "./open-loop.js";
import { machine } from "./machine.js";
import type { Click } from "./reference-data.js";

// What the stack's throughput is compared with: the reference SQL recomputing everything, and
// Redis alone running covisit's script as fast as it can.

/** The reference SQL, a full recompute over the same clicks in PostgreSQL: the median of 3 runs. */
export async function sqlBaseline(clicks: Click[]) {
  const client = new pg.Client({ connectionString: machine.postgres });
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
    return median(runs, (ms) => ms);
  } finally {
    await client.end();
  }
}

/** Redis' own CPU time so far (user + system), in seconds: of every node on a cluster, replicas too (they work for every write). */
export async function redisCpuSeconds(redis: RedisClient): Promise<number> {
  let seconds = 0;
  for (const node of redisNodes(redis)) {
    const info = await node.info("cpu");
    const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(info)?.[1] ?? NaN);
    seconds += field("used_cpu_user") + field("used_cpu_sys");
  }
  return seconds;
}

/**
 * The Redis of REDIS_URL, as the services connect to it (a comma-separated list: a cluster), once ready: a cluster client knows its
 * nodes only then, and a CPU reading taken before would miss them.
 */
export async function benchRedis(options: { enableAutoPipelining?: boolean } = {}): Promise<RedisClient> {
  const redis = connectRedis(machine.redis, options, machine.redisCluster);
  if (redis.status !== "ready") await new Promise((resolve, reject) => redis.once("ready", resolve).once("error", reject));
  return redis;
}

/** covisit's shards as the stack runs them (COVISIT_SHARDS). */
const stackShards = () => Number(process.env.COVISIT_SHARDS ?? 1);

/**
 * The reference clicks in a namespace of their own, through covisit's store, each user's in order on one of `lanes` clients, one
 * batch of a lane at a time (as covisit applies a partition's).
 */
async function applyAll(clicks: Click[], namespace: string, shards: number, lanes: number) {
  const conns = await Promise.all(Array.from({ length: lanes }, () => benchRedis({ enableAutoPipelining: true })));
  const stores = conns.map((c) => new CovisitStore(c, namespace, 300_000, undefined, undefined, undefined, undefined, "counts", { shards }));
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
  return {
    stores,
    run: () =>
      Promise.all(
        byStore.map(async (list, i) => {
          for (let k = 0; k < list.length; k += DEFAULT_MAX_BATCH) await stores[i]!.applyClicks(list.slice(k, k + DEFAULT_MAX_BATCH));
        }),
      ),
    close: () => conns.forEach((c) => c.disconnect()),
  };
}

/**
 * What the merge of shards costs a Recommendation: covisit's store answering every reference url twice (limit 10, 16 at a time)
 * from the reference counts kept in 1, 3, 6 and 16 shards, on the same Redis one after the other: Redis' CPU a query and the
 * store's latency (one client process doing the merges), with no service in the way.
 */
export async function mergeCost(clicks: Click[]) {
  const urls = [...new Set(clicks.map((c) => c.url))];
  const admin = await benchRedis();
  const out: Record<string, { redisCpuMicros: number; p50Ms: number; p99Ms: number; queries: number }> = {};
  try {
    for (const shards of [1, 3, 6, 16]) {
      const namespace = `benchmerge${shards}x${Date.now().toString(36)}`;
      const applied = await applyAll(clicks, namespace, shards, 16);
      try {
        await applied.run();
        const store = applied.stores[0]!;
        // Warm-up: the scripts loaded, the connections open.
        for (const u of urls.slice(0, 200)) await store.coVisitsAfter(u, 10);
        const latencies: number[] = [];
        const cpu0 = await redisCpuSeconds(admin);
        let next = 0;
        await Promise.all(
          Array.from({ length: 16 }, async () => {
            while (next < 2 * urls.length) {
              const u = urls[next++ % urls.length]!;
              const t0 = performance.now();
              await store.coVisitsAfter(u, 10);
              latencies.push(performance.now() - t0);
            }
          }),
        );
        const cpu = (await redisCpuSeconds(admin)) - cpu0;
        latencies.sort((a, b) => a - b);
        const at = (q: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]! * 100) / 100;
        out[String(shards)] = { redisCpuMicros: (cpu * 1e6) / latencies.length, p50Ms: at(0.5), p99Ms: at(0.99), queries: latencies.length };
      } finally {
        await deleteMatching(admin, `${keyPrefix(namespace)}*`);
        applied.close();
      }
    }
    return out;
  } finally {
    admin.disconnect();
  }
}

/**
 * Redis' own speed at covisit's work: covisit's own store over every reference click, with no NATS, gRPC or other service in the way.
 * Each user's clicks go in order on one of 16 connections; the bound is the clicks one Redis core applies per second of its CPU.
 */
export async function redisBound(clicks: Click[]) {
  const namespace = `benchbound${Date.now().toString(36)}`;
  const admin = await benchRedis();
  const applied = await applyAll(clicks, namespace, stackShards(), 16);
  try {
    for (const node of redisNodes(admin)) await node.config("RESETSTAT");
    const cpu0 = await redisCpuSeconds(admin);
    const t0 = performance.now();
    await applied.run();
    const seconds = (performance.now() - t0) / 1000;
    const cpuSeconds = (await redisCpuSeconds(admin)) - cpu0;
    let commands = 0;
    for (const node of redisNodes(admin)) {
      for (const l of (await node.info("commandstats")).split("\n")) {
        const m = /^cmdstat_(\w+):calls=(\d+)/.exec(l);
        if (m && !["evalsha", "eval", "info", "config", "script", "cluster", "ping"].includes(m[1]!)) commands += Number(m[2]);
      }
    }
    await deleteMatching(admin, `${keyPrefix(namespace)}*`);
    return {
      clicksPerSecond: clicks.length / cpuSeconds,
      wallClicksPerSecond: clicks.length / seconds,
      cpuMicrosPerClick: (cpuSeconds * 1e6) / clicks.length,
      commandsPerClick: commands / clicks.length,
      redisOpsPerSecond: commands / cpuSeconds,
    };
  } finally {
    admin.disconnect();
    applied.close();
  }
}
