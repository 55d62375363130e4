// The click analytics through the gateway: the queries pass on to analytics at both doors, and
// Recommendation's opt-in fallback fills up from Trending, each item saying where it came from.
import { Code } from "@connectrpc/connect";
import { beforeEach, describe, expect, it } from "vitest";
import { data, gateway, gatewayOverFakeBackends, serveOpenGateway, type BackendCall } from "./testing.js";

let asked: BackendCall[] = [];
serveOpenGateway(gatewayOverFakeBackends({ record: (call) => asked.push(call) }));
beforeEach(() => {
  asked = [];
});

describe("analytics queries", () => {
  it("ClickMetrics passes its filters on and answers the reference's columns, over Connect and GraphQL", async () => {
    const res = await gateway.clickMetrics({ userid: "1", from: "2024-05-01T09:00:00Z", to: "2024-05-01T10:00:00Z" });
    expect(res.rows).toEqual([expect.objectContaining({ windowStart: "2024-05-01T09:00:00.000Z", userid: "1", event: "view", eventCount: 2n })]);
    expect(asked).toEqual([{ rpc: "analytics.clickMetrics", req: { userid: "1", from: "2024-05-01T09:00:00Z", to: "2024-05-01T10:00:00Z" } }]);
    const graphql = await data(`{ ClickMetrics(url: "https://e.org/a", event: "view") { window_start window_end userid event url event_count } }`);
    expect(graphql.ClickMetrics).toEqual([
      { window_start: "2024-05-01T09:00:00.000Z", window_end: "2024-05-01T09:05:00.000Z", userid: "1", event: "view", url: "https://e.org/a", event_count: 2 },
    ]);
    expect(asked[1]).toEqual({ rpc: "analytics.clickMetrics", req: { url: "https://e.org/a", event: "view", limit: 100 } });
  });

  it("EventMix and Trending answer what analytics counted; Trending's window defaults to 1h", async () => {
    expect(await data(`{ EventMix(from: "2024-05-01T09:00:00Z", to: "2024-05-01T10:00:00Z") { events { event clicks } complete } }`)).toEqual({
      EventMix: { events: [{ event: "view", clicks: 7 }], complete: true },
    });
    expect((await data(`{ Trending(limit: 2) { url clicks } }`)).Trending[0]).toEqual({ url: "https://en.wikipedia.org/wiki/Kindness", clicks: 9 });
    expect((await gateway.trending({ event: "add_to_cart" })).urls).toHaveLength(4);
    expect(asked.map((a) => a.req)).toEqual([
      { from: "2024-05-01T09:00:00Z", to: "2024-05-01T10:00:00Z" },
      { window: "1h", limit: 2 },
      { window: "1h", event: "add_to_cart" },
    ]);
  });
});

describe("Recommendation's fallback", () => {
  it("fills up to the limit from related content, then Trending, leaving out the page itself and what was listed; each item names its source", async () => {
    const res = await gateway.recommendation({ url: "https://e.org/a", limit: 4, fallback: true, userid: "writer" });
    expect(res.items.map((i) => [i.recommendation, Number(i.frequency), i.source])).toEqual([
      ["https://en.wikipedia.org/wiki/Kindness", 3, "covisit"],
      // Its similarity in thousandths.
      ["https://e.org/r1", 912, "related"],
      ["https://e.org/t1", 5, "trending"],
      ["https://e.org/t2", 4, "trending"],
    ]);
    // The reader clicked t1 lately: covisit says so, and the trending step leaves it out as the co-visits do.
    const before = asked.length;
    const reader = await gateway.recommendation({ url: "https://e.org/a", limit: 4, fallback: true, userid: "reader" });
    expect(reader.items.map((i) => i.recommendation)).toEqual(["https://en.wikipedia.org/wiki/Kindness", "https://e.org/r1", "https://e.org/t2"]);
    // Asked about the trending urls only, not for every page the user clicked lately (up to 8,640 a day).
    const recentAsked = asked.slice(before).filter((a) => a.rpc === "covisit.recentPages");
    expect(recentAsked).toHaveLength(1);
    expect(recentAsked[0]!.req).toMatchObject({ userid: "reader", urls: expect.arrayContaining(["https://e.org/t1", "https://e.org/t2"]) });
    // The user goes to covisit and profile, which leave out the pages the user has seen.
    expect(asked.slice(0, 2)).toEqual([
      { rpc: "covisit.batchRecommendation", req: { requests: [{ url: "https://e.org/a", limit: 4, userid: "writer" }] } },
      { rpc: "profile.relatedContent", req: { url: "https://e.org/a", limit: 5, userid: "writer" } },
    ]);
    const graphql = await data(`{ Recommendation(url: "https://e.org/a", limit: 2, fallback: true) { recommendation source } }`);
    expect(graphql.Recommendation).toEqual([
      { recommendation: "https://en.wikipedia.org/wiki/Kindness", source: "covisit" },
      { recommendation: "https://e.org/r1", source: "related" },
    ]);
    // A page profile does not have: co-visits, then Trending.
    const unknown = await gateway.recommendation({ url: "https://e.org/new", limit: 2, fallback: true });
    expect(unknown.items.map((i) => i.source)).toEqual(["covisit", "trending"]);
  });

  it("RelatedContent answers profile's pages over Connect and GraphQL, NotFound for a page it does not have", async () => {
    expect((await gateway.relatedContent({ url: "https://e.org/a", limit: 2 })).items.map((i) => [i.url, i.similarity])).toEqual([
      ["https://en.wikipedia.org/wiki/Kindness", 0.95],
      ["https://e.org/r1", 0.9124],
    ]);
    expect((await data(`{ RelatedContent(url: "https://e.org/a") { url title similarity } }`)).RelatedContent[1]).toEqual({
      url: "https://e.org/r1",
      title: "R1",
      similarity: 0.9124,
    });
    await expect(gateway.relatedContent({ url: "https://e.org/none" })).rejects.toMatchObject({
      code: Code.NotFound,
      rawMessage: "url: no page stored at https://e.org/none",
    });
    await expect(gateway.relatedContent({ url: "https://e.org/a", limit: 0 })).rejects.toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: "limit: must be between 1 and 1000",
    });
  });

  it("changes nothing without the flag, or when co-visits fill the limit", async () => {
    const plain = await gateway.recommendation({ url: "https://e.org/a", limit: 3 });
    expect(plain.items.map((i) => [i.recommendation, i.source])).toEqual([["https://en.wikipedia.org/wiki/Kindness", ""]]);
    expect((await data(`{ Recommendation(url: "https://e.org/a") { recommendation source } }`)).Recommendation).toEqual([
      { recommendation: "https://en.wikipedia.org/wiki/Kindness", source: null },
    ]);
    await gateway.recommendation({ url: "https://e.org/a", limit: 1, fallback: true });
    expect(asked.map((a) => a.rpc)).not.toContain("analytics.trending");
  });
});
