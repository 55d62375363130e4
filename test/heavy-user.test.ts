import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence, expectRecommendationsExact, referenceWorkload, type ReferenceWorkload } from "./harness/oracle.js";
import { referenceCoVisits, type RawClick } from "./harness/reference.js";
import { referenceClicks, startStack, type TestStack } from "./harness/stack.js";
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
/** covisit's scripts while this runs: Redis runs nothing else meanwhile. */
const SCRIPT_P99_BOUND_SECONDS = 0.05;

let stack: TestStack;
let ref: ReferenceWorkload;
let redis: Redis;

beforeAll(async () => {
  ref = await referenceWorkload();
  stack = await startStack("heavy");
  redis = new Redis(stack.env.REDIS_URL ?? "redis://127.0.0.1:6379");
}, 120_000);
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
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
    expect(Object.fromEntries(refusals)).toEqual({ "ResourceExhausted userid": CLICKS - BUDGET });
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

    // Redis: what the heavy user's keys hold.
    const prefix = `${stack.namespace}:recsys:`;
    const keys = [`${prefix}h:${HEAVY}`, `${prefix}ids:${HEAVY}`, ...heavyUrls.map((u) => `${prefix}cv:${u}`)];
    let bytes = 0;
    for (const k of keys) bytes += Number((await redis.call("MEMORY", "USAGE", k, "SAMPLES", "0")) ?? 0);
    console.info(`heavy user's keys in Redis: ${(bytes / 2 ** 20).toFixed(2)} MiB (bound ${MEMORY_BOUND_BYTES / 2 ** 20} MiB)`);
    expect(bytes).toBeGreaterThan(0);
    expect(bytes).toBeLessThan(MEMORY_BOUND_BYTES);

    // covisit's scripts, from its own histogram of Redis calls.
    const p99 = await histogramQuantile(stack.url.covisit, 'recsys_dependency_duration_seconds_bucket{dependency="redis",operation="applyClicks"', 0.99);
    console.info(`covisit applyClicks p99 <= ${p99} s (bound ${SCRIPT_P99_BOUND_SECONDS} s)`);
    expect(p99).toBeLessThanOrEqual(SCRIPT_P99_BOUND_SECONDS);
  }, 300_000);
});

/** The upper bound of the bucket holding quantile q, from a Prometheus histogram's cumulative buckets. */
async function histogramQuantile(base: string, series: string, q: number): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const buckets = text
    .split("\n")
    .filter((l) => l.startsWith(series))
    .map((l) => ({ le: Number(/le="([^"]+)"/.exec(l)![1]!.replace("+Inf", "Infinity")), count: Number(l.split(" ").pop()) }))
    .sort((a, b) => a.le - b.le);
  const total = buckets.at(-1)?.count ?? 0;
  expect(total, "covisit ran scripts").toBeGreaterThan(0);
  return buckets.find((b) => b.count >= q * total)!.le;
}
