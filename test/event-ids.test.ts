import { setTimeout as sleep } from "node:timers/promises";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence } from "./harness/oracle.js";
import { embedAll, expectSameRanking, rankByMean } from "./harness/ranking.js";
import { natsOf, startStack, type TestStack } from "./harness/stack.js";

// Clients number their events themselves (mobile SDKs count 1, 2, 3…): an event id is only
// unique per user. Two users sending the same id, or one user's click whose id looks like another
// kind of event's, must each count as what they are.

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;
let vectors: Map<string, number[]>;

const T = "2024-01-02T00:00:00Z";
const at = (minutes: number) => new Date(Date.parse(T) + minutes * 60_000).toISOString();
const page = (name: string, id: string, text: string) => ({ url: `https://e.org/ids/${name}`, id, title: name, text });
const PAGES = {
  A: page("flink", "9001", "Apache Flink processes unbounded streams of events with exactly-once state."),
  B: page("kafka", "9002", "Kafka topics are partitioned logs that consumers read at their own pace."),
  C: page("sourdough", "9003", "Sourdough bread rises slowly with wild yeast and lactic acid bacteria."),
  D: page("croissant", "9004", "A croissant is laminated dough folded with butter many times over."),
  P: page("windows", "9005", "Stream processing windows group events by time: tumbling, sliding and session windows."),
  Q: page("espresso", "9006", "Espresso is brewed by forcing hot water through finely ground coffee."),
  U: page("mountain-bike", "9007", "Mountain bikes have wide tyres and suspension for rough trails."),
  L: page("tour-de-france", "9008", "The Tour de France is a multi-stage bicycle race held every July."),
};
const INTEREST_TEXT = "I like cycling up alpine passes and reading about bicycle races.";
const X = "user-x";
const Y = "user-y";
const X2 = "user-x2";
const Y2 = "user-y2";
const Z = "user-z";

/** What the gateway answers for a click: was it taken as a duplicate? */
async function click(userid: string, url: string, eventTime: string, eventId: string): Promise<boolean> {
  return (await c.gateway.clickstream({ event: { userid, url, eventTime, eventId } })).duplicate;
}

/** Waits until covisit and profile have applied every click now in CLICKS, nothing parked. */
async function clicksApplied() {
  const last = await clicksLastSequence(stack);
  await expect.poll(async () => (await c.covisit.progress({})).ackFloorStreamSequence, { timeout: 30_000, interval: 100 }).toBeGreaterThanOrEqual(last);
  await expect
    .poll(
      async () => {
        const p = await c.profile.progress({});
        return p.clicksAckFloor >= last && p.parkedClicks === 0n;
      },
      { timeout: 30_000, interval: 100 },
    )
    .toBe(true);
}

async function recommendation(url: string) {
  return (await c.gateway.recommendation({ url })).items.map((i) => [i.recommendation, Number(i.frequency)]);
}

/** The user's SimilarContent over every page (those the user read included) equals the ranking by the mean of `terms` (vectors from the Embed RPC). */
async function expectSimilarContent(userid: string, terms: number[][]) {
  const n = Object.keys(PAGES).length;
  expectSameRanking((await c.gateway.similarContent({ userid, limit: n, includeSeen: true })).items, rankByMean(terms, vectors, n));
}
const v = (...names: Array<keyof typeof PAGES>) => names.map((k) => vectors.get(PAGES[k].url)!);

beforeAll(async () => {
  stack = await startStack("eventids");
  c = clientsOf(stack);
  vectors = await embedAll(
    c.embedder,
    Object.values(PAGES).map((p) => ({ key: p.url, text: `${p.title}\n${p.text}` })),
  );
});
afterAll(async () => stack?.stop());

describe("event ids belong to their user", () => {
  it("two users' clicks with the same ids, sent within the broker's duplicate window, both count", async () => {
    // Interleaved, one click a call, as two phones would send them; the pages come later, so
    // profile parks both users' "e1" and "e2" first.
    const duplicates = [
      await click(X, PAGES.A.url, at(0), "e1"),
      await click(Y, PAGES.C.url, at(0), "e1"),
      await click(X, PAGES.B.url, at(1), "e2"),
      await click(Y, PAGES.D.url, at(1), "e2"),
    ];
    // No click is reported as a duplicate of the other user's.
    expect.soft(duplicates).toEqual([false, false, false, false]);
    for (const p of Object.values(PAGES)) await c.gateway.content({ event: p });
    await expect.poll(async () => (await c.profile.progress({})).pages, { timeout: 60_000, interval: 100 }).toBe(BigInt(Object.keys(PAGES).length));
    await clicksApplied();

    expect(await recommendation(PAGES.A.url)).toEqual([[PAGES.B.url, 1]]);
    expect(await recommendation(PAGES.C.url)).toEqual([[PAGES.D.url, 1]]);
    await expectSimilarContent(X, v("A", "B"));
    await expectSimilarContent(Y, v("C", "D"));
  });

  it("after the broker's window, other users' clicks with the same ids count, and a click sent again does not", async () => {
    // The broker forgets message ids after its duplicate window (10 minutes). Rather than wait,
    // the window of this stack's CLICKS stream is cut to one second and waited out: from then on
    // only the consumers' own records of applied ids decide what is a duplicate.
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const jsm = await jetstreamManager(nc);
      const name = `${stack.namespace.toUpperCase()}_CLICKS`;
      const { config } = await jsm.streams.info(name);
      await jsm.streams.update(name, { ...config, duplicate_window: nanos(1_000) });
    } finally {
      await nc.close();
    }
    const windowPassed = () => sleep(1_500);
    await windowPassed();
    // Two more users, with the ids X and Y used above, on pages of their own.
    await click(X2, PAGES.P.url, at(0), "e1");
    await click(X2, PAGES.Q.url, at(1), "e2");
    await windowPassed();
    await click(Y2, PAGES.Q.url, at(0), "e1");
    await click(Y2, PAGES.P.url, at(1), "e2");
    await windowPassed();
    // X2's first click sent again, after the broker forgot it (it takes it as new): the same
    // event, which the consumers count once.
    expect(await click(X2, PAGES.P.url, at(0), "e1")).toBe(false);
    await clicksApplied();

    expect(await recommendation(PAGES.P.url)).toEqual([[PAGES.Q.url, 1]]);
    expect(await recommendation(PAGES.Q.url)).toEqual([[PAGES.P.url, 1]]);
    await expectSimilarContent(X2, v("P", "Q"));
    await expectSimilarContent(Y2, v("Q", "P"));
    // The first two users' clicks are as they were.
    expect(await recommendation(PAGES.A.url)).toEqual([[PAGES.B.url, 1]]);
    await expectSimilarContent(X, v("A", "B"));
  });

  it("a click whose id looks like a like's or an interest's id blocks neither", async () => {
    await click(Z, PAGES.U.url, at(0), "like:L1");
    await click(Z, PAGES.A.url, at(1), "interest:I1");
    await clicksApplied();
    const like = (await c.ingest.publishLikes({ likes: [{ userid: Z, pageId: PAGES.L.id, liked: true, eventId: "L1" }] })).results[0]!.outcome;
    const interest = (await c.ingest.publishInterests({ interests: [{ userid: Z, text: INTEREST_TEXT, eventId: "I1" }] })).results[0]!.outcome;
    if (like.case !== "accepted" || interest.case !== "accepted") throw new Error(`refused: ${JSON.stringify([like, interest])}`);
    const [interestVector] = (await c.embedder.embed({ texts: [INTEREST_TEXT] })).embeddings.map((e) => e.values);
    // The like is applied once profile's likes consumer is past it; the interest once profile folded
    // in what the embedder published for it.
    await expect
      .poll(async () => (await c.profile.progress({})).likesAckFloor, { timeout: 30_000, interval: 100 })
      .toBeGreaterThanOrEqual(like.value.streamSequence);
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const jsm = await jetstreamManager(nc);
      const name = `${stack.namespace.toUpperCase()}_INTEREST_EMBEDDINGS`;
      await expect.poll(async () => (await jsm.streams.info(name)).state.last_seq, { timeout: 30_000, interval: 100 }).toBeGreaterThanOrEqual(1);
      const last = BigInt((await jsm.streams.info(name)).state.last_seq);
      await expect.poll(async () => (await c.profile.progress({})).interestEmbeddingsAckFloor, { timeout: 30_000, interval: 100 }).toBeGreaterThanOrEqual(last);
    } finally {
      await nc.close();
    }

    expect((await c.gateway.eventsLiked({ userid: Z })).items.map((e) => e.id)).toEqual([PAGES.L.id]);
    expect(await recommendation(PAGES.U.url)).toEqual([[PAGES.A.url, 1]]);
    await expectSimilarContent(Z, [...v("U", "A", "L"), interestVector!]);
  });
});
