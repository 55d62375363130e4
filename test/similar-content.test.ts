import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { loadContent } from "@recsys/loadgen/content";
import { replay } from "@recsys/loadgen/replay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { contentOptions, replayOptions } from "./harness/replay.js";
import { readJsonLinesGz } from "./harness/files.js";
import { embedAll, expectSameRanking, rankByMean } from "./harness/ranking.js";
import { referenceClicks, referencePages, startStack, type TestStack } from "./harness/stack.js";
import { clicksLastSequence } from "./harness/oracle.js";

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;

interface Page {
  id: string;
  url: string;
  title: string;
  text: string;
}
const pages = readJsonLinesGz<Page>(referencePages);
const clicks = readJsonLinesGz<{ userid: string; url: string }>(referenceClicks);

/** The reference for a user: the mean of the vectors behind the user's clicks; the clicked pages left out unless `includeSeen`. */
const recompute = (userClicks: string[], vectors: Map<string, number[]>, limit: number, includeSeen = false) =>
  rankByMean(
    userClicks.map((url) => vectors.get(url)!),
    vectors,
    limit,
    includeSeen ? [] : userClicks,
  );

function sampleUsers(n: number): string[] {
  const users = [...new Set(clicks.map((k) => k.userid))].sort();
  return Array.from({ length: n }, (_, i) => users[Math.floor((i * users.length) / n)]!);
}

beforeAll(async () => {
  stack = await startStack("similar");
  c = clientsOf(stack);
  // Clicks first: every click is parked until its page is embedded, the harder path.
  await replay(replayOptions(stack, referenceClicks));
  const loaded = await loadContent(contentOptions(stack, referencePages));
  expect(loaded).toMatchObject({ accepted: 2596, rejected: 0, pagesStored: 2596 });
  // Every click folded in: the profile's CLICKS consumer is past the last click, nothing parked.
  const last = await clicksLastSequence(stack);
  for (let i = 0; i < 600; i++) {
    const p = await c.profile.progress({});
    if (p.clicksAckFloor >= last && p.parkedClicks === 0n) break;
    await sleep(100);
  }
}, 600_000);
afterAll(async () => stack?.stop());

describe("SimilarContent over the reference pages and clicks", () => {
  let vectors: Map<string, number[]>;
  beforeAll(async () => {
    vectors = await embedAll(
      c.embedder,
      pages.map((p) => ({ key: p.url, text: `${p.title}\n${p.text}` })),
    );
  }, 300_000);

  it("stores every page and folds in every parked click", async () => {
    const p = await c.profile.progress({});
    expect(p.pages).toBe(2596n);
    expect(p.parkedClicks).toBe(0n);
    expect(p.clicksAckFloor).toBeGreaterThanOrEqual(await clicksLastSequence(stack));
  });

  it("ranks pages for sampled users as a recomputation from the Embed RPC's vectors does, without the pages each user read", async () => {
    let unclickedShown = 0;
    let readShown = 0;
    let readShownWhenAsked = 0;
    const clicked = new Set(clicks.map((k) => k.url));
    for (const user of sampleUsers(40)) {
      const read = clicks.filter((k) => k.userid === user).map((k) => k.url);
      const got = (await c.gateway.similarContent({ userid: user })).items;
      expectSameRanking(got, recompute(read, vectors, 10));
      unclickedShown += got.filter((g) => !clicked.has(g.url)).length;
      readShown += got.filter((g) => read.includes(g.url)).length;
      expect(got.map((g) => g.title)).toEqual(got.map((g) => pages.find((p) => p.url === g.url)!.title));
      // Asked to, it lists them as before.
      const all = (await c.gateway.similarContent({ userid: user, includeSeen: true })).items;
      expectSameRanking(all, recompute(read, vectors, 10, true));
      readShownWhenAsked += all.filter((g) => read.includes(g.url)).length;
    }
    // Content-based: pages nobody clicked are recommended too. Of the 400 pages in the 40 lists, those the user had read:
    // none, and most of them when asked for.
    expect(unclickedShown).toBeGreaterThan(0);
    expect({ readShown, readShownWhenAsked: readShownWhenAsked > 200 }).toEqual({ readShown: 0, readShownWhenAsked: true });
  });

  it("RelatedContent ranks the pages nearest in meaning to a page, clicked or not, as a recomputation from its vector does", async () => {
    const clicked = new Set(clicks.map((k) => k.url));
    const neverClicked = pages.filter((p) => !clicked.has(p.url)).map((p) => p.url);
    expect(neverClicked.length).toBeGreaterThan(0);
    const sample = [
      ...neverClicked.slice(0, 5),
      ...pages
        .filter((p) => clicked.has(p.url))
        .slice(0, 5)
        .map((p) => p.url),
    ];
    for (const url of sample) {
      const got = (await c.gateway.relatedContent({ url, limit: 20 })).items;
      expectSameRanking(got, rankByMean([vectors.get(url)!], vectors, 20, [url]));
    }
    // With a userid, the pages that user read are left out as well.
    const user = sampleUsers(1)[0]!;
    const read = clicks.filter((k) => k.userid === user).map((k) => k.url);
    const got = (await c.gateway.relatedContent({ url: read[0]!, userid: user })).items;
    expectSameRanking(got, rankByMean([vectors.get(read[0]!)!], vectors, 10, read));
    const unknown = await c.gateway.relatedContent({ url: "https://en.wikipedia.org/wiki/No_such_page_here" }).catch((e: unknown) => ConnectError.from(e));
    expect(unknown).toMatchObject({ code: Code.NotFound, rawMessage: "url: no page stored at https://en.wikipedia.org/wiki/No_such_page_here" });
  });

  it("answers a deep limit exactly too", async () => {
    const user = sampleUsers(1)[0]!;
    const ref = recompute(
      clicks.filter((k) => k.userid === user).map((k) => k.url),
      vectors,
      200,
    );
    expectSameRanking((await c.gateway.similarContent({ userid: user, limit: 200 })).items, ref);
  });

  it("gives a user without clicks `limit` pages with similarity 0 in url order", async () => {
    const got = (await c.gateway.similarContent({ userid: "nobody-at-all", limit: 5 })).items;
    const byUrl = pages.map((p) => p.url).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    expect(got.map((g) => [g.url, g.similarity])).toEqual(byUrl.slice(0, 5).map((u) => [u, 0]));
  });

  it("follows a new page and a newer version of a page through the Content mutation", async () => {
    const user = "content-mutation-user";
    // A page that is not in the reference data, and a newer version of one that is.
    const zoop = {
      url: "https://en.wikipedia.org/wiki/Zoop_(new)",
      title: "Zoop",
      text: "Zoop is a puzzle video game originally developed by Hookstone Productions.",
    };
    const old = pages[0]!;
    const newer = { url: old.url, title: old.title, text: "A completely different text about puzzle video games and falling coloured pieces." };
    await c.gateway.content({ event: zoop });
    await c.gateway.clickstream({ event: { userid: user, url: zoop.url } });
    await c.gateway.clickstream({ event: { userid: user, url: old.url } });
    await c.gateway.content({ event: { ...newer, sourceTime: new Date().toISOString() } });
    const mine = await embedAll(c.embedder, [
      { key: zoop.url, text: `${zoop.title}\n${zoop.text}` },
      { key: old.url, text: `${newer.title}\n${newer.text}` },
    ]);
    const now = new Map(vectors);
    for (const [u, v] of mine) now.set(u, v);
    const ref = recompute([zoop.url, old.url], now, 10);
    await expect
      .poll(
        async () => {
          const got = (await c.gateway.similarContent({ userid: user })).items;
          return got.length === 10 && got.every((g, i) => Math.abs(g.similarity - ref.top[i]!.similarity) < 1e-4);
        },
        { timeout: 30_000, interval: 100 },
      )
      .toBe(true);
    expectSameRanking((await c.gateway.similarContent({ userid: user })).items, ref);
  });

  it("refuses bad input naming the field", async () => {
    const code = async (p: Promise<unknown>) =>
      p.then(
        () => "ok",
        (e) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
      );
    expect(await code(c.gateway.similarContent({ userid: "" }))).toMatch(/^InvalidArgument: userid: /);
    expect(await code(c.gateway.similarContent({ userid: "u", limit: 1001 }))).toMatch(/^InvalidArgument: limit: /);
    expect(await code(c.gateway.content({ event: { url: "not a url", title: "t", text: "x" } }))).toMatch(/^InvalidArgument: event\.url: /);
    expect(await code(c.gateway.content({ event: { url: "https://e.org/x", title: "t", text: "x".repeat(33 * 1024) } }))).toMatch(
      /^InvalidArgument: event\.text: /,
    );
    expect(await code(c.embedder.embed({ texts: [] }))).toMatch(/^InvalidArgument: texts: /);
    expect(await code(c.embedder.embed({ texts: Array(257).fill("a") }))).toMatch(/^InvalidArgument: texts: /);
    expect(await code(c.embedder.embed({ texts: ["ok", "y".repeat(32 * 1024 + 1)] }))).toMatch(/^InvalidArgument: texts\[1\]: /);
    expect((await c.profile.progress({})).pages).toBe(2597n);
  });
});
