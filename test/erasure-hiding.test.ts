import { spawnSync } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Topology } from "@recsys/bus";
import { loadContent } from "@recsys/loadgen/content";
import { replay } from "@recsys/loadgen/replay";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence, expectCovisitEquals, loseRedisData, referenceWorkload, type ReferenceWorkload } from "./harness/oracle.js";
import { embedAll, expectSameRanking, rankByMean } from "./harness/ranking.js";
import { contentOptions, replayOptions } from "./harness/replay.js";
import { natsOf, referenceClicks, referencePages, repoRoot, startStack, type TestStack } from "./harness/stack.js";

// DeleteUser and HidePage on the whole stack: both are events on the bus (an erasure on CLICKS in the user's partition, a page's
// visibility on VISIBILITY), answered once every consumer applied them, so that the next query already sees them; and a rebuild
// of covisit from the archive after Redis lost its data gives the same answers as before it.

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;
let ref: ReferenceWorkload;
let vectors: Map<string, number[]>;
const archiveDir = mkdtempSync(join(tmpdir(), "recsys-erasure-"));

/** The reference co-visits with `hidden` left out of every list. */
const without = (hidden: string) => new Map([...ref.coVisits].map(([url, list]) => [url, list.filter((r) => r.recommendation !== hidden)] as const));
const recommendation = async (url: string, limit: number, userid = "") =>
  (await c.gateway.recommendation({ url, limit, userid })).items.map((i) => ({ recommendation: i.recommendation, frequency: Number(i.frequency) }));
const notFound = (field: string) => (err: unknown) => err instanceof ConnectError && err.code === Code.NotFound && err.rawMessage.startsWith(`${field}: `);

beforeAll(async () => {
  stack = await startStack(
    "erasure",
    { ARCHIVE_DIR: archiveDir },
    { services: ["ingest", "covisit", "embedder", "profile", "analytics", "archive", "gateway"] },
  );
  c = clientsOf(stack);
  ref = await referenceWorkload();
  await replay(replayOptions(stack, referenceClicks));
  const loaded = await loadContent(contentOptions(stack, referencePages));
  expect(loaded).toMatchObject({ accepted: 2596, pagesStored: 2596 });
  await settle();
  vectors = await embedAll(
    c.embedder,
    ref.pages.map((p) => ({ key: p.url, text: `${p.title}\n${p.text}` })),
  );
}, 600_000);
afterAll(async () => {
  await stack?.stop();
  rmSync(archiveDir, { recursive: true, force: true });
});

/** The user with the most reference clicks, their pages, and a page they never clicked. */
function heavyUser() {
  const byUser = new Map<string, string[]>();
  for (const k of ref.clicks) byUser.set(k.userid, [...(byUser.get(k.userid) ?? []), k.url]);
  const [userid, urls] = [...byUser].sort((a, b) => b[1].length - a[1].length)[0]!;
  const lastMs = Math.max(...ref.clicks.filter((k) => k.userid === userid).map((k) => Date.parse(k.event_time)));
  return { userid, urls: [...new Set(urls)], lastMs };
}

/** Waits until covisit and profile applied everything now in CLICKS and stored every page (in a hook too, where expect.poll is not). */
async function settle() {
  const last = await clicksLastSequence(stack);
  for (let i = 0; i < 1800; i++) {
    const [covisit, profile] = await Promise.all([c.covisit.progress({}), c.profile.progress({})]);
    if (covisit.ackFloorStreamSequence >= last && profile.clicksAckFloor >= last && profile.parkedClicks === 0n && profile.pages === 2596n) return;
    await sleep(100);
  }
  throw new Error("covisit and profile did not apply every click within 3 minutes");
}

describe("DeleteUser", () => {
  let user: ReturnType<typeof heavyUser>;
  beforeAll(() => {
    user = heavyUser();
  });
  const liked = () => ref.pages.find((p) => !user.urls.includes(p.url) && p.id !== "")!;
  let erasureSeq = 0n;
  let after = "";

  it("forgets the user at once (interest, history, likes, stated interests) while the aggregate co-visit counts stay", async () => {
    await c.gateway.likes({ liked: { userid: user.userid, eventId: liked().id, liked: true } });
    await c.gateway.addInterest({ interest: { userid: user.userid, text: "stream processing with Apache Flink" } });
    await expect.poll(async () => (await c.gateway.eventsLiked({ userid: user.userid })).items.length, { timeout: 30_000 }).toBe(1);
    await expect.poll(async () => (await c.profile.progress({})).interestEmbeddingsAckFloor, { timeout: 60_000 }).toBeGreaterThan(0n);
    const stranger = (await c.gateway.similarContent({ userid: "never-seen-user" })).items;
    expect((await c.gateway.similarContent({ userid: user.userid })).items).not.toEqual(stranger);
    expect((await c.covisit.recentPages({ userid: user.userid })).urls.length).toBeGreaterThan(0);

    const answer = await c.gateway.deleteUser({ userid: user.userid });
    expect(answer.pending).toEqual([]);
    erasureSeq = await clicksLastSequence(stack);

    // At once: the answers of a user nobody has seen.
    expect((await c.gateway.similarContent({ userid: user.userid })).items).toEqual(stranger);
    expect((await c.gateway.recommendedEvents({ userid: user.userid })).items).toEqual(
      (await c.gateway.recommendedEvents({ userid: "never-seen-user" })).items,
    );
    expect((await c.gateway.eventsLiked({ userid: user.userid })).items).toEqual([]);
    expect((await c.covisit.recentPages({ userid: user.userid })).urls).toEqual([]);
    expect((await c.gateway.clickMetrics({ userid: user.userid, limit: 1000 })).rows).toEqual([]);
    for (const url of user.urls.slice(0, 5)) expect(await recommendation(url, 20, user.userid)).toEqual(await recommendation(url, 20));
    // The co-visits the user made carry no userid: every url still equals the reference SQL.
    await expectCovisitEquals(stack, user.urls, ref.coVisits);
    // Nothing is known of the user any more.
    await expect(c.gateway.deleteUser({ userid: user.userid })).rejects.toSatisfy(notFound("userid"));
    await expect(c.gateway.deleteUser({ userid: "nobody-at-all" })).rejects.toSatisfy(notFound("userid"));
  });

  it("later clicks of the same userid are a new user's: they pair with none of the erased user's clicks", async () => {
    after = ref.pages.find((p) => !user.urls.includes(p.url) && p.url !== liked().url)!.url;
    // A minute after the erased user's last click: the same user would have made co-visits from their last pages to it.
    await c.gateway.clickstream({ event: { userid: user.userid, url: after, eventTime: new Date(user.lastMs + 60_000).toISOString() } });
    await settle();
    expect((await c.covisit.recentPages({ userid: user.userid })).urls).toEqual([after]);
    await expectCovisitEquals(stack, user.urls, ref.coVisits);
    expectSameRanking((await c.gateway.similarContent({ userid: user.userid })).items, rankByMean([vectors.get(after)!], vectors, 10, [after]));
    expect((await c.gateway.eventsLiked({ userid: user.userid })).items).toEqual([]);
  });

  describe("HidePage", () => {
    // A url with the most co-visits, and its first recommendation: the page to hide.
    const busiest = () => [...ref.coVisits].sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : 1))[0]!;
    const hiddenUrl = () => busiest()[1][0]!.recommendation;
    const reader = "hide-reader";

    /** Every query a page can come from, for the hidden page's neighbourhood. */
    async function everyQuery() {
      const page = ref.pages.find((p) => p.url === hiddenUrl())!;
      const neighbour = rankByMean([vectors.get(page.url)!], vectors, 1, [page.url]).top[0]!.url;
      return {
        recommendation: await recommendation(busiest()[0], 10),
        fallback: (await c.gateway.recommendation({ url: busiest()[0], limit: 1000, fallback: true })).items.map((i) => i.recommendation),
        similar: (await c.gateway.similarContent({ userid: reader, includeSeen: true })).items,
        related: (await c.gateway.relatedContent({ url: neighbour })).items,
        recommended: (await c.gateway.recommendedEvents({ userid: reader, includeSeen: true })).items.map((e) => e.url),
        search: (await c.gateway.personalizedEventSearch({ query: page.title, userid: reader })).items.map((e) => e.url),
        trending: (await c.gateway.trending({ limit: 1000 })).urls.map((u) => u.url),
        neighbour,
      };
    }

    it("hides a page from every query at once, the lists filled from the next pages, and shows it again", async () => {
      await c.gateway.clickstream({ event: { userid: reader, url: hiddenUrl() } });
      await settle();
      // The reader's click makes the page trend, once analytics has it.
      await expect.poll(async () => (await c.gateway.trending({ limit: 1000 })).urls.map((u) => u.url), { timeout: 30_000 }).toContain(hiddenUrl());
      const before = await everyQuery();
      expect(before.recommendation.map((r) => r.recommendation)).toContain(hiddenUrl());
      expect(before.similar[0]!.url).toBe(hiddenUrl());
      expect(before.related.map((p) => p.url)).toContain(hiddenUrl());
      expect(before.search).toContain(hiddenUrl());

      expect((await c.gateway.hidePage({ url: hiddenUrl(), hidden: true })).pending).toEqual([]);
      const hidden = await everyQuery();
      expect(hidden.recommendation).toEqual(without(hiddenUrl()).get(busiest()[0])!.slice(0, 10));
      expect(hidden.fallback).not.toContain(hiddenUrl());
      expectSameRanking(hidden.similar, rankByMean([vectors.get(hiddenUrl())!], vectors, 10, [hiddenUrl()]));
      expectSameRanking(hidden.related, rankByMean([vectors.get(hidden.neighbour)!], vectors, 10, [hidden.neighbour, hiddenUrl()]));
      expect(hidden.recommended).toHaveLength(10);
      expect(hidden.recommended).not.toContain(hiddenUrl());
      expect(hidden.search).not.toContain(hiddenUrl());
      // Hidden, the others keep their order.
      expect(hidden.trending.filter((u) => before.trending.includes(u))).toEqual(before.trending.filter((u) => u !== hiddenUrl()));

      expect((await c.gateway.hidePage({ url: hiddenUrl(), hidden: false })).pending).toEqual([]);
      expect(await everyQuery()).toEqual(before);
    });

    it("refuses an unknown page with NotFound naming url, and a bad one with InvalidArgument, hiding nothing", async () => {
      await expect(c.gateway.hidePage({ url: "https://en.wikipedia.org/wiki/No_such_page_here", hidden: true })).rejects.toSatisfy(notFound("url"));
      await expect(c.gateway.hidePage({ url: "not a url", hidden: true })).rejects.toSatisfy(
        (err: unknown) => err instanceof ConnectError && err.code === Code.InvalidArgument && err.rawMessage.startsWith("url: "),
      );
    });

    it("a rebuild of covisit from the archive, after Redis lost its data, keeps the erasure and the hidden page", async () => {
      expect((await c.gateway.hidePage({ url: hiddenUrl(), hidden: true })).pending).toEqual([]);
      const want = {
        recent: (await c.covisit.recentPages({ userid: user.userid })).urls,
        forUser: await recommendation(busiest()[0], 50, user.userid),
      };
      expect(want.recent).toEqual([after]);
      // The erasure leaves CLICKS: only the archive holds it.
      const last = await clicksLastSequence(stack);
      await expect.poll(async () => (await c.archive.progress({})).tables.find((t) => t.table === "clicks")!.archivedThrough, { timeout: 90_000 }).toBe(last);
      const nc = await connect({ servers: natsOf(stack) });
      await (await jetstreamManager(nc)).streams.purge(new Topology(stack.namespace).clicksStream, { seq: Number(erasureSeq) + 1 });
      await nc.close();

      await stack.kill("covisit");
      await loseRedisData(stack);
      const rebuilt = spawnSync(process.execPath, [join(repoRoot, "services/covisit/dist/rebuild-cli.js")], {
        env: { ...stack.env, ARCHIVE_DIR: archiveDir },
        encoding: "utf8",
      });
      expect(rebuilt.status, rebuilt.stderr).toBe(0);
      await stack.start("covisit");
      await settle();

      expect((await c.covisit.recentPages({ userid: user.userid })).urls).toEqual(want.recent);
      expect(await recommendation(busiest()[0], 50, user.userid)).toEqual(want.forUser);
      await expectCovisitEquals(stack, ref.urls, without(hiddenUrl()));
    });
  });
});
