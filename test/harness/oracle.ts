import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Redis } from "ioredis";
import { expect } from "vitest";
import { clientsOf, recommendationsFor } from "./clients.js";
import { readJsonLinesGz } from "./files.js";
import { embedAll, rankByMean } from "./ranking.js";
import { readClicks, referenceCoVisits, type RawClick } from "./reference.js";
import { machine, natsOf, referenceClicks, referencePages, type TestStack } from "./stack.js";
import { streamState } from "./streams.js";

export const RECOMMENDATION_DEPTH = 1000;

export interface Page {
  id: string;
  url: string;
  title: string;
  text: string;
}

/** The reference workload and the SQL's answer for it, read once per test file. */
export async function referenceWorkload() {
  const clicks: RawClick[] = readClicks(referenceClicks);
  const pages = readJsonLinesGz<Page>(referencePages);
  return { clicks, pages, urls: [...new Set(clicks.map((c) => c.url))].sort(), coVisits: await referenceCoVisits(clicks) };
}
export type ReferenceWorkload = Awaited<ReturnType<typeof referenceWorkload>>;

/** Every url's Recommendation through the gateway equals the reference SQL, 1000 deep. */
export async function expectRecommendationsExact(stack: TestStack, ref: ReferenceWorkload, gatewayUrl = stack.url.gateway) {
  const got = await recommendationsFor(clientsOf({ ...stack, url: { ...stack.url, gateway: gatewayUrl } }).gateway, ref.urls, RECOMMENDATION_DEPTH);
  let mismatches = 0;
  for (const url of ref.urls) {
    const want = (ref.coVisits.get(url) ?? []).slice(0, RECOMMENDATION_DEPTH);
    const have = got.get(url) ?? [];
    if (JSON.stringify(have) !== JSON.stringify(want)) {
      if (mismatches++ < 3) expect.soft(have, url).toEqual(want);
    }
  }
  expect(mismatches, `${mismatches} urls differ from the reference SQL`).toBe(0);
}

/** covisit's own Recommendation of each of `urls`, 1000 deep, is `want`'s list for it. */
export async function expectCovisitEquals(stack: TestStack, urls: string[], want: Map<string, Array<{ recommendation: string; frequency: number }>>) {
  const covisit = clientsOf(stack).covisit;
  let mismatches = 0;
  for (const url of urls) {
    const have = (await covisit.recommendation({ url, limit: RECOMMENDATION_DEPTH })).items.map((i) => ({
      recommendation: i.recommendation,
      frequency: Number(i.frequency),
    }));
    const expected = (want.get(url) ?? []).slice(0, RECOMMENDATION_DEPTH);
    if (JSON.stringify(have) !== JSON.stringify(expected) && mismatches++ < 3) expect.soft(have, url).toEqual(expected);
  }
  expect(mismatches, `${mismatches} of ${urls.length} urls differ`).toBe(0);
}

/**
 * Every user's SimilarContent (top 10) equals the ranking recomputed from the Embed RPC's vectors:
 * the mean of the user's clicked pages, cosine to every page but those. Ties within float32 noise may swap.
 */
export async function expectSimilarContentExact(stack: TestStack, ref: ReferenceWorkload) {
  const c = clientsOf(stack);
  const vectors = await embedAll(
    c.embedder,
    ref.pages.map((p) => ({ key: p.url, text: `${p.title}\n${p.text}` })),
  );
  const byUser = new Map<string, string[]>();
  for (const k of ref.clicks) byUser.set(k.userid, [...(byUser.get(k.userid) ?? []), k.url]);
  let mismatches = 0;
  for (const [user, urls] of byUser) {
    const want = rankByMean(
      urls.map((u) => vectors.get(u)!),
      vectors,
      10,
      urls,
    );
    const got = (await c.gateway.similarContent({ userid: user, limit: 10 })).items;
    const same =
      got.length === want.top.length &&
      got.every(
        (g, i) =>
          Math.abs(g.similarity - want.top[i]!.similarity) < 1e-4 &&
          (g.url === want.top[i]!.url || Math.abs(want.all.get(g.url)! - want.top[i]!.similarity) < 1e-5),
      );
    if (!same && mismatches++ < 3)
      expect
        .soft(
          got.map((g) => [g.url, g.similarity]),
          user,
        )
        .toEqual(want.top.map((w) => [w.url, w.similarity]));
  }
  expect(mismatches, `${mismatches} of ${byUser.size} users' SimilarContent differ from the recomputation`).toBe(0);
}

/** The stream sequence of the newest CLICKS message of the stack (a message carries one or more clicks). */
export async function clicksLastSequence(stack: TestStack): Promise<bigint> {
  return BigInt((await streamState(stack, "CLICKS")).last_seq);
}

/** Messages in each stream a mutation writes to: CLICKS, CONTENT, ENGAGEMENT. */
export async function writesStored(stack: TestStack): Promise<Record<string, number>> {
  const nc = await connect({ servers: natsOf(stack) });
  try {
    const jsm = await jetstreamManager(nc);
    const out: Record<string, number> = {};
    for (const base of ["CLICKS", "CONTENT", "ENGAGEMENT"]) out[base] = (await jsm.streams.info(`${stack.namespace.toUpperCase()}_${base}`)).state.messages;
    return out;
  } finally {
    await nc.close();
  }
}

/** Waits until covisit and profile have applied every click now in CLICKS and every page is stored. */
export async function waitApplied(stack: TestStack, pages: number, timeoutMs = 180_000) {
  const lastSequence = await clicksLastSequence(stack);
  const c = clientsOf(stack);
  await expect
    .poll(async () => (await c.covisit.progress({})).ackFloorStreamSequence, { timeout: timeoutMs, interval: 200 })
    .toBeGreaterThanOrEqual(lastSequence);
  await expect
    .poll(
      async () => {
        const p = await c.profile.progress({});
        return p.clicksAckFloor >= lastSequence && p.parkedClicks === 0n && p.pages === BigInt(pages);
      },
      { timeout: timeoutMs, interval: 200 },
    )
    .toBe(true);
}

/** Redis loses the namespace's data, as a restart of a Redis that keeps nothing on disk would. */
export async function loseRedisData(stack: TestStack): Promise<void> {
  const redis = new Redis(machine.redis);
  try {
    for (const key of await redis.keys(`${stack.namespace}:recsys:*`)) await redis.unlink(key);
  } finally {
    redis.disconnect();
  }
}
