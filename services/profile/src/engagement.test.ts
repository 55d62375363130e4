import { describe, expect, it } from "vitest";
import type { LikeToApply, PageEmbedding } from "./types.js";
import { expectInterest as expectTerms, randomVectors, testDatabase } from "./testing.js";

// Likes and stated interests against the real PostgreSQL: the SQL is the logic under test.
const { store } = testDatabase("engagement", { emptyEachTest: true });
const { rnd, unitVector } = randomVectors(777);
const urlOf = (id: string) => `https://e.org/page-${id}`;
const page = (id: string, embedding: number[], version = 1n, extra: Partial<PageEmbedding> = {}): PageEmbedding => ({
  url: urlOf(id),
  id,
  title: `Title ${id}`,
  text: `text of page ${id}`,
  embedding,
  version,
  model: "test",
  ...extra,
});
let nextEvent = 0;
const like = (userid: string, pageId: string, liked: boolean, time: number): LikeToApply => ({
  eventId: `l${nextEvent++}`,
  userid,
  pageId,
  liked,
  sourceTimeMs: BigInt(time),
});

const expectInterest = (userid: string, terms: number[][]) => expectTerms(store, userid, terms);

describe("likes", () => {
  it("add the liked page as a term, and an unlike takes it out again", async () => {
    const a = unitVector();
    const b = unitVector();
    await store.applyEmbedding(page("1", a));
    await store.applyEmbedding(page("2", b));
    expect(await store.applyLike(like("u", "1", true, 10))).toEqual({ status: "applied" });
    expect(await store.applyLike(like("u", "2", true, 11))).toEqual({ status: "applied" });
    await expectInterest("u", [a, b]);
    expect((await store.eventsLiked("u")).rows.map((e) => e.id)).toEqual(["1", "2"]);
    expect(await store.applyLike(like("u", "1", false, 12))).toEqual({ status: "applied" });
    await expectInterest("u", [b]);
    expect((await store.eventsLiked("u")).rows.map((e) => e.id)).toEqual(["2"]);
    await store.applyLike(like("u", "2", false, 13));
    // No term left: no interest at all, so RecommendedEvents has nothing for the user.
    await expectInterest("u", []);
    expect(await store.recommendedEvents("u", 10)).toEqual([]);
  });

  it("keep the latest state by source time, whatever order they arrive in, and ignore a redelivery", async () => {
    const a = unitVector();
    await store.applyEmbedding(page("1", a));
    const unlike = like("u", "1", false, 20);
    expect(await store.applyLike(unlike)).toEqual({ status: "applied" });
    expect(await store.applyLike(like("u", "1", true, 19))).toEqual({ status: "superseded" });
    await expectInterest("u", []);
    const relike = like("u", "1", true, 21);
    expect(await store.applyLike(relike)).toEqual({ status: "applied" });
    expect(await store.applyLike(relike)).toEqual({ status: "duplicate" });
    // A second like of a liked page is not a second term.
    expect(await store.applyLike(like("u", "1", true, 22))).toEqual({ status: "applied" });
    await expectInterest("u", [a]);
  });

  it("count each user's latest like, never below zero", async () => {
    await store.applyEmbedding(page("1", unitVector()));
    const count = async () => (await store.eventsById(["1"]))[0]!.likeCount;
    await store.applyLike(like("u", "1", false, 1)); // an unlike of a page never liked
    expect(await count()).toBe(0);
    await store.applyLike(like("u", "1", true, 2));
    await store.applyLike(like("v", "1", true, 2));
    await store.applyLike(like("v", "1", true, 3));
    expect(await count()).toBe(2);
    await store.applyLike(like("u", "1", false, 4));
    await store.applyLike(like("u", "1", false, 5));
    expect(await count()).toBe(1);
  });

  it("of a page not embedded yet wait for it, then count as terms", async () => {
    await store.applyLike(like("u", "7", true, 1));
    await store.applyLike(like("w", "7", true, 1));
    await store.applyLike(like("w", "7", false, 2));
    await expectInterest("u", []);
    expect((await store.eventsLiked("u")).rows).toEqual([]);
    const v = unitVector();
    await store.applyEmbedding(page("7", v));
    await expectInterest("u", [v]);
    await expectInterest("w", []);
    expect((await store.eventsLiked("u")).rows.map((e) => e.url)).toEqual([urlOf("7")]);
  });

  it("follow a page's new embedding, counted with the clicks on it", async () => {
    const v1 = unitVector();
    const v2 = unitVector();
    await store.applyEmbedding(page("1", v1));
    await store.applyClick({ eventId: "c1", userid: "u", url: urlOf("1"), eventTimeMs: 0, event: "view" });
    await store.applyLike(like("u", "1", true, 1));
    await expectInterest("u", [v1, v1]);
    await store.applyEmbedding(page("1", v2, 2n));
    await expectInterest("u", [v2, v2]);
    await store.applyLike(like("u", "1", false, 2));
    await expectInterest("u", [v2]);
  });

  it("move with their id when a page version carries another id", async () => {
    const v = unitVector();
    await store.applyEmbedding(page("1", v));
    await store.applyLike(like("u", "1", true, 1));
    await store.applyEmbedding(page("1", v, 2n, { id: "9" }));
    await expectInterest("u", []);
    expect(await store.like("u", "1")).toEqual({ liked: true, appliedUrl: null });
    const w = unitVector();
    await store.applyEmbedding(page("1-new", w, 1n, { id: "1", url: "https://e.org/moved" }));
    await expectInterest("u", [w]);
  });

  it("stay with a page whose new version comes without an id", async () => {
    const v = unitVector();
    await store.applyEmbedding(page("5", unitVector()));
    await store.applyLike(like("u", "5", true, 1));
    await store.applyEmbedding(page("5", v, 2n, { id: "", text: "new text" }));
    expect(await store.eventsById(["5"])).toMatchObject([{ url: urlOf("5"), abstract: "new text", likeCount: 1 }]);
    await expectInterest("u", [v]);
  });

  it("agree with the definition after a random mix of clicks, likes, unlikes, interests and new versions", async () => {
    const ids = ["1", "2", "3", "4", "5", "6"];
    const users = ["a", "b", "c"];
    const current = new Map<string, number[]>();
    const clicks = new Map<string, string[]>();
    const stated = new Map<string, number[][]>();
    const latest = new Map<string, { time: number; eventId: string; liked: boolean }>();
    let version = 1n;
    for (let step = 0; step < 300; step++) {
      const r = rnd();
      const user = users[Math.floor(rnd() * users.length)]!;
      const id = ids[Math.floor(rnd() * ids.length)]!;
      if (r < 0.2) {
        const v = unitVector();
        await store.applyEmbedding(page(id, v, version++));
        current.set(id, v);
      } else if (r < 0.4) {
        const url = urlOf(id);
        await store.applyClick({ eventId: `c${nextEvent++}`, userid: user, url, eventTimeMs: 0, event: "view" });
        clicks.set(user, [...(clicks.get(user) ?? []), id]);
      } else if (r < 0.9) {
        // Times repeat and go backwards: out-of-order delivery and same-millisecond ties.
        const l = like(user, id, rnd() < 0.6, Math.floor(rnd() * 40));
        await store.applyLike(l);
        const key = `${user}/${id}`;
        const was = latest.get(key);
        const t = Number(l.sourceTimeMs);
        if (!was || t > was.time || (t === was.time && l.eventId > was.eventId)) latest.set(key, { time: t, eventId: l.eventId, liked: l.liked });
      } else {
        const v = unitVector();
        await store.applyInterest({ eventId: `i${nextEvent++}`, userid: user, embedding: v, sourceTimeMs: 0n });
        stated.set(user, [...(stated.get(user) ?? []), v]);
      }
    }
    for (const user of users) {
      // Clicks on pages never embedded stay parked: not terms yet.
      const terms = (clicks.get(user) ?? []).filter((id) => current.has(id)).map((id) => current.get(id)!);
      for (const id of ids) if (latest.get(`${user}/${id}`)?.liked && current.has(id)) terms.push(current.get(id)!);
      terms.push(...(stated.get(user) ?? []));
      await expectInterest(user, terms);
      const liked = ids.filter((id) => latest.get(`${user}/${id}`)?.liked && current.has(id));
      expect((await store.eventsLiked(user)).rows.map((e) => e.id)).toEqual(liked);
    }
  });
});

describe("stated interests", () => {
  it("are one term each, once per event id", async () => {
    const a = unitVector();
    const s = unitVector();
    await store.applyEmbedding(page("1", a));
    await store.applyClick({ eventId: "c", userid: "u", url: urlOf("1"), eventTimeMs: 0, event: "view" });
    expect(await store.applyInterest({ eventId: "i1", userid: "u", embedding: s, sourceTimeMs: 0n })).toEqual({ status: "applied" });
    expect(await store.applyInterest({ eventId: "i1", userid: "u", embedding: s, sourceTimeMs: 0n })).toEqual({ status: "duplicate" });
    await expectInterest("u", [a, s]);
  });
});

describe("event ids", () => {
  it("are per user and kind: a click's id shaped like a like's or an interest's blocks neither, nor does another user's", async () => {
    const a = unitVector();
    const s = unitVector();
    await store.applyEmbedding(page("1", a));
    const url = urlOf("1");
    expect(
      await store.applyClicks([
        { eventId: "like:L1", userid: "u", url, eventTimeMs: 0 },
        { eventId: "interest:I1", userid: "u", url, eventTimeMs: 0 },
      ]),
    ).toEqual([{ status: "applied" }, { status: "applied" }]);
    const likeOf = (userid: string) => ({ eventId: "L1", userid, pageId: "1", liked: true, sourceTimeMs: 1n });
    const interestOf = (userid: string) => ({ eventId: "I1", userid, embedding: s, sourceTimeMs: 1n });
    for (const user of ["u", "w"]) {
      expect(await store.applyLike(likeOf(user))).toEqual({ status: "applied" });
      expect(await store.applyInterest(interestOf(user))).toEqual({ status: "applied" });
    }
    for (const user of ["u", "w"]) {
      expect(await store.applyLike(likeOf(user))).toEqual({ status: "duplicate" });
      expect(await store.applyInterest(interestOf(user))).toEqual({ status: "duplicate" });
    }
    await expectInterest("u", [a, a, a, s]);
    await expectInterest("w", [a, s]);
    expect((await store.eventsLiked("w")).rows.map((e) => e.id)).toEqual(["1"]);
  });
});

describe("event queries", () => {
  it("list pages in id order, numbers as numbers, with offset", async () => {
    for (const id of ["593", "42672986", "6777", "10", "abc"]) await store.applyEmbedding(page(id, unitVector()));
    await store.applyEmbedding(page("", unitVector(), 1n, { url: "https://e.org/no-id" }));
    expect((await store.events(10, 0)).rows.map((e) => e.id)).toEqual(["10", "593", "abc", "6777", "42672986", ""]);
    expect((await store.events(2, 1)).rows.map((e) => e.id)).toEqual(["593", "abc"]);
    expect((await store.events(5, 6)).rows).toEqual([]);
    const first = (await store.events(1, 0)).rows[0]!;
    expect(first).toEqual({ id: "10", url: urlOf("10"), title: "Title 10", abstract: "text of page 10", likeCount: 0, score: 0 });
  });

  it("page after a key: the same order, nothing twice or left out when pages are added before it meanwhile", async () => {
    for (const id of ["593", "42672986", "6777", "10", "abc"]) await store.applyEmbedding(page(id, unitVector()));
    await store.applyEmbedding(page("", unitVector(), 1n, { url: "https://e.org/no-id" }));
    const first = await store.events(2, 0);
    expect(first.rows.map((e) => e.id)).toEqual(["10", "593"]);
    expect(first.next).toEqual({ id: "593", url: urlOf("593") });
    // A page that sorts first arrives: an offset would now show 593 again, the key does not.
    await store.applyEmbedding(page("1", unitVector()));
    expect((await store.events(2, 2)).rows.map((e) => e.id)).toEqual(["593", "abc"]);
    const second = await store.events(2, 0, first.next);
    expect(second.rows.map((e) => e.id)).toEqual(["abc", "6777"]);
    const third = await store.events(2, 0, second.next);
    expect(third.rows.map((e) => e.id)).toEqual(["42672986", ""]);
    expect(third.next).toBeUndefined();
    // A full page with nothing after it says so too.
    expect((await store.events(7, 0)).next).toBeUndefined();
  });

  it("rank recommended pages by cosine similarity to the interest", async () => {
    const vectors = new Map(Array.from({ length: 20 }, (_, i) => [String(i), unitVector()] as const));
    for (const [id, v] of vectors) await store.applyEmbedding(page(id, v));
    const s = unitVector();
    await store.applyInterest({ eventId: "i", userid: "u", embedding: s, sourceTimeMs: 0n });
    const cos = (a: number[], b: number[]) => a.reduce((t, x, k) => t + x * b[k]!, 0) / (Math.hypot(...a) * Math.hypot(...b));
    const want = [...vectors]
      .map(([id, v]) => ({ id, score: cos(s, v) }))
      .sort((x, y) => y.score - x.score)
      .slice(0, 5);
    const got = await store.recommendedEvents("u", 5);
    expect(got.map((e) => e.id)).toEqual(want.map((w) => w.id));
    got.forEach((e, i) => expect(e.score).toBeCloseTo(want[i]!.score, 5));
    expect(await store.recommendedEvents("nobody", 5)).toEqual([]);
  });

  it("search title and text, ranked by the user's interest first", async () => {
    const kafka = unitVector();
    const flink = unitVector();
    await store.applyEmbedding(page("1", kafka, 1n, { title: "Apache Kafka", text: "A distributed event store and stream-processing platform." }));
    await store.applyEmbedding(page("2", flink, 1n, { title: "Apache Flink", text: "Flink reads from Kafka topics and processes streams." }));
    await store.applyEmbedding(page("3", unitVector(), 1n, { title: "Animation", text: "Moving images." }));
    // Without an interest: text rank decides, and the title match weighs more.
    expect((await store.personalizedEventSearch("kafka", "nobody", 10)).map((e) => [e.id, e.score])).toEqual([
      ["1", 0],
      ["2", 0],
    ]);
    await store.applyInterest({ eventId: "i", userid: "u", embedding: flink, sourceTimeMs: 0n });
    const ranked = await store.personalizedEventSearch("kafka", "u", 10);
    expect(ranked.map((e) => e.id)).toEqual(["2", "1"]);
    expect(ranked[0]!.score).toBeCloseTo(1, 5);
    expect(await store.personalizedEventSearch("kafka -flink", "u", 10)).toMatchObject([{ id: "1" }]);
    expect(await store.personalizedEventSearch('"moving images"', "u", 10)).toMatchObject([{ id: "3" }]);
    expect(await store.personalizedEventSearch("the", "u", 10)).toEqual([]);
  });
});
