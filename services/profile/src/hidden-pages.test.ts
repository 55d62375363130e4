import { create, toBinary } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import type { Bus } from "@recsys/bus";
import { PageVisibilitySchema } from "@recsys/contracts/events/v1/events";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { describe, expect, it } from "vitest";
import { applyVisibilityMessage } from "./consumers.js";
import { profileRoutes } from "./handlers.js";
import { page, randomVectors, testDatabase } from "./testing.js";

// Pages hidden through VISIBILITY, against the real PostgreSQL; answers through the RPCs.
const { store } = testDatabase("hidden", { emptyEachTest: true });
const client = createClient(ProfileService, createRouterTransport(profileRoutes(store, {} as Bus)));
const { unitVector } = randomVectors(99);

const urls = Array.from({ length: 12 }, (_, i) => `https://e.org/h${String(i).padStart(2, "0")}`);
const visibility = (url: string, hidden: boolean) =>
  toBinary(PageVisibilitySchema, create(PageVisibilitySchema, { eventId: `${url}:${hidden}`, url, hidden, ingestTimeMs: 1n }));
const ack = { kind: "ack" };
const dot = (a: number[], b: number[]) => a.reduce((s, x, k) => s + x * b[k]!, 0);

/** Pages h00..h11, each titled "kafka …" so that one search matches all; their vectors by url. */
async function storePages(): Promise<Map<string, number[]>> {
  const vectors = new Map(urls.map((url) => [url, unitVector()] as const));
  for (const [url, v] of vectors) await store.applyEmbedding({ ...page(url, v), title: `kafka ${url}` });
  return vectors;
}
/** The urls by similarity to `to`, desc, then url: the exact ranking. */
const ranking = (vectors: Map<string, number[]>, to: number[]) =>
  [...vectors].sort(([ua, a], [ub, b]) => dot(b, to) - dot(a, to) || (ua < ub ? -1 : 1)).map(([url]) => url);

describe("hidden pages", () => {
  it("are never recommended, and every list stays `limit` long; the catalogue keeps them, and shown again they come back", async () => {
    const vectors = await storePages();
    const clicked = urls[0]!;
    await store.applyClick({ eventId: "c1", userid: "u", url: clicked, eventTimeMs: 0, event: "view", seq: 1 });
    const interest = vectors.get(clicked)!;
    const ranked = ranking(vectors, interest).filter((u) => u !== clicked);
    // The user's three nearest unseen pages, and the first by url, hidden.
    const hidden = [...ranked.slice(0, 3), urls[1]!];
    let seq = 1;
    for (const url of hidden) expect(await applyVisibilityMessage(visibility(url, true), seq++, store)).toEqual(ack);
    const shown = ranked.filter((u) => !hidden.includes(u));

    const similar = await client.similarContent({ userid: "u", limit: 5 });
    expect(similar.items.map((i) => i.url)).toEqual(shown.slice(0, 5));
    expect(similar.items[0]!.similarity).toBeCloseTo(dot(vectors.get(shown[0]!)!, interest), 5);
    // With the seen pages, still without the hidden ones.
    expect((await client.similarContent({ userid: "u", limit: 5, includeSeen: true })).items.map((i) => i.url)).toEqual([clicked, ...shown].slice(0, 5));
    // A user without an interest: pages in url order, past the hidden ones.
    expect((await client.similarContent({ userid: "new", limit: 5 })).items.map((i) => i.url)).toEqual(urls.filter((u) => !hidden.includes(u)).slice(0, 5));
    const batch = await client.batchSimilarContent({
      requests: [
        { userid: "u", limit: 5 },
        { userid: "new", limit: 3 },
      ],
    });
    expect(batch.results.map((r) => (r.outcome.case === "response" ? r.outcome.value.items.map((i) => i.url) : []))).toEqual([
      shown.slice(0, 5),
      urls.filter((u) => !hidden.includes(u)).slice(0, 3),
    ]);
    expect((await client.recommendedEvents({ userid: "u", limit: 5 })).items.map((e) => e.url)).toEqual(shown.slice(0, 5));
    // RelatedContent of a page: its neighbours but the hidden ones (and, with the userid, the clicked one).
    const of = shown[0]!;
    const related = ranking(vectors, vectors.get(of)!).filter((u) => u !== of && !hidden.includes(u));
    expect((await client.relatedContent({ url: of, limit: 5 })).items.map((i) => i.url)).toEqual(related.slice(0, 5));
    expect((await client.relatedContent({ url: of, limit: 5, userid: "u" })).items.map((i) => i.url)).toEqual(related.filter((u) => u !== clicked).slice(0, 5));
    // A hidden page still has neighbours; it is only never listed.
    expect((await client.relatedContent({ url: hidden[0]!, limit: 3 })).items).toHaveLength(3);
    const search = await client.personalizedEventSearch({ query: "kafka", userid: "u", limit: 5 });
    expect(search.items.map((e) => e.url)).toEqual([clicked, ...shown].slice(0, 5));
    // The catalogue lists every page.
    expect((await client.events({ limit: 100 })).items.map((e) => e.url).sort()).toEqual(urls);
    expect((await client.eventsById({ ids: hidden })).items).toHaveLength(hidden.length);

    // Shown again: back where its similarity puts it.
    expect(await applyVisibilityMessage(visibility(hidden[0]!, false), seq++, store)).toEqual(ack);
    expect((await client.similarContent({ userid: "u", limit: 2 })).items.map((i) => i.url)).toEqual([hidden[0], shown[0]]);
    expect((await client.recommendedEvents({ userid: "u", limit: 1 })).items.map((e) => e.url)).toEqual([hidden[0]]);
  });

  // The hidden pages are looked up for each row a scan keeps (an anti-join), the seen ones compared with the row: with few of each
  // and with many, the same pages are left out as the definition leaves out.
  it.each([
    [3, 1, 4],
    [80, 10, 70],
  ])("and seen pages are left out exactly, %i clicked, %i liked and %i hidden of 200", async (clickedCount, likedCount, hiddenCount) => {
    const all = Array.from({ length: 200 }, (_, i) => `https://e.org/p${String(i).padStart(3, "0")}`);
    const vectors = new Map(all.map((url) => [url, unitVector()] as const));
    for (const [url, v] of vectors) await store.applyEmbedding(page(url, v));
    // Pages in an order that spreads them over the ranking (7 and 200 have no common divisor): the first clicked, the next liked,
    // the next hidden.
    const order = all.map((_, k) => all[(k * 7) % all.length]!);
    const clicked = order.slice(0, clickedCount);
    const liked = order.slice(clickedCount, clickedCount + likedCount);
    const hidden = order.slice(clickedCount + likedCount, clickedCount + likedCount + hiddenCount);
    const outcomes = await store.applyClicks(clicked.map((url, k) => ({ eventId: `c${k}`, userid: "u", url, eventTimeMs: k, event: "view", seq: k + 1 })));
    expect(outcomes.every((o) => o.status === "applied")).toBe(true);
    for (const [k, pageId] of liked.entries()) await store.applyLike({ eventId: `l${k}`, userid: "u", pageId, liked: true, sourceTimeMs: BigInt(k) });
    let seq = 1;
    for (const url of hidden) expect(await applyVisibilityMessage(visibility(url, true), seq++, store)).toEqual(ack);
    const seen = [...clicked, ...liked];
    // The interest: the mean of the clicked and liked pages' vectors (the ranking only needs its direction).
    const interest = seen.map((u) => vectors.get(u)!).reduce((a, b) => a.map((x, k) => x + b[k]!));
    const unseen = ranking(vectors, interest).filter((u) => !seen.includes(u) && !hidden.includes(u));
    const visible = ranking(vectors, interest).filter((u) => !hidden.includes(u));

    const limit = 30;
    expect((await client.similarContent({ userid: "u", limit })).items.map((i) => i.url)).toEqual(unseen.slice(0, limit));
    expect((await client.similarContent({ userid: "u", limit, includeSeen: true })).items.map((i) => i.url)).toEqual(visible.slice(0, limit));
    const batch = await client.batchSimilarContent({
      requests: [
        { userid: "u", limit },
        { userid: "new", limit: 5 },
      ],
    });
    expect(batch.results.map((r) => (r.outcome.case === "response" ? r.outcome.value.items.map((i) => i.url) : []))).toEqual([
      unseen.slice(0, limit),
      all.filter((u) => !hidden.includes(u)).slice(0, 5),
    ]);
    expect((await client.recommendedEvents({ userid: "u", limit })).items.map((e) => e.url)).toEqual(unseen.slice(0, limit));
    expect((await client.recommendedEvents({ userid: "u", limit, includeSeen: true })).items.map((e) => e.url)).toEqual(visible.slice(0, limit));
    const of = unseen[0]!;
    const related = ranking(vectors, vectors.get(of)!).filter((u) => u !== of && !hidden.includes(u));
    expect((await client.relatedContent({ url: of, limit })).items.map((i) => i.url)).toEqual(related.slice(0, limit));
    expect((await client.relatedContent({ url: of, limit, userid: "u" })).items.map((i) => i.url)).toEqual(
      related.filter((u) => !seen.includes(u)).slice(0, limit),
    );
  });

  it("keep a url's newest state by stream sequence: an older one after it, or a redelivery, changes nothing", async () => {
    await storePages();
    const [a] = urls;
    expect(await applyVisibilityMessage(visibility(a!, true), 5, store)).toEqual(ack);
    // An older "shown" (a consumer that started over reads the stream again) comes after it.
    expect(await applyVisibilityMessage(visibility(a!, false), 3, store)).toEqual(ack);
    expect(await store.applyVisibility({ url: a!, hidden: false, seq: 5 })).toBe("stale");
    expect((await client.similarContent({ userid: "new", limit: 3 })).items.map((i) => i.url)).toEqual(urls.slice(1, 4));
    expect(await applyVisibilityMessage(visibility(a!, false), 6, store)).toEqual(ack);
    expect(await applyVisibilityMessage(visibility(a!, true), 4, store)).toEqual(ack);
    expect((await client.similarContent({ userid: "new", limit: 3 })).items.map((i) => i.url)).toEqual(urls.slice(0, 3));
    // A page hidden before it is embedded is hidden once it is.
    const later = "https://e.org/a-later-page";
    expect(await applyVisibilityMessage(visibility(later, true), 7, store)).toEqual(ack);
    await store.applyEmbedding(page(later, unitVector()));
    expect((await client.similarContent({ userid: "new", limit: 20 })).items.map((i) => i.url)).toEqual(urls);
  });

  it("dead-letter a visibility without a url", async () => {
    expect(await applyVisibilityMessage(visibility("", true), 1, store)).toMatchObject({ kind: "dead-letter", cause: "undecodable" });
    expect(await applyVisibilityMessage(Uint8Array.of(0xff, 0xff), 2, store)).toMatchObject({ kind: "dead-letter" });
  });
});
