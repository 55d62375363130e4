import { checkEventId, checkPageId, checkUrl, checkUserid } from "@recsys/validation";
import { describe, expect, it } from "vitest";
import type { ClickToApply, PageEmbedding } from "./types.js";
import { DIM, expectInterest as expectTerms, page, randomVectors, testDatabase } from "./testing.js";

// The SQL is the domain logic here, so it is tested where it runs: in the real PostgreSQL.
const { pool, store } = testDatabase("store", { emptyEachTest: true });

const { rnd, unitVector } = randomVectors(12345);
let nextId = 0;
const click = (userid: string, url: string): ClickToApply => ({ eventId: `e${nextId++}`, userid, url, eventTimeMs: 0, event: "view" });
const status = (outcomes: Array<{ status: string }>) => outcomes.map((o) => o.status);

/** Stores a page with a random unit vector for each of `urls`, in order; their vectors by url. */
async function storeRandomPages(urls: string[]): Promise<Map<string, number[]>> {
  const vectors = new Map(urls.map((url) => [url, unitVector()] as const));
  for (const [url, v] of vectors) await store.applyEmbedding(page(url, v));
  return vectors;
}
/** The interest of a user who clicked `urls`: the mean of their current vectors. */
const expectInterest = (userid: string, urls: string[], vectors: Map<string, number[]>) =>
  expectTerms(
    store,
    userid,
    urls.map((u) => vectors.get(u)!),
  );
const cosine = (a: number[], b: number[]) => a.reduce((s, x, k) => s + x * b[k]!, 0) / (Math.hypot(...a) * Math.hypot(...b));
const byUrl = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

describe("interests", () => {
  it("are the mean of the embeddings behind every click, repeats included", async () => {
    const vectors = new Map<string, number[]>(Array.from({ length: 12 }, (_, i) => [`https://e.org/p${i}`, unitVector()] as const));
    for (const [url, v] of vectors) expect(await store.applyEmbedding(page(url, v))).toEqual({ status: "inserted", foldedClicks: 0 });
    const urls = [...vectors.keys()];
    const clicked = new Map<string, string[]>();
    for (let i = 0; i < 120; i++) {
      const user = `u${Math.floor(rnd() * 4)}`;
      const url = urls[Math.floor(rnd() * 5)]!; // few pages, so repeats happen
      expect(await store.applyClick(click(user, url))).toEqual({ status: "applied" });
      clicked.set(user, [...(clicked.get(user) ?? []), url]);
    }
    for (const [user, list] of clicked) await expectInterest(user, list, vectors);
  });

  it("ignore a redelivered event id, applied or parked", async () => {
    const v = unitVector();
    await store.applyEmbedding(page("https://e.org/a", v));
    const c = click("u", "https://e.org/a");
    expect(await store.applyClick(c)).toEqual({ status: "applied" });
    expect(await store.applyClick(c)).toEqual({ status: "duplicate" });
    const parked = click("u", "https://e.org/later");
    expect(await store.applyClick(parked)).toEqual({ status: "parked" });
    expect(await store.applyClick(parked)).toEqual({ status: "duplicate" });
    expect(await store.counts()).toEqual({ pages: 1n, parkedClicks: 1n });
    await expectInterest("u", ["https://e.org/a"], new Map([["https://e.org/a", v]]));
  });

  it("park a click until its page arrives, then fold it in", async () => {
    const url = "https://e.org/late-page";
    expect(await store.applyClick(click("u1", url))).toEqual({ status: "parked" });
    expect(await store.applyClick(click("u1", url))).toEqual({ status: "parked" });
    expect(await store.applyClick(click("u2", url))).toEqual({ status: "parked" });
    expect(await store.interest("u1")).toBeUndefined();
    expect(await store.counts()).toEqual({ pages: 0n, parkedClicks: 3n });
    const v = unitVector();
    expect(await store.applyEmbedding(page(url, v))).toEqual({ status: "inserted", foldedClicks: 3 });
    expect(await store.counts()).toEqual({ pages: 1n, parkedClicks: 0n });
    await expectInterest("u1", [url, url], new Map([[url, v]]));
    await expectInterest("u2", [url], new Map([[url, v]]));
    // Folded clicks count as clicks of the page: a newer version corrects them like the others.
    const w = unitVector();
    expect(await store.applyEmbedding(page(url, w, 2n))).toEqual({ status: "updated", correctedUsers: 2, foldedClicks: 0 });
    await expectInterest("u1", [url, url], new Map([[url, w]]));
  });

  it("never leave a click parked when it races its page", async () => {
    const vectors = new Map<string, number[]>(Array.from({ length: 8 }, (_, i) => [`https://e.org/race${i}`, unitVector()] as const));
    const clicks = Array.from({ length: 200 }, (_, i) => click(`u${i % 7}`, `https://e.org/race${i % 8}`));
    await Promise.all([...clicks.map((c) => store.applyClick(c)), ...[...vectors].map(([url, v]) => store.applyEmbedding(page(url, v)))]);
    expect(await store.counts()).toEqual({ pages: 8n, parkedClicks: 0n });
    for (let u = 0; u < 7; u++) {
      await expectInterest(
        `u${u}`,
        clicks.filter((c) => c.userid === `u${u}`).map((c) => c.url),
        vectors,
      );
    }
  });
});

describe("click batches", () => {
  it("apply each event id once, whether repeated within a batch or across batches", async () => {
    const [a, b] = ["https://e.org/a", "https://e.org/b"];
    const vectors = await storeRandomPages([a, b]);
    const first = { eventId: "x1", userid: "u", url: a, eventTimeMs: 0 };
    const second = { eventId: "x2", userid: "u", url: b, eventTimeMs: 0 };
    const other = { eventId: "x3", userid: "v", url: a, eventTimeMs: 0 };
    expect(status(await store.applyClicks([first, first, second, other, first]))).toEqual(["applied", "duplicate", "applied", "applied", "duplicate"]);
    const later = { eventId: "x4", userid: "u", url: a, eventTimeMs: 0 };
    expect(status(await store.applyClicks([second, later, later, other]))).toEqual(["duplicate", "applied", "duplicate", "duplicate"]);
    expect(status(await store.applyClicks([]))).toEqual([]);
    await expectInterest("u", [a, b, a], vectors);
    await expectInterest("v", [a], vectors);
    expect((await pool.query("SELECT count(*)::int AS n FROM applied_events")).rows[0].n).toBe(4);
  });

  it("apply two users' clicks with the same event id as two clicks, folded or parked, each once", async () => {
    const [a, late] = ["https://e.org/a", "https://e.org/late"];
    const vectors = await storeRandomPages([a]);
    const same = [
      { eventId: "1", userid: "p", url: a, eventTimeMs: 0 },
      { eventId: "1", userid: "q", url: a, eventTimeMs: 0 },
      { eventId: "2", userid: "p", url: late, eventTimeMs: 0 },
      { eventId: "2", userid: "q", url: late, eventTimeMs: 0 },
    ];
    expect(status(await store.applyClicks(same))).toEqual(["applied", "applied", "parked", "parked"]);
    expect(status(await store.applyClicks(same))).toEqual(["duplicate", "duplicate", "duplicate", "duplicate"]);
    expect(status(await store.applyClicks([{ eventId: "1", userid: "r", url: a, eventTimeMs: 0 }]))).toEqual(["applied"]);
    vectors.set(late, unitVector());
    expect(await store.applyEmbedding(page(late, vectors.get(late)!))).toEqual({ status: "inserted", foldedClicks: 2 });
    for (const user of ["p", "q"]) await expectInterest(user, [a, late], vectors);
    await expectInterest("r", [a], vectors);
  });

  it("park the clicks of a page not embedded yet, and fold them in when it arrives", async () => {
    const [a, late] = ["https://e.org/a", "https://e.org/late"];
    const vectors = new Map([
      [a, unitVector()],
      [late, unitVector()],
    ]);
    await store.applyEmbedding(page(a, vectors.get(a)!));
    const parkedTwice = click("u", late);
    const batch = [click("u", a), parkedTwice, click("u", late), click("w", late)];
    expect(status(await store.applyClicks(batch))).toEqual(["applied", "parked", "parked", "parked"]);
    expect(status(await store.applyClicks([parkedTwice]))).toEqual(["duplicate"]);
    expect(await store.counts()).toEqual({ pages: 1n, parkedClicks: 3n });
    await expectInterest("u", [a], vectors);
    expect(await store.interest("w")).toBeUndefined();
    expect(await store.applyEmbedding(page(late, vectors.get(late)!))).toEqual({ status: "inserted", foldedClicks: 3 });
    expect(await store.counts()).toEqual({ pages: 2n, parkedClicks: 0n });
    await expectInterest("u", [a, late, late], vectors);
    await expectInterest("w", [late], vectors);
    // Folded clicks count as clicks of the page: a new version corrects them too.
    vectors.set(late, unitVector());
    expect(await store.applyEmbedding(page(late, vectors.get(late)!, 2n))).toEqual({ status: "updated", correctedUsers: 2, foldedClicks: 0 });
    await expectInterest("u", [a, late, late], vectors);
  });

  it("take urls and user ids with quotes, backslashes, commas, braces and spaces as they are", async () => {
    const odd = ['https://e.org/a"b', "https://e.org/c\\d", "https://e.org/{e,f}", "https://e.org/NULL", "https://e.org/ g "];
    const vectors = await storeRandomPages(odd);
    const users = ['u"1', "u\\2", "{u,3}", "NULL", " "];
    expect(status(await store.applyClicks(odd.map((url, i) => click(users[i]!, url))))).toEqual(odd.map(() => "applied"));
    for (let i = 0; i < odd.length; i++) await expectInterest(users[i]!, [odd[i]!], vectors);
  });

  it("count a page clicked twice by one user in one batch twice, and correct both when it changes", async () => {
    const [a, b] = ["https://e.org/a", "https://e.org/b"];
    const vectors = await storeRandomPages([a, b]);
    expect(status(await store.applyClicks([click("u", a), click("u", b), click("u", a)]))).toEqual(["applied", "applied", "applied"]);
    await expectInterest("u", [a, b, a], vectors);
    vectors.set(a, unitVector());
    expect(await store.applyEmbedding(page(a, vectors.get(a)!, 2n))).toEqual({ status: "updated", correctedUsers: 1, foldedClicks: 0 });
    await expectInterest("u", [a, b, a], vectors);
  });

  it("applied at once, with overlapping users and pages and pages arriving meanwhile, sum what they would one by one", async () => {
    const urls = Array.from({ length: 10 }, (_, i) => `https://e.org/o${i}`);
    const vectors = new Map(urls.map((u) => [u, unitVector()] as const));
    // Half the pages are there from the start, the others arrive while the batches run.
    for (const url of urls.slice(0, 5)) await store.applyEmbedding(page(url, vectors.get(url)!));
    const users = ["u0", "u1", "u2", "u3", "u4", "u5"];
    const clicks = Array.from({ length: 400 }, () => click(users[Math.floor(rnd() * users.length)]!, urls[Math.floor(rnd() * urls.length)]!));
    // Eight batches of the 400 clicks, each overlapping the next by 10: those go twice (a redelivery).
    const batches = Array.from({ length: 8 }, (_, b) => clicks.slice(b * 50, b * 50 + 60));
    const results = await Promise.all([
      ...batches.map((batch) => store.applyClicks(batch)),
      ...urls.slice(5).map((url) => store.applyEmbedding(page(url, vectors.get(url)!))),
    ]);
    const outcomes = results.slice(0, batches.length).flat() as Array<{ status: string }>;
    // Each click applied or parked exactly once, every repeat a duplicate.
    expect(outcomes.filter((o) => o.status !== "duplicate")).toHaveLength(clicks.length);
    expect(outcomes.filter((o) => o.status === "duplicate")).toHaveLength(batches.flat().length - clicks.length);
    expect(await store.counts()).toEqual({ pages: 10n, parkedClicks: 0n });
    // The definition, from the vectors: per user, one term per click, its page's vector.
    for (const user of users) {
      const terms = clicks.filter((c) => c.userid === user).map((c) => vectors.get(c.url)!);
      const got = await store.interest(user);
      expect(got?.terms).toBe(terms.length);
      const want = new Array<number>(DIM).fill(0);
      for (const t of terms) t.forEach((x, k) => (want[k]! += x));
      expect(Math.max(...got!.sum.map((x, k) => Math.abs(x - want[k]!)))).toBeLessThan(1e-4);
    }
  });
});

describe("page versions", () => {
  it("ignore an older or equal version", async () => {
    const url = "https://e.org/v";
    const v2 = unitVector();
    await store.applyEmbedding(page(url, v2, 2n));
    await store.applyClick(click("u", url));
    expect(await store.applyEmbedding(page(url, unitVector(), 1n))).toEqual({ status: "stale", storedVersion: 2n });
    expect(await store.applyEmbedding({ ...page(url, unitVector(), 2n), title: "changed" })).toEqual({ status: "stale", storedVersion: 2n });
    await expectInterest("u", [url], new Map([[url, v2]]));
    expect((await store.similarContent("u", 10, true))[0]).toMatchObject({ url, title: `title of ${url}` });
  });

  it("correct the interests of every user who clicked a re-embedded page", async () => {
    const vectors = await storeRandomPages(Array.from({ length: 4 }, (_, i) => `https://e.org/c${i}`));
    const history: Record<string, string[]> = {
      once: ["https://e.org/c0", "https://e.org/c1"],
      thrice: ["https://e.org/c0", "https://e.org/c0", "https://e.org/c2", "https://e.org/c0"],
      other: ["https://e.org/c3"],
    };
    for (const [user, urls] of Object.entries(history)) for (const url of urls) await store.applyClick(click(user, url));
    vectors.set("https://e.org/c0", unitVector());
    expect(await store.applyEmbedding(page("https://e.org/c0", vectors.get("https://e.org/c0")!, 5n))).toEqual({
      status: "updated",
      correctedUsers: 2,
      foldedClicks: 0,
    });
    for (const [user, urls] of Object.entries(history)) await expectInterest(user, urls, vectors);
  });
});

describe("similarContent", () => {
  it("ranks by similarity desc then url asc, ties and the cut at the limit as brute force does", async () => {
    // 25 well-separated similarity levels, 12 pages with the same vector on each: exact ties, and a
    // cut at the limit inside a tie group.
    const anchor = new Array<number>(DIM).fill(0);
    anchor[0] = 1;
    await store.applyEmbedding(page("https://e.org/anchor", anchor));
    const expected: Array<{ url: string; similarity: number }> = [{ url: "https://e.org/anchor", similarity: 1 }];
    for (let i = 0; i < 300; i++) {
      const level = i % 25;
      const v = new Array<number>(DIM).fill(0);
      v[0] = Math.fround(Math.cos(0.06 * (level + 1)));
      v[1 + level] = Math.fround(Math.sin(0.06 * (level + 1)));
      const url = `https://e.org/t${String((i * 7919) % 1000).padStart(3, "0")}`;
      await store.applyEmbedding(page(url, v));
      expected.push({ url, similarity: cosine(v, anchor) });
    }
    await store.applyClick(click("u", "https://e.org/anchor"));
    expected.sort((a, b) => b.similarity - a.similarity || byUrl(a.url, b.url));
    // The page the user clicked is left out unless asked for; the next ones fill up to the limit.
    const unseen = expected.filter((e) => e.url !== "https://e.org/anchor");
    for (const limit of [1, 10, 18, 100, 1000]) {
      const got = await store.similarContent("u", limit, true);
      expect(got.map((g) => g.url)).toEqual(expected.slice(0, limit).map((e) => e.url));
      got.forEach((g, i) => expect(g.similarity).toBeCloseTo(expected[i]!.similarity, 5));
      const left = await store.similarContent("u", limit);
      expect(left.map((g) => g.url)).toEqual(unseen.slice(0, limit).map((e) => e.url));
    }
  });

  it("equals a brute-force ranking of random pages, deeper than HNSW's default candidate list", async () => {
    const vectors = await storeRandomPages(Array.from({ length: 400 }, (_, i) => `https://e.org/r${i}`));
    const urls = [...vectors.keys()].slice(0, 6);
    for (const url of urls) await store.applyClick(click("u", url));
    const { sum } = (await store.interest("u"))!;
    const ranked = [...vectors].map(([url, v]) => ({ url, similarity: cosine(v, sum) })).sort((a, b) => b.similarity - a.similarity || byUrl(a.url, b.url));
    const reference = new Map(ranked.map((r) => [r.url, r.similarity]));
    const expectRanked = (got: Array<{ url: string; similarity: number }>, want: typeof ranked) => {
      expect(got).toHaveLength(150);
      got.forEach((g, i) => {
        expect(g.similarity).toBeCloseTo(want[i]!.similarity, 5);
        // Two pages may swap only if their similarities tie within float32 noise.
        if (g.url !== want[i]!.url) expect(Math.abs(reference.get(g.url)! - want[i]!.similarity)).toBeLessThan(1e-6);
      });
      // Its own order is strictly (similarity desc, url asc).
      for (let i = 1; i < got.length; i++) {
        const [a, b] = [got[i - 1]!, got[i]!];
        expect(a.similarity > b.similarity || (a.similarity === b.similarity && a.url < b.url)).toBe(true);
      }
    };
    expectRanked(await store.similarContent("u", 150, true), ranked);
    // Without the 6 pages the user clicked.
    expectRanked(
      await store.similarContent("u", 150),
      ranked.filter((r) => !urls.includes(r.url)),
    );
  });

  it("gives a user without an interest `limit` pages with similarity 0 in url order", async () => {
    const urls = Array.from({ length: 15 }, (_, i) => `https://e.org/n${i}`);
    for (const url of urls) await store.applyEmbedding(page(url, unitVector()));
    const got = await store.similarContent("nobody", 7);
    expect(got).toEqual(
      [...urls]
        .sort(byUrl)
        .slice(0, 7)
        .map((url) => ({ url, title: `title of ${url}`, similarity: 0 })),
    );
  });
});

describe("values at the bounds of validation", () => {
  it("stores a page, a click and a like whose url, userid and ids are as long in UTF-8 as validation lets them be", async () => {
    // Varied characters, so that PostgreSQL cannot compress them below what its indexes hold (2,704 bytes an entry).
    const cjk = (n: number) => Array.from({ length: n }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 20000))).join("");
    const emoji = (n: number, from: number) => Array.from({ length: n }, (_, i) => String.fromCodePoint(from + ((i * 31) % 80))).join("");
    const url = checkUrl(`https://e.org/${cjk(678)}`);
    const parkedUrl = checkUrl(`https://e.org/${cjk(677)}xyz`);
    const userid = checkUserid(emoji(128, 0x1f600));
    const pageId = checkPageId(emoji(128, 0x1f400));
    expect([Buffer.byteLength(url), Buffer.byteLength(parkedUrl), Buffer.byteLength(userid), Buffer.byteLength(pageId)]).toEqual([2048, 2048, 512, 512]);
    const v = unitVector();
    expect(await store.applyEmbedding({ ...page(url, v), id: pageId })).toEqual({ status: "inserted", foldedClicks: 0 });
    const eventId = checkEventId(emoji(128, 0x1f300));
    expect(status(await store.applyClicks([{ ...click(userid, url), eventId }, click(userid, parkedUrl)]))).toEqual(["applied", "parked"]);
    expect(await store.applyLike({ eventId, userid, pageId, liked: true, sourceTimeMs: 1n })).toEqual({ status: "applied" });
    // The click and the like, both of that page.
    await expectInterest(userid, [url, url], new Map([[url, v]]));
  });
});

describe("applied event ids expire by a horizon per user", () => {
  const DAY = 24 * 3600_000;
  /** A user's applied ids, of every kind. */
  const ids = async (userid: string) =>
    (await pool.query<{ event_id: string }>("SELECT event_id FROM applied_events WHERE userid = $1 ORDER BY event_id", [userid])).rows.map((r) => r.event_id);
  const at = (userid: string, url: string, eventTimeMs: number, eventId = `e${nextId++}`): ClickToApply => ({
    eventId,
    userid,
    url,
    eventTimeMs,
    event: "view",
  });

  it("refuses a click older than its user's latest by more than the retention, prunes only ids past it, and never applies a pruned id twice", async () => {
    const vectors = await storeRandomPages(["https://e.org/a", "https://e.org/b"]);
    const old = at("u", "https://e.org/a", 0);
    expect(status(await store.applyClicks([old]))).toEqual(["applied"]);
    // 7 days and 1 ms later: the old click's id is past the horizon.
    expect(status(await store.applyClicks([at("u", "https://e.org/b", 7 * DAY + 1)]))).toEqual(["applied"]);
    // Another user's horizon is its own: its click at time 0 is fine.
    expect(status(await store.applyClicks([at("v", "https://e.org/a", 0)]))).toEqual(["applied"]);
    expect(await store.pruneAppliedEvents()).toBe(1);
    const ids = await pool.query<{ userid: string; event_id: string }>("SELECT userid, event_id FROM applied_events ORDER BY userid");
    expect(ids.rows.map((r) => r.userid)).toEqual(["u", "v"]);
    // The pruned click redelivered is refused, not applied again; a new one as old is refused too;
    // one exactly the retention behind the latest click is still applied.
    expect(status(await store.applyClicks([old, at("u", "https://e.org/a", 0), at("u", "https://e.org/a", 1)]))).toEqual(["expired", "expired", "applied"]);
    await expectInterest("u", ["https://e.org/a", "https://e.org/b", "https://e.org/a"], vectors);
  });

  it("refuses an expired interest the same way, by the user's horizon of that kind; a like is versioned instead", async () => {
    await storeRandomPages(["https://e.org/a"]);
    // Likes never expire: an old one is superseded by the stored state, its id pruned or not.
    const like = (eventId: string, t: number) => ({ eventId, userid: "u", pageId: "https://e.org/a", liked: true, sourceTimeMs: BigInt(t) });
    expect(await store.applyLike(like("l1", 7 * DAY + 1))).toEqual({ status: "applied" });
    expect(await store.applyLike(like("l0", 0))).toEqual({ status: "superseded" });
    const interest = (eventId: string, t: number) => ({ eventId, userid: "u", text: "x", embedding: unitVector(), sourceTimeMs: BigInt(t) });
    expect(await store.applyInterest(interest("i1", 7 * DAY + 1))).toEqual({ status: "applied" });
    expect(await store.applyInterest(interest("i0", 0))).toEqual({ status: "expired" });
    // Clicks have a horizon of their own: none applied yet, so a click at time 0 is fine.
    expect(status(await store.applyClicks([at("u", "https://e.org/a", 0)]))).toEqual(["applied"]);
  });

  it("drops clicks parked longer than the limit, with their ids, so the same click sent again after its page came is applied", async () => {
    const parked = at("u", "https://e.org/never", 0);
    expect(status(await store.applyClicks([parked]))).toEqual(["parked"]);
    expect(await store.expireParkedClicks(60_000)).toBe(0);
    await pool.query("UPDATE parked_clicks SET parked_at = now() - interval '2 minutes'");
    // While its page is being stored (the url's lock held), the click is left for the next pass.
    const storing = await pool.connect();
    try {
      await storing.query("BEGIN");
      await storing.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", ["https://e.org/never"]);
      expect(await store.expireParkedClicks(60_000)).toBe(0);
      await storing.query("COMMIT");
    } finally {
      storing.release();
    }
    expect(await store.expireParkedClicks(60_000)).toBe(1);
    expect((await pool.query("SELECT count(*)::int AS n FROM parked_clicks")).rows[0].n).toBe(0);
    const vectors = await storeRandomPages(["https://e.org/never"]);
    expect(status(await store.applyClicks([parked]))).toEqual(["applied"]);
    await expectInterest("u", ["https://e.org/never"], vectors);
  });

  it("forgets a user silent for the retention, with their ids and watermark, and keeps everyone heard from since", async () => {
    const vectors = await storeRandomPages(["https://e.org/a", "https://e.org/b"]);
    const interest = (userid: string, eventId: string) => ({ eventId, userid, text: "x", embedding: unitVector(), sourceTimeMs: 0n });
    const gone = at("gone", "https://e.org/a", 0);
    expect(
      status(await store.applyClicks([gone, at("gone", "https://e.org/b", 1), at("back", "https://e.org/a", 0), at("recent", "https://e.org/a", 0)])),
    ).toEqual(["applied", "applied", "applied", "applied"]);
    expect(await store.applyInterest(interest("gone", "i1"))).toEqual({ status: "applied" });
    // A user whose click waits for its page: its id guards the parked row.
    expect(status(await store.applyClicks([at("waiting", "https://e.org/never", 0)]))).toEqual(["parked"]);
    const silentFor = (users: string[], interval: string) =>
      pool.query(`UPDATE event_watermarks SET applied_at = now() - interval '${interval}' WHERE userid = ANY($1)`, [users]);
    await silentFor(["gone", "back", "waiting"], "7 days 1 minute");
    await silentFor(["recent"], "6 days 23 hours");
    // "back" sends a click again (a duplicate counts too: the user was heard from).
    expect(status(await store.applyClicks([at("back", "https://e.org/a", 0, (await ids("back"))[0])]))).toEqual(["duplicate"]);
    // Two kinds of "gone" (click, interest) are two pairs; nothing else is silent that long.
    expect(await store.forgetSilentUsers(10_000)).toEqual({ users: 2, ids: 3 });
    expect(await store.forgetSilentUsers(10_000)).toEqual({ users: 0, ids: 0 });
    const left = await pool.query<{ userid: string }>("SELECT DISTINCT userid FROM event_watermarks ORDER BY userid");
    expect(left.rows.map((r) => r.userid)).toEqual(["back", "recent", "waiting"]);
    expect(await ids("gone")).toEqual([]);
    expect((await ids("recent")).length).toBe(1);
    // The forgotten user starts over: a new click is applied, and so is the old one sent again (as covisit counts a click sent
    // again after its user's keys expired); its interest holds the four clicks and the stated interest.
    expect(status(await store.applyClicks([at("gone", "https://e.org/b", 2), gone]))).toEqual(["applied", "applied"]);
    expect((await pool.query("SELECT terms::int FROM interests WHERE userid = 'gone'")).rows).toEqual([{ terms: 5 }]);
    await expectInterest("recent", ["https://e.org/a"], vectors);
    expect((await ids("gone")).length).toBe(2);
  });

  it("forgets silent users the longest silent first, at most the limit a call", async () => {
    await storeRandomPages(["https://e.org/a"]);
    expect(status(await store.applyClicks(["s1", "s2", "s3"].map((u) => at(u, "https://e.org/a", 0))))).toEqual(["applied", "applied", "applied"]);
    await pool.query("UPDATE event_watermarks SET applied_at = now() - interval '8 days' - (interval '1 hour' * substr(userid, 2)::int)");
    expect(await store.forgetSilentUsers(2)).toEqual({ users: 2, ids: 2 });
    const left = await pool.query<{ userid: string }>("SELECT userid FROM event_watermarks");
    expect(left.rows.map((r) => r.userid)).toEqual(["s1"]);
    expect(await store.forgetSilentUsers(2)).toEqual({ users: 1, ids: 1 });
  });

  it("expires more parked urls than PostgreSQL's lock table holds in one transaction (20,000; about 13,000 by default)", async () => {
    await pool.query(
      `INSERT INTO parked_clicks (event_id, userid, url, event_time_ms, parked_at)
       SELECT 'e' || i, 'u' || (i % 100), 'https://e.org/parked/' || i, 0, now() - interval '2 minutes' FROM generate_series(1, 20000) i`,
    );
    await pool.query("INSERT INTO applied_events (userid, kind, event_id, event_time_ms) SELECT userid, 'click', event_id, 0 FROM parked_clicks");
    // One parked a minute ago stays.
    expect(status(await store.applyClicks([at("u", "https://e.org/parked/new", 0)]))).toEqual(["parked"]);
    await pool.query("UPDATE parked_clicks SET parked_at = now() - interval '1 minute' WHERE url = 'https://e.org/parked/new'");
    expect(await store.expireParkedClicks(90_000)).toBe(20_000);
    const left = await pool.query<{ url: string; ids: number }>("SELECT url, (SELECT count(*)::int FROM applied_events) AS ids FROM parked_clicks");
    expect(left.rows).toEqual([{ url: "https://e.org/parked/new", ids: 1 }]);
  });

  it("keeps legacy ids (recorded before ids were per user): they name no user whose horizon could let them go", async () => {
    await pool.query("INSERT INTO legacy_applied_events (event_id) VALUES ('old')");
    expect(await store.pruneAppliedEvents()).toBe(0);
    expect(status(await store.applyClicks([at("u", "https://e.org/a", 0, "old")]))).toEqual(["duplicate"]);
  });
});
