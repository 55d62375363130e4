#!/usr/bin/env node
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { gunzipSync } from "node:zlib";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { EmbedderService } from "@recsys/contracts/embedder/v1/embedder";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { loadContent } from "@recsys/loadgen/content";
import { CREATE_CLICKS_TABLE, INSERT_CLICKS, REFERENCE_COVISIT_SQL } from "@recsys/loadgen/reference-sql";
import { replay } from "@recsys/loadgen/replay";
import { laneIndex, waitFor } from "@recsys/loadgen/sender";
import { CovisitStore, DEFAULT_MAX_BATCH, keyPrefix, type ClickToApply } from "@recsys/covisit/store";
import { Command } from "commander";
import { Redis } from "ioredis";
import pg from "pg";
import { Pool } from "undici";
import { percentiles, runOpenLoop, type LatencySummary } from "./open-loop.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const data = join(root, "../shared/data");
const clicksFile = join(data, "clickstream.json.gz");
const pagesFile = join(data, "content.json.gz");
const env = process.env;
const url = {
  gateway: env.GATEWAY_URL ?? `http://127.0.0.1:${env.GATEWAY_PORT ?? 8080}`,
  ingest: env.INGEST_URL ?? `http://127.0.0.1:${env.INGEST_PORT ?? 50051}`,
  covisit: env.COVISIT_URL ?? `http://127.0.0.1:${env.COVISIT_PORT ?? 50052}`,
  embedder: env.EMBEDDER_URL ?? `http://127.0.0.1:${env.EMBEDDER_PORT ?? 50053}`,
  profile: env.PROFILE_URL ?? `http://127.0.0.1:${env.PROFILE_PORT ?? 50054}`,
};

interface Click {
  userid: string;
  url: string;
  event_time: string;
}
interface Page {
  url: string;
  title: string;
  text: string;
}
const lines = <T>(file: string): T[] =>
  gunzipSync(readFileSync(file))
    .toString("utf8")
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as T);

const log = (msg: string) => process.stderr.write(`bench: ${msg}\n`);

async function healthy(base: string): Promise<boolean> {
  return fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1_000) }).then((r) => r.ok, () => false);
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Kept-alive connections to the gateway. The load generator shares the two cores with the stack:
 * undici's pool costs it about 50-90 µs of CPU a request where fetch() costs about 450.
 */
let gatewayPool: Pool | undefined;

/** POST to a gateway Connect JSON method; throws on an error answer. */
async function gatewayCall(method: string, body: unknown): Promise<unknown> {
  gatewayPool ??= new Pool(url.gateway, { connections: 128 });
  const res = await gatewayPool.request({
    path: `/recsys.gateway.v1.GatewayService/${method}`,
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = (await res.body.json()) as unknown;
  if (res.statusCode !== 200) throw new Error(`${method}: ${JSON.stringify(json)}`);
  return json;
}

/**
 * The stack as `pnpm stack:up` runs it, started if the gateway is not healthy; all pages loaded, and
 * the reference clicks applied as they are (so that the reference users, whom SimilarContent is
 * asked about, have their interests; a stack that has them already counts the replay as duplicates).
 */
async function ensureStack(referenceUser: string) {
  if (!(await healthy(url.gateway))) {
    log("starting the stack (node scripts/stack.mjs up)");
    const up = spawnSync(process.execPath, [join(root, "scripts/stack.mjs"), "up"], { stdio: ["ignore", "inherit", "inherit"] });
    if (up.status !== 0) throw new Error("the stack did not start");
  }
  const profile = createClient(ProfileService, createGrpcTransport({ baseUrl: url.profile }));
  if ((await profile.progress({})).pages < 2596n) {
    log("loading the reference pages");
    await loadContent({ file: pagesFile, rate: 0, target: url.ingest, embedder: url.embedder, profile: url.profile, wait: true, batchSize: 100, concurrency: 2, waitTimeoutMs: 600_000 });
  }
  const similar = (await profile.similarContent({ userid: referenceUser, limit: 1 })).items[0];
  if (!similar || similar.similarity === 0) {
    log("applying the reference clicks");
    const s = await replay({ file: clicksFile, rate: 0, target: url.ingest, covisit: url.covisit, wait: true, shiftTime: false, batchSize: 500, concurrency: 4, waitTimeoutMs: 300_000 });
    let floor = 0n;
    await waitFor(
      async () => (floor = (await profile.progress({})).clicksAckFloor) >= BigInt(s.lastStreamSequence),
      300_000,
      async () => `profile has folded in up to stream sequence ${floor}, not ${s.lastStreamSequence},`,
    );
  }
}

/**
 * An open-loop phase at `rate`, measured after as long again at the same rate unmeasured: the
 * first requests of a process find its code not yet compiled and its connections not yet open,
 * which a running gateway is past.
 */
async function openLoopPhase(rate: number, seconds: number, request: (i: number) => Promise<void>) {
  await runOpenLoop({ rate, durationMs: Math.min(seconds, 3) * 1000, request });
  return runOpenLoop({ rate, durationMs: seconds * 1000, request });
}

/**
 * The reference clicks as this run's own traffic: user ids prefixed with the run, so that a run
 * never meets the users (and their newest click times) of an earlier one.
 */
function runFile(clicks: Click[], run: string, count = clicks.length): string {
  const file = join(mkdtempSync(join(tmpdir(), "recsys-bench-")), "clicks.json");
  writeFileSync(file, clicks.slice(0, count).map((c) => JSON.stringify({ ...c, userid: `${run}-${c.userid}` })).join("\n"));
  return file;
}

/** Reference clicks through ingest as fast as taken (new times, so new ids), until visible in Recommendation. */
async function ingestToVisible(file: string) {
  // 8 calls in flight: with 4, ingest and the broker sat waiting between calls (7,810-9,697 clicks/s
  // against 11,213-11,581 with 8, in alternating replays).
  const s = await replay({ file, rate: 0, target: url.ingest, covisit: url.covisit, wait: true, shiftTime: true, batchSize: 500, concurrency: 8, waitTimeoutMs: 300_000 });
  if (s.accepted !== s.sent || s.late !== 0) throw new Error(`replay: ${JSON.stringify(s)}`);
  return { clicksPerSecond: s.clicksPerSecond, seconds: s.elapsedMs / 1000, ackP50Ms: s.ackLatencyP50Ms, ackP99Ms: s.ackLatencyP99Ms };
}

/**
 * At 100 clicks/s of reference traffic, probes: a new user clicks page A, then page B; from sending B
 * until the gateway's Recommendation(A) lists B.
 */
async function freshness(seconds: number, file: string) {
  const background = replay({ file, rate: 100, target: url.ingest, covisit: url.covisit, wait: false, shiftTime: true, batchSize: 500, concurrency: 2, waitTimeoutMs: 60_000 });
  const run = Date.now().toString(36);
  const samples: number[] = [];
  const end = performance.now() + seconds * 1000;
  await sleep(500);
  for (let n = 0; performance.now() < end; n++) {
    const a = `https://bench.example/${run}/${n}/a`;
    const b = `https://bench.example/${run}/${n}/b`;
    const userid = `bench-probe-${run}-${n}`;
    await gatewayCall("Clickstream", { event: { userid, url: a } });
    const t0 = performance.now();
    await gatewayCall("Clickstream", { event: { userid, url: b } });
    for (;;) {
      const rec = (await gatewayCall("Recommendation", { url: a })) as { items?: Array<{ recommendation: string }> };
      if (rec.items?.some((i) => i.recommendation === b)) break;
      if (performance.now() - t0 > 10_000) throw new Error(`probe ${n}: ${b} not visible after 10 s`);
    }
    samples.push(performance.now() - t0);
    await sleep(100);
  }
  await background;
  return { probes: samples.length, ...percentiles(samples) };
}

/**
 * Embed RPC throughput over the reference pages: calls of 16 texts, 8 calls in flight, so that the
 * server has texts waiting to batch and the cost of a call is shared by its texts in both runs;
 * what differs between the two runs is the batching alone.
 */
async function embedThroughput(base: string, texts: string[]) {
  // Uncompressed, as the gateway asks its backends: gzip of 16 × 384 floats costs CPU for nothing on loopback.
  const embedder = createClient(EmbedderService, createGrpcTransport({ baseUrl: base, acceptCompression: [] }));
  await embedder.embed({ texts: texts.slice(0, 8) });
  const perCall = 16;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < texts.length) {
        const from = next;
        next += perCall;
        await embedder.embed({ texts: texts.slice(from, from + perCall) });
      }
    }),
  );
  return texts.length / ((performance.now() - t0) / 1000);
}

/** A second embedder, batching off (EMBED_MAX_BATCH=1), on a free port in a namespace of its own. */
async function startUnbatchedEmbedder(): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(root, "services/embedder/dist/main.js")], {
    env: { ...env, EMBEDDER_PORT: String(port), EMBED_MAX_BATCH: "1", RECSYS_NAMESPACE: "benchunbatched", LOG_LEVEL: "warn" },
    stdio: "ignore",
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300 && !(await healthy(base)); i++) await sleep(200);
  return { url: base, child };
}

/** The reference SQL, a full recompute over the same clicks in PostgreSQL: the median of 3 runs. */
async function sqlBaseline(clicks: Click[]) {
  const client = new pg.Client({ connectionString: env.DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/test" });
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
async function redisCpuSeconds(redis: Redis): Promise<number> {
  const info = await redis.info("cpu");
  const field = (name: string) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(info)?.[1] ?? NaN);
  return field("used_cpu_user") + field("used_cpu_sys");
}

/**
 * Redis' own speed at covisit's work: covisit's own store (the same script, keys and arguments,
 * in batches of covisit's default size) run for every reference click straight from this process,
 * over 4 pipelined connections (each user's clicks on one, in order), with no NATS, gRPC or other
 * service in the way. Redis counts the commands the script ran (INFO commandstats) and the CPU it
 * took (INFO cpu): the bound is the clicks one Redis core applies per second of its CPU.
 */
async function redisBound(clicks: Click[]) {
  const namespace = `benchbound${Date.now().toString(36)}`;
  const redisUrl = env.REDIS_URL ?? "redis://127.0.0.1:6379";
  const admin = new Redis(redisUrl);
  const conns = Array.from({ length: 4 }, () => new Redis(redisUrl, { enableAutoPipelining: true }));
  try {
    const stores = conns.map((c) => new CovisitStore(c, namespace, 300_000));
    await stores[0]!.markFirstClick();
    const byStore = stores.map(() => [] as ClickToApply[]);
    clicks.forEach((c, k) => byStore[laneIndex(c.userid, stores.length)]!.push({ eventId: `bound-${k}`, userid: c.userid, url: c.url, eventTimeMs: Date.parse(c.event_time) }));
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

/** Resident memory of each service, from its own /metrics. */
async function rssMiB(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [name, base] of Object.entries(url)) {
    const text = await fetch(`${base}/metrics`).then((r) => r.text(), () => "");
    const m = /^process_resident_memory_bytes\{[^}]*\} (\d+)/m.exec(text);
    if (m) out[name] = Math.round(Number(m[1]) / 2 ** 20);
  }
  return out;
}

const latency = (s: LatencySummary) => ({ p50_ms: s.p50Ms, p99_ms: s.p99Ms, max_ms: s.maxMs, errors: s.errors, achieved_rps: Math.round(s.achievedPerSecond) });

async function main(opts: { json?: string; quick: boolean }) {
  const clicks = lines<Click>(clicksFile);
  const pages = lines<Page>(pagesFile);
  const users = [...new Set(clicks.map((c) => c.userid))];
  const urls = [...new Set(clicks.map((c) => c.url))];
  const rateSeconds = opts.quick ? 3 : 10;
  await ensureStack(users[0]!);

  log("SQL baseline");
  const sqlMs = await sqlBaseline(clicks);
  log("Redis bound");
  const bound = await redisBound(clicks);
  const run = `bench${Date.now().toString(36)}`;
  log("ingest to visible");
  const ingest = await ingestToVisible(runFile(clicks, `${run}a`));
  log("freshness at 100 clicks/s");
  const freshSeconds = opts.quick ? 4 : 15;
  const fresh = await freshness(freshSeconds, runFile(clicks, `${run}b`, 100 * (freshSeconds + 2)));
  log("Recommendation at 1,000 requests/s");
  const rec = await openLoopPhase(1000, rateSeconds, async (i) => void (await gatewayCall("Recommendation", { url: urls[(i * 7919) % urls.length] })));
  log("SimilarContent at 500 requests/s");
  const sim = await openLoopPhase(500, rateSeconds, async (i) => void (await gatewayCall("SimilarContent", { userid: users[(i * 7919) % users.length] })));
  log("embedding, batched and not");
  const texts = pages.slice(0, opts.quick ? 400 : pages.length).map((p) => `${p.title}\n${p.text}`);
  const batched = await embedThroughput(url.embedder, texts);
  const unbatchedEmbedder = await startUnbatchedEmbedder();
  let unbatched: number;
  try {
    unbatched = await embedThroughput(unbatchedEmbedder.url, texts);
  } finally {
    unbatchedEmbedder.child.kill("SIGTERM");
  }
  const rss = await rssMiB();

  const baselineClicksPerSecond = clicks.length / (sqlMs / 1000);
  const result = {
    quick: opts.quick,
    ingest_to_visible_clicks_per_s: Math.round(ingest.clicksPerSecond),
    ingest_ack_p50_ms: ingest.ackP50Ms,
    ingest_ack_p99_ms: ingest.ackP99Ms,
    freshness_p50_ms_at_100_per_s: round(fresh.p50Ms),
    freshness_p99_ms_at_100_per_s: round(fresh.p99Ms),
    freshness_probes: fresh.probes,
    recommendation_p50_ms_at_1000_rps: rec.p50Ms,
    recommendation_p99_ms_at_1000_rps: rec.p99Ms,
    recommendation_at_1000_rps: latency(rec),
    similar_content_p50_ms_at_500_rps: sim.p50Ms,
    similar_content_p99_ms_at_500_rps: sim.p99Ms,
    similar_content_at_500_rps: latency(sim),
    embed_docs_per_s: Math.round(batched),
    embed_docs_per_s_max_batch_1: Math.round(unbatched),
    embed_batching_speedup: round(batched / unbatched),
    sql_baseline_recompute_ms: Math.round(sqlMs),
    sql_baseline_clicks_per_s: Math.round(baselineClicksPerSecond),
    redis_bound_clicks_per_s: Math.round(bound.clicksPerSecond),
    redis_cpu_us_per_click: round(bound.cpuMicrosPerClick),
    redis_bound_wall_clicks_per_s: Math.round(bound.wallClicksPerSecond),
    redis_commands_per_click: round(bound.commandsPerClick),
    redis_ops_per_s: Math.round(bound.redisOpsPerSecond),
    ours_over_baseline: round(ingest.clicksPerSecond / baselineClicksPerSecond),
    ours_over_bound: round(ingest.clicksPerSecond / bound.clicksPerSecond),
    rss_mib: rss,
  };
  printTable(result);
  if (opts.json) writeFileSync(opts.json, `${JSON.stringify(result, null, 2)}\n`);
  await gatewayPool?.close();
}

const round = (x: number) => Math.round(x * 100) / 100;

function printTable(r: Record<string, unknown>) {
  const goals: Record<string, string> = {
    ingest_to_visible_clicks_per_s: ">= 10000",
    freshness_p99_ms_at_100_per_s: "<= 50",
    recommendation_p99_ms_at_1000_rps: "<= 5",
    similar_content_p99_ms_at_500_rps: "<= 20",
    embed_batching_speedup: ">= 3",
  };
  const rows = Object.entries(r).filter(([, v]) => typeof v !== "object" && typeof v !== "boolean");
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(width)}  ${String(v).padStart(10)}  ${goals[k] ? `goal ${goals[k]}` : ""}\n`);
  process.stdout.write(`${"rss_mib".padEnd(width)}  ${JSON.stringify(r.rss_mib)}\n`);
}

new Command("bench")
  .description("Benchmarks the running stack (started if needed) against the reference workload, beside the SQL baseline and the Redis bound.")
  .option("--json <file>", "also write the figures as JSON")
  .option("--quick", "shorter phases and fewer pages (about a minute)", false)
  .action(main)
  .parseAsync()
  .catch((err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
