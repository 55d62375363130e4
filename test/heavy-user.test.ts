import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { jetstream } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { encodeClickBatch, Topology } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence, expectRecommendationsExact, referenceWorkload, type ReferenceWorkload } from "./harness/oracle.js";
import { referenceCoVisits, type RawClick } from "./harness/reference.js";
import { privateRedis, type PrivateServer } from "./harness/servers.js";
import { machine, natsOf, referenceClicks, startStack, type TestStack } from "./harness/stack.js";
import { loadgen } from "./faults/loadgen.js";

// One userid (a shared "anonymous" id, a bot) sends 5,000 clicks with random 2 KiB urls within
// seconds through the gateway, while the reference clicks are replayed: the user's budget
// (USER_CLICK_BUDGET, default 60 clicks within 10 minutes of each other) holds it to 60 clicks,
// whose pairs are at most 60 * 59 / 2 = 1,770 members of about 2 KiB in Redis; every other user's
// click counts, exactly.
const HEAVY = "anonymous";
const CLICKS = 5_000;
const BUDGET = 60;
/** What the heavy user's keys may take in Redis: 1,770 pairs of 2 KiB urls and 60 history entries, with room for Redis' own overhead. */
const MEMORY_BOUND_BYTES = 8 * 2 ** 20;
/**
 * How long one of covisit's scripts may run (p99, as Redis' own latency histogram of EVALSHA
 * measures it, in buckets that double: ... 16.908, 33.816, 67.633 ms): Redis runs nothing else
 * meanwhile, so this is what a Recommendation may wait behind a click. With the replay running at
 * full speed beside the heavy user, scripts of up to 128 clicks gave p99 in the 16.9 or 33.8 ms
 * bucket here while the gateway's rate limit ran a quick script a call in the same histogram; on
 * their own, covisit's reached the 67.6 ms bucket in CI. Without the budget, one user's script ran
 * for minutes.
 */
const SCRIPT_P99_BOUND_MS = 67.633;

let stack: TestStack;
let ref: ReferenceWorkload;
let redis: Redis;
let redisServer: PrivateServer;

beforeAll(async () => {
  ref = await referenceWorkload();
  // A Redis of its own, so that its latency histogram of EVALSHA holds covisit's scripts only: the gateway reads the counts
  // there (EVALSHA_RO, a histogram of its own) and counts its rate limits in the machine's Redis.
  redisServer = await privateRedis();
  stack = await startStack(
    "heavy",
    { REDIS_URL: redisServer.url },
    { serviceEnv: { gateway: { REDIS_URL: machine.redis, COVISIT_REDIS_URL: redisServer.url } } },
  );
  redis = new Redis(redisServer.url);
}, 120_000);
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
  await redisServer?.stop();
});

const randomUrl = () => `https://heavy.example/${randomBytes(1500).toString("base64url").slice(0, 2000)}`;

describe("one heavy user", () => {
  it("gets ResourceExhausted naming userid past its budget; Redis grows by a bound, scripts stay short, every other user's clicks count exactly", async () => {
    const { gateway } = clientsOf(stack);
    const replay = loadgen(stack, ["replay", referenceClicks, "--rate", "0", "--wait", "--wait-timeout", "180000"]);
    const accepted: RawClick[] = [];
    const refusals = new Map<string, number>();
    let next = 0;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < CLICKS) {
          next++;
          const url = randomUrl();
          try {
            const r = await gateway.clickstream({ event: { userid: HEAVY, url } });
            accepted.push({ userid: HEAVY, url, event_time: r.eventTime });
          } catch (err) {
            const e = ConnectError.from(err);
            const key = `${Code[e.code]} ${e.rawMessage.split(":")[0]}`;
            refusals.set(key, (refusals.get(key) ?? 0) + 1);
          }
        }
      }),
    );
    const sendingMs = Date.now() - started;
    expect(Object.fromEntries(refusals)).toEqual({ "ResourceExhausted event.userid": CLICKS - BUDGET });
    expect(accepted).toHaveLength(BUDGET);
    console.info(`heavy user: ${CLICKS} clicks sent in ${sendingMs} ms, ${accepted.length} accepted`);

    const summary = await replay;
    expect(summary).toMatchObject({ sent: ref.clicks.length, accepted: ref.clicks.length, rejected: 0, late: 0 });
    const last = await clicksLastSequence(stack);
    await expect.poll(async () => (await clientsOf(stack).covisit.progress({})).ackFloorStreamSequence, { timeout: 60_000 }).toBeGreaterThanOrEqual(last);

    // Every other user's clicks counted exactly, and the heavy user's accepted ones too.
    await expectRecommendationsExact(stack, ref);
    const heavyPairs = await referenceCoVisits(accepted);
    const heavyUrls = accepted.map((c) => c.url);
    for (const url of heavyUrls) {
      const got = (await gateway.recommendation({ url, limit: 1000 })).items.map((i) => ({ recommendation: i.recommendation, frequency: Number(i.frequency) }));
      expect(got).toEqual(heavyPairs.get(url) ?? []);
    }
    expect((await clientsOf(stack).covisit.progress({})).deadLetteredClicks).toBe(0n);

    // Redis: what the heavy user's keys hold (the one shard of the default COVISIT_SHARDS=1).
    const prefix = `${stack.namespace}:recsys:{0/1}:`;
    const keys = [`${prefix}h:${HEAVY}`, `${prefix}ids:${HEAVY}`, ...heavyUrls.map((u) => `${prefix}cv:${u}`)];
    let bytes = 0;
    for (const k of keys) bytes += Number((await redis.call("MEMORY", "USAGE", k, "SAMPLES", "0")) ?? 0);
    console.info(`heavy user's keys in Redis: ${(bytes / 2 ** 20).toFixed(2)} MiB (bound ${MEMORY_BOUND_BYTES / 2 ** 20} MiB)`);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThan(MEMORY_BOUND_BYTES);

    const p99 = await scriptP99Ms(redis);
    console.info(`covisit's scripts: p99 <= ${p99} ms (bound ${SCRIPT_P99_BOUND_MS} ms)`);
    expect(p99).toBeLessThanOrEqual(SCRIPT_P99_BOUND_MS);
  }, 300_000);

  it("covisit dead-letters what reaches the bus over the budget anyway (another ingest, an old client), with cause budget, and counts the rest exactly", async () => {
    // 70 clicks of one user, a second apart, published straight to CLICKS as ingest would: the
    // first 60 count, the last 10 have 60 clicks within 10 minutes of them.
    const userid = "bypass";
    const t0 = Date.parse("2024-03-01T00:00:00Z");
    const clicks = Array.from({ length: 70 }, (_, i) =>
      create(ClickSchema, {
        eventId: `b${i}`,
        userid,
        url: `https://bypass.example/p${i % 7}`,
        eventTimeMs: BigInt(t0 + i * 1000),
        ingestTimeMs: BigInt(Date.now()),
      }),
    );
    const c = clientsOf(stack);
    const before = (await c.covisit.progress({})).deadLetteredClicks;
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const batch = encodeClickBatch(clicks);
      await jetstream(nc).publish(new Topology(stack.namespace).clicksSubject(0), batch.data, { headers: batch.headers, msgID: "bypass-batch" });
    } finally {
      await nc.close();
    }
    const last = await clicksLastSequence(stack);
    await expect.poll(async () => (await c.covisit.progress({})).ackFloorStreamSequence, { timeout: 60_000 }).toBeGreaterThanOrEqual(last);
    expect((await c.covisit.progress({})).deadLetteredClicks - before).toBe(10n);
    const metrics = await (await fetch(`${stack.url.covisit}/metrics`)).text();
    expect(metrics).toMatch(/recsys_covisit_clicks_total\{outcome="budget"[^}]*\} 10\n/);
    expect(metrics).toMatch(/recsys_dead_lettered_total\{source="clicks",cause="budget"[^}]*\} 10\n/);
    const want = await referenceCoVisits(
      clicks.slice(0, BUDGET).map((k) => ({ userid, url: k.url, event_time: new Date(Number(k.eventTimeMs)).toISOString() })),
    );
    for (let p = 0; p < 7; p++) {
      const url = `https://bypass.example/p${p}`;
      const got = (await c.gateway.recommendation({ url, limit: 1000 })).items.map((i) => ({
        recommendation: i.recommendation,
        frequency: Number(i.frequency),
      }));
      expect(got, url).toEqual(want.get(url) ?? []);
    }
  }, 120_000);

  it("sending back-dated clicks, each of another window of event time, gets no more than ten budgets' worth at once", async () => {
    // covisit's rule counts clicks within 10 minutes of event time, which the client chooses: a user whose clicks are each a
    // window apart in event time, from 8 days back, had all of them accepted, 10,000 a call, and each one's pairs kept in Redis for
    // good. (1,000 windows: 7 days.)
    const { ingest } = clientsOf(stack);
    const t0 = Date.now() - 8 * 24 * 3_600_000;
    const started = Date.now();
    const res = await ingest.publishClicks({
      clicks: Array.from({ length: 1_000 }, (_, k) => ({
        userid: "back-dated",
        url: `https://back-dated.example/${k}`,
        eventTime: new Date(t0 + k * 601_000).toISOString(),
      })),
    });
    const accepted = res.results.filter((r) => r.outcome.case === "accepted").length;
    const refused = res.results.filter((r) => r.outcome.case === "rejected");
    // Ten budgets at once, and one more for each second since (their rate: 600 clicks in 10 minutes).
    expect(accepted).toBeGreaterThanOrEqual(10 * BUDGET);
    expect(accepted).toBeLessThanOrEqual(10 * BUDGET + Math.ceil((Date.now() - started) / 1_000));
    expect(refused.every((r) => r.outcome.case === "rejected" && r.outcome.value.field === "userid" && r.outcome.value.code === Code.ResourceExhausted)).toBe(
      true,
    );
    expect(refused[0]?.outcome.value).toMatchObject({ reason: expect.stringMatching(/600 clicks arrived within 10 minutes, whatever their event times/) });
  });
});

/** The upper bound (ms) of the bucket of Redis' EVALSHA latency histogram that holds the 99th percentile. */
async function scriptP99Ms(redis: Redis): Promise<number> {
  // ["evalsha", ["calls", n, "histogram_usec", [bucket, cumulative count, ...]]]
  const [, fields] = (await redis.call("LATENCY", "HISTOGRAM", "evalsha")) as [string, unknown[]];
  const calls = Number(fields[fields.indexOf("calls") + 1]);
  const flat = fields[fields.indexOf("histogram_usec") + 1] as number[];
  expect(calls, "covisit ran scripts").toBeGreaterThan(0);
  for (let i = 0; i < flat.length; i += 2) if (Number(flat[i + 1]) >= 0.99 * calls) return Number(flat[i]) / 1000;
  throw new Error("no bucket holds the 99th percentile");
}
