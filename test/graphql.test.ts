import { loadContent } from "@recsys/loadgen/content";
import { replay } from "@recsys/loadgen/replay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { contentOptions, replayOptions } from "./harness/replay.js";
import { readJsonLinesGz } from "./harness/files.js";
import { embedAll, expectSameRanking, rankByMean } from "./harness/ranking.js";
import { readClicks, referenceCoVisits } from "./harness/reference.js";
import { referenceClicks, referencePages, startStack, type TestStack } from "./harness/stack.js";
import { clicksLastSequence } from "./harness/oracle.js";
import { DOC } from "@recsys/gateway/reference-documents";

// The reference GraphQL documents (DOC), sent verbatim to POST /graphql after the reference pages
// and clicks are loaded; every answer is checked against something computed without the system.
const INTEREST_TEXT = "I want to learn more about Apache Flink and how to use it for real-time stream processing.";
const LIKED_ID = "42672986";

interface Page {
  id: string;
  url: string;
  title: string;
  text: string;
}
interface GraphQLAnswer {
  status: number;
  data?: Record<string, any>;
  errors?: Array<{ message: string; extensions?: { code?: string } }>;
}

const pages = readJsonLinesGz<Page>(referencePages);
const clicks = readClicks(referenceClicks);
const byId = new Map(pages.map((p) => [p.id, p]));
let stack: TestStack;
let c: ReturnType<typeof clientsOf>;
let vectors: Map<string, number[]>;

async function gql(query: string, variables?: Record<string, unknown>): Promise<GraphQLAnswer> {
  const res = await fetch(`${stack.url.gateway}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, ...((await res.json()) as object) };
}

/** The data of an answer that must have succeeded. */
async function data(query: string, variables?: Record<string, unknown>) {
  const answer = await gql(query, variables);
  expect(answer.errors).toBeUndefined();
  expect(answer.status).toBe(200);
  return answer.data!;
}

async function likeCountOf(id: string): Promise<number> {
  const all: Array<{ id: string; likeCount: number }> = [];
  for (let offset = 0; offset < pages.length + 1; offset += 1000) {
    all.push(...(await data(`query ($o: Int) { Events(limit: 1000, offset: $o) { id likeCount } }`, { o: offset })).Events);
  }
  return all.find((e) => e.id === id)!.likeCount;
}

const likedIds = async (userid: string) =>
  ((await data(`query ($u: String!) { EventsLiked(userid: $u) { id } }`, { u: userid })).EventsLiked as Array<{ id: string }>).map((e) => e.id);

/** RecommendedEvents for `userid`, as {url, similarity}, for comparison with a recomputation. */
async function recommendedFor(userid: string, limit: number) {
  const got = await data(`query ($u: String!, $n: Int) { RecommendedEvents(userid: $u, limit: $n) { id score } }`, { u: userid, n: limit });
  return (got.RecommendedEvents as Array<{ id: string; score: number }>).map((e) => ({ url: byId.get(e.id)!.url, similarity: e.score }));
}

beforeAll(async () => {
  stack = await startStack("graphql");
  c = clientsOf(stack);
  await loadContent(contentOptions(stack, referencePages));
  await replay(replayOptions(stack, referenceClicks));
  vectors = await embedAll(
    c.embedder,
    pages.map((p) => ({ key: p.url, text: `${p.title}\n${p.text}` })),
  );
}, 600_000);
afterAll(async () => stack?.stop());

describe("the reference GraphQL documents, verbatim", () => {
  it("Recommendation equals the reference SQL for that url", async () => {
    const url = "https://en.wikipedia.org/wiki/Generosity%3A%20An%20Enhancement";
    const want = (await referenceCoVisits(clicks)).get(url)!.slice(0, 10);
    expect(want.length).toBeGreaterThan(0);
    expect((await data(DOC.recommendation)).Recommendation).toEqual(want);
  });

  it("SimilarContent ranks as a recomputation from the user's clicks and the Embed RPC does", async () => {
    const user = "f5e9c688-408d-b54f-94aa-493df43dac8c";
    // Every click of the user folded in (the profile's CLICKS consumer is past the last click).
    const last = await clicksLastSequence(stack);
    await expect.poll(async () => (await c.profile.progress({})).clicksAckFloor, { timeout: 60_000 }).toBeGreaterThanOrEqual(last);
    const read = clicks.filter((k) => k.userid === user).map((k) => k.url);
    const ref = rankByMean(
      read.map((url) => vectors.get(url)!),
      vectors,
      10,
      read,
    );
    expectSameRanking((await data(DOC.similarContent)).SimilarContent, ref);
  });

  it("Events lists pages in id order, numbers as numbers", async () => {
    const want = [...pages].sort((a, b) => a.id.length - b.id.length || (a.id < b.id ? -1 : 1)).slice(0, 20);
    expect((await data(DOC.events)).Events).toEqual(want.map((p) => ({ id: p.id, title: p.title, abstract: p.text })));
  });

  it("Events pages with cursors through every page once, in the order the offsets give", async () => {
    const byOffset: string[] = [];
    for (let offset = 0; offset < pages.length; offset += 1000) {
      byOffset.push(
        ...((await data(`query ($o: Int) { Events(limit: 1000, offset: $o) { id } }`, { o: offset })).Events as Array<{ id: string }>).map((e) => e.id),
      );
    }
    const byCursor: string[] = [];
    let cursor: string | null = null;
    let calls = 0;
    do {
      const page = (await data(`query ($c: String) { EventsPage(limit: 1000, cursor: $c) { items { id } nextCursor } }`, { c: cursor })).EventsPage;
      byCursor.push(...(page.items as Array<{ id: string }>).map((e) => e.id));
      cursor = page.nextCursor;
      calls++;
    } while (cursor !== null && calls < 10);
    expect(byOffset).toHaveLength(pages.length);
    expect(byCursor).toEqual(byOffset);
    expect(calls).toBe(Math.ceil(pages.length / 1000));
    // Over Connect, a cursor with an offset is refused naming the field.
    const first = await c.gateway.events({ limit: 10 });
    await expect(c.gateway.events({ limit: 10, offset: 10, cursor: first.nextCursor })).rejects.toThrow(/cursor: give a cursor or an offset, not both/);
  });

  it("AddInterest puts stream-processing pages first in RecommendedEvents", async () => {
    expect((await data(DOC.recommendedEvents)).RecommendedEvents).toEqual([]); // no interest yet: the reference's inner join
    const added = await data(DOC.addInterest, { interest: { userid: "1234", text: INTEREST_TEXT } });
    expect(Date.parse(added.AddInterest._source_time)).toBeGreaterThan(Date.now() - 60_000);
    await expect.poll(async () => (await data(DOC.recommendedEvents)).RecommendedEvents.length, { timeout: 30_000, interval: 100 }).toBe(10);
    const top = (await data(DOC.recommendedEvents)).RecommendedEvents as Array<{ id: string; title: string; abstract: string }>;
    for (const e of top.slice(0, 3)) expect(`${e.title} ${e.abstract}`).toMatch(/stream processing/i);
    expect(top.map((e) => ({ title: e.title, abstract: e.abstract }))).toEqual(
      top.map((e) => ({ title: byId.get(e.id)!.title, abstract: byId.get(e.id)!.text })),
    );
    // And exactly the ranking of the pages by cosine to the embedded interest.
    const [stated] = (await embedAll(c.embedder, [{ key: "interest", text: INTEREST_TEXT }])).values();
    expectSameRanking(await recommendedFor("1234", 10), rankByMean([stated!], vectors, 10));
  });

  it("Likes shows the page in EventsLiked, raises its likeCount and moves the interest; an unlike reverses all three", async () => {
    const [stated] = (await embedAll(c.embedder, [{ key: "interest", text: INTEREST_TEXT }])).values();
    const samza = byId.get(LIKED_ID)!;
    const before = await likeCountOf(LIKED_ID);
    expect(await likedIds("1234")).toEqual([]);

    const liked = await data(DOC.addLike, { liked: { userid: "1234", eventId: 42672986, liked: true } });
    expect(typeof liked.Likes._source_time).toBe("string");
    await expect.poll(() => likedIds("1234"), { timeout: 30_000, interval: 100 }).toEqual([LIKED_ID]);
    expect(await likeCountOf(LIKED_ID)).toBe(before + 1);
    // The liked page itself is left out: the user has seen it.
    expectSameRanking(await recommendedFor("1234", 10), rankByMean([stated!, vectors.get(samza.url)!], vectors, 10, [samza.url]));

    // The same variables with the id as a string, liked false: the unlike. The page stays left out (seen), unless asked for.
    await data(DOC.addLike, { liked: { userid: "1234", eventId: LIKED_ID, liked: false } });
    await expect.poll(() => likedIds("1234"), { timeout: 30_000, interval: 100 }).toEqual([]);
    expect(await likeCountOf(LIKED_ID)).toBe(before);
    expectSameRanking(await recommendedFor("1234", 10), rankByMean([stated!], vectors, 10, [samza.url]));
    const asked = await data(`{ RecommendedEvents(userid: "1234", includeSeen: true) { id score } }`);
    expectSameRanking(
      (asked.RecommendedEvents as Array<{ id: string; score: number }>).map((e) => ({ url: byId.get(e.id)!.url, similarity: e.score })),
      rankByMean([stated!], vectors, 10),
    );
  });

  it("PersonalizedEventSearch for kafka returns exactly the pages that mention Kafka, closest to the interest first", async () => {
    const mentioning = pages.filter((p) => /\bkafka\b/i.test(`${p.title} ${p.text}`));
    expect(mentioning.length).toBeGreaterThan(1);
    const got = (await data(DOC.search)).PersonalizedEventSearch as Array<{ id: string; title: string; abstract: string }>;
    expect(got.map((e) => e.id).sort()).toEqual(mentioning.map((p) => p.id).sort());
    const [stated] = (await embedAll(c.embedder, [{ key: "interest", text: INTEREST_TEXT }])).values();
    const ref = rankByMean([stated!], new Map(mentioning.map((p) => [p.url, vectors.get(p.url)!])), mentioning.length);
    expect(got.map((e) => byId.get(e.id)!.url)).toEqual(ref.top.map((r) => r.url));
  });

  it("Content and Clickstream go through to the pipeline: the user who clicked the new Zoop text is closest to it", async () => {
    expect(await data(DOC.content)).toEqual({ Content: { title: "Zoop" } });
    expect(await data(DOC.clickstream)).toEqual({ Clickstream: { userid: "1" } });
    const zoopUrl = "https://en.wikipedia.org/wiki/Zoop";
    const [zoop] = (await embedAll(c.embedder, [{ key: zoopUrl, text: "Zoop\nZoop is a puzzle video game …" }])).values();
    // The new version keeps the page's id (the mutation sent none) and replaces its text. Wait for
    // it first: the click can land before it, and then the old text's vector is ≈1 to the interest too.
    const zoopId = pages.find((p) => p.url === zoopUrl)!.id;
    await expect
      .poll(async () => (await c.profile.eventsById({ ids: [zoopId] })).items.map((e) => [e.url, e.abstract]), { timeout: 30_000, interval: 100 })
      .toEqual([[zoopUrl, "Zoop is a puzzle video game …"]]);
    await expect
      .poll(async () => (await data(`{ SimilarContent(userid: "1", includeSeen: true) { url similarity } }`)).SimilarContent[0], {
        timeout: 30_000,
        interval: 100,
      })
      .toEqual({ url: zoopUrl, similarity: expect.closeTo(1, 4) });
    // Whichever landed first, the interest is now the new text's vector alone; without includeSeen, Zoop itself is left out.
    const now = new Map(vectors).set(zoopUrl, zoop!);
    expectSameRanking((await data(`{ SimilarContent(userid: "1", includeSeen: true) { url similarity } }`)).SimilarContent, rankByMean([zoop!], now, 10));
    expectSameRanking((await data(`{ SimilarContent(userid: "1") { url similarity } }`)).SimilarContent, rankByMean([zoop!], now, 10, [zoopUrl]));
  });
});

describe("GraphQL errors", () => {
  it("come back as GraphQL errors, never a 500, naming the field, and write nothing", async () => {
    const unknownField = await gql(`{ Events(limit: 1) { id nope } }`);
    expect(unknownField.status).not.toBe(500);
    expect(unknownField.errors?.[0]?.message).toMatch(/nope/);

    const badVariable = await gql(DOC.addLike, { liked: { userid: "1234", eventId: 4.5, liked: true } });
    expect(badVariable.status).not.toBe(500);
    expect(badVariable.errors?.[0]?.message).toMatch(/eventId/);

    const badLimit = await gql(`{ Events(limit: 0) { id } }`);
    expect(badLimit.errors?.[0]).toMatchObject({ message: "limit: must be between 1 and 1000", extensions: { code: "INVALID_ARGUMENT" } });

    const emptyText = await gql(DOC.addInterest, { interest: { userid: "1234", text: " " } });
    expect(emptyText.errors?.[0]).toMatchObject({ message: expect.stringMatching(/^interest\.text: /), extensions: { code: "INVALID_ARGUMENT" } });

    const unknownPage = await gql(DOC.addLike, { liked: { userid: "1234", eventId: "no-such-page", liked: true } });
    expect(unknownPage.errors?.[0]).toMatchObject({ message: expect.stringMatching(/^liked\.eventId: /), extensions: { code: "NOT_FOUND" } });

    // Nothing above reached the bus.
    const engagement = await c.ingest.publishLikes({ likes: [{ userid: "probe", pageId: LIKED_ID, liked: false }] });
    const probeSeq = engagement.results[0]!.outcome.case === "accepted" ? engagement.results[0]!.outcome.value.streamSequence : -1n;
    // The interest (1), like (2), unlike (3), and this probe (4): no refused mutation took a sequence.
    expect(probeSeq).toBe(4n);
  });
});

describe("the same query over Connect", () => {
  it("answers as GraphQL does", async () => {
    const res = await fetch(`${stack.url.gateway}/recsys.gateway.v1.GatewayService/RecommendedEvents`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userid: "1234" }),
    });
    expect(res.status).toBe(200);
    const connect = (await res.json()) as { items: Array<{ id: string; title: string; abstract: string }> };
    const graphql = (await data(DOC.recommendedEvents)).RecommendedEvents;
    expect(connect.items.map((e) => ({ id: e.id, title: e.title, abstract: e.abstract }))).toEqual(graphql);
  });
});
