import { Redis } from "ioredis";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import {
  answerRecommendation,
  CountsLostError,
  CovisitStore,
  DEFAULT_DEDUP_RETENTION_MS,
  DEFAULT_TOMBSTONE_MS,
  NotServedYetError,
  shardOf,
  shardTag,
  WINDOW_MS,
  type ClickToApply,
} from "./redis-store.js";

// The script is the domain logic here, so it is tested where it runs: in the real Redis.
const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const namespace = `unit${process.pid}`;
const LATENESS = 5 * 60_000;
let store: CovisitStore;

async function clearNamespace() {
  const keys = await redis.keys(`${namespace}:*`);
  if (keys.length) await redis.del(...keys);
}

afterAll(async () => {
  await clearNamespace();
  redis.disconnect();
});

// Every case with the counts in one shard (one Redis) and in three (as on a Redis Cluster, merged at read time).
describe.each([1, 3])("%i shard(s)", (shards) => {
  const newStore = (...args: ConstructorParameters<typeof CovisitStore>) =>
    new CovisitStore(args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7], { shards });
  /** A user's key of kind `kind`, in the user's shard. */
  const key = (kind: string, u: string) => `${namespace}:recsys:{${shardTag(shardOf(u, shards), shards)}}:${kind}:${u}`;

  beforeEach(async () => {
    await clearNamespace();
    store = newStore(redis, namespace, LATENESS);
    await store.markFirstClick();
  });

  const T0 = Date.parse("2024-01-02T00:00:00Z");
  let nextId = 0;
  const click = (userid: string, url: string, t: number): ClickToApply => ({ eventId: `e${nextId++}`, userid, url, eventTimeMs: t, event: "view" });

  /**
   * The definition, by brute force: b -> a for every pair of one user's clicks with b.t < a.t <= b.t + 10 min, as Recommendation
   * answers it: never a page after itself.
   */
  function bruteForce(clicks: ClickToApply[]): Map<string, Map<string, number>> {
    const out = new Map<string, Map<string, number>>();
    for (const b of clicks)
      for (const a of clicks) {
        if (a.userid !== b.userid || !(b.eventTimeMs < a.eventTimeMs && b.eventTimeMs >= a.eventTimeMs - WINDOW_MS)) continue;
        if (a.url === b.url) continue;
        const m = out.get(b.url) ?? new Map<string, number>();
        m.set(a.url, (m.get(a.url) ?? 0) + 1);
        out.set(b.url, m);
      }
    return out;
  }

  async function everyCount(urls: string[]): Promise<Map<string, Map<string, number>>> {
    const out = new Map<string, Map<string, number>>();
    for (const u of urls) {
      const list = await store.coVisitsAfter(u, 1000);
      if (list.length) out.set(u, new Map(list.map((c) => [c.recommendation, c.frequency])));
    }
    return out;
  }

  describe("covisit.lua", () => {
    it("counts exactly the brute-force pairs whatever the arrival order within the lateness", async () => {
      let seed = 7;
      const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
      const urls = Array.from({ length: 6 }, (_, i) => `https://example.org/p${i}`);
      const clicks: ClickToApply[] = [];
      for (let i = 0; i < 300; i++) {
        // Whole seconds, so that many clicks share a timestamp and must not pair.
        clicks.push(click(`u${Math.floor(rnd() * 5)}`, urls[Math.floor(rnd() * urls.length)]!, T0 + Math.floor(rnd() * 3600) * 1000));
      }
      // Arrival order: event order disturbed by up to 4 minutes.
      const arrival = clicks
        .map((c) => ({ c, k: c.eventTimeMs + rnd() * 4 * 60_000 }))
        .sort((a, b) => a.k - b.k)
        .map((x) => x.c);
      const outcomes = [];
      for (const c of arrival) outcomes.push((await store.applyClick(c)).status);
      expect(outcomes.every((s) => s === "applied")).toBe(true);
      expect(await everyCount(urls)).toEqual(bruteForce(clicks));
    });

    it("counts exactly when two replicas apply one user's clicks at the same time, each click once (or twice)", async () => {
      // Two covisit replicas share one durable consumer: two connections, each with its own store,
      // run the script concurrently for clicks of the same users. The script reads the history and
      // writes the counts in one atomic step, so neither can miss a partner the other is adding; a
      // click both happen to get (a redelivery) is applied by whichever runs first.
      const other = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
      try {
        // About 130 clicks a user within 4 minutes: far over the default budget, which is not under test here.
        const budget = 1_000;
        store = newStore(redis, namespace, LATENESS, DEFAULT_DEDUP_RETENTION_MS, budget);
        const replica = newStore(other, namespace, LATENESS, DEFAULT_DEDUP_RETENTION_MS, budget);
        const urls = Array.from({ length: 5 }, (_, i) => `https://example.org/r${i}`);
        const clicks = Array.from({ length: 400 }, (_, i) => click(`u${i % 3}`, urls[(i * 7) % urls.length]!, T0 + ((i * 37) % 240) * 1000));
        const outcomes = await Promise.all(
          clicks.flatMap((c, i) => (i % 10 === 0 ? [store.applyClick(c), replica.applyClick(c)] : [(i % 2 ? store : replica).applyClick(c)])),
        );
        expect(outcomes.filter((o) => o.status === "applied")).toHaveLength(400);
        expect(outcomes.filter((o) => o.status === "duplicate")).toHaveLength(40);
        expect(await everyCount(urls)).toEqual(bruteForce(clicks));
      } finally {
        other.disconnect();
      }
    });

    it("does not pair clicks in the same millisecond, pairs at exactly 10 minutes, not beyond", async () => {
      const [a, b, c, d] = ["https://e.org/a", "https://e.org/b", "https://e.org/c", "https://e.org/d"];
      await store.applyClick(click("u", a!, T0));
      await store.applyClick(click("u", b!, T0));
      await store.applyClick(click("u", c!, T0 + WINDOW_MS));
      await store.applyClick(click("u", d!, T0 + WINDOW_MS + 1));
      expect(await store.coVisitsAfter(a!, 10)).toEqual([{ recommendation: c, frequency: 1 }]);
      expect(await store.coVisitsAfter(b!, 10)).toEqual([{ recommendation: c, frequency: 1 }]);
      expect(await store.coVisitsAfter(c!, 10)).toEqual([{ recommendation: d, frequency: 1 }]);
    });

    it("skips an event_id it has seen, even redelivered after later clicks", async () => {
      const first = click("u", "https://e.org/a", T0);
      await store.applyClick(first);
      await store.applyClick(click("u", "https://e.org/b", T0 + 1000));
      expect(await store.applyClick(first)).toEqual({ status: "duplicate" });
      expect(await store.coVisitsAfter("https://e.org/a", 10)).toEqual([{ recommendation: "https://e.org/b", frequency: 1 }]);
    });

    it("refuses a click older than the user's watermark minus the lateness, and changes nothing", async () => {
      await store.applyClick(click("u", "https://e.org/a", T0 + 20 * 60_000));
      const before = await redis.keys(`${namespace}:*`);
      const late = await store.applyClick(click("u", "https://e.org/b", T0 + 20 * 60_000 - LATENESS - 1));
      expect(late).toEqual({ status: "late", watermarkMs: T0 + 20 * 60_000 });
      expect(await redis.keys(`${namespace}:*`)).toEqual(before);
      // Just inside the lateness still pairs.
      const ok = await store.applyClick(click("u", "https://e.org/c", T0 + 20 * 60_000 - LATENESS));
      expect(ok).toEqual({ status: "applied", pairs: 1 });
    });

    it("trims history older than watermark - window - lateness", async () => {
      const u = "trim";
      await store.applyClick(click(u, "https://e.org/old", T0));
      await store.applyClick(click(u, "https://e.org/new", T0 + WINDOW_MS + LATENESS + 1));
      expect(await redis.zrange(key("h", u), 0, -1)).toEqual([expect.stringMatching(/ https:\/\/e\.org\/new$/)]);
    });

    it("still calls a click a duplicate after its history entry was trimmed, and forgets ids after the retention", async () => {
      const u = "replayed";
      const old = click(u, "https://e.org/old", T0);
      await store.applyClick(old);
      await store.applyClick(click(u, "https://e.org/new", T0 + WINDOW_MS + LATENESS + 1));
      expect(await redis.zcard(key("h", u))).toBe(1);
      expect(await store.applyClick(old)).toEqual({ status: "duplicate" });
      // Both keys of the user expire the retention after its last click.
      for (const k of [key("h", u), key("ids", u)]) {
        const ttl = await redis.pttl(k);
        expect(ttl).toBeGreaterThan(DEFAULT_DEDUP_RETENTION_MS - 60_000);
        expect(ttl).toBeLessThanOrEqual(DEFAULT_DEDUP_RETENTION_MS);
      }
      // A click a retention later in event time trims the old id: the old click is then late, not a duplicate.
      await store.applyClick(click(u, "https://e.org/later", T0 + DEFAULT_DEDUP_RETENTION_MS + 1));
      expect(await redis.zrange(key("ids", u), 0, -1)).not.toContain(old.eventId);
      expect(await store.applyClick(old)).toMatchObject({ status: "late" });
    });

    it("refuses a user's click with the budget's worth of its clicks within 10 minutes of it, and changes nothing", async () => {
      const budget = 5;
      store = newStore(redis, namespace, LATENESS, DEFAULT_DEDUP_RETENTION_MS, budget);
      const u = "heavy";
      const five = Array.from({ length: budget }, (_, i) => click(u, `https://e.org/h${i}`, T0 + i * 60_000));
      expect((await store.applyClicks(five)).map((o) => o.status)).toEqual(Array(budget).fill("applied"));
      const before = await everyCount(five.map((c) => c.url));
      // Within 10 minutes of all five (either side), and of the last one only: both refused.
      expect(await store.applyClick(click(u, "https://e.org/x", T0 + 4 * 60_000 + 30_000))).toEqual({ status: "budget", near: 5 });
      expect(await store.applyClick(click(u, "https://e.org/x", T0 + 5 * 60_000))).toEqual({ status: "budget", near: 5 });
      expect(await everyCount([...five.map((c) => c.url), "https://e.org/x"])).toEqual(before);
      // Another user is not affected; the heavy user's click just over 10 minutes after its 2nd is applied.
      expect(await store.applyClick(click("light", "https://e.org/x", T0 + 60_000))).toEqual({ status: "applied", pairs: 0 });
      expect(await store.applyClick(click(u, "https://e.org/y", T0 + 60_000 + WINDOW_MS + 1))).toMatchObject({ status: "applied" });
    });

    it("orders by frequency desc then url asc, and cuts ties at the limit in url order", async () => {
      const from = "https://e.org/from";
      const counts: Record<string, number> = {
        "https://e.org/z": 3,
        "https://e.org/b": 3,
        "https://e.org/y": 2,
        "https://e.org/c": 1,
        "https://e.org/a": 1,
        "https://e.org/d": 1,
      };
      let user = 0;
      for (const [to, n] of Object.entries(counts)) {
        for (let i = 0; i < n; i++) {
          const u = `ord${user++}`;
          await store.applyClick(click(u, from, T0));
          await store.applyClick(click(u, to, T0 + 1000));
        }
      }
      const all = ["https://e.org/b", "https://e.org/z", "https://e.org/y", "https://e.org/a", "https://e.org/c", "https://e.org/d"];
      expect((await store.coVisitsAfter(from, 10)).map((c) => c.recommendation)).toEqual(all);
      for (let limit = 1; limit <= all.length; limit++) {
        expect((await store.coVisitsAfter(from, limit)).map((c) => c.recommendation)).toEqual(all.slice(0, limit));
      }
    });

    it("answers every url's top k exactly as the definition ranks it, for every k, whatever shard each user's clicks are in", async () => {
      let seed = 5;
      const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
      const urls = Array.from({ length: 12 }, (_, i) => `https://e.org/k${i}`);
      const clicks: ClickToApply[] = [];
      // Skewed urls and 40 users, so that a url's leaders differ from shard to shard and ties are common.
      for (let i = 0; i < 700; i++)
        clicks.push(click(`k${Math.floor(rnd() * 40)}`, urls[Math.floor(rnd() * rnd() * urls.length)]!, T0 + Math.floor(rnd() * 3600) * 1000));
      clicks.sort((x, y) => x.eventTimeMs - y.eventTimeMs);
      const applied: ClickToApply[] = [];
      for (let i = 0; i < clicks.length; i += 100) {
        const batch = clicks.slice(i, i + 100);
        (await store.applyClicks(batch)).forEach((o, k) => o.status === "applied" && applied.push(batch[k]!));
      }
      expect(applied.length).toBeGreaterThan(600);
      const definition = bruteForce(applied);
      for (const from of urls) {
        const ranked = [...(definition.get(from) ?? new Map<string, number>())]
          .map(([recommendation, frequency]) => ({ recommendation, frequency }))
          .sort((x, y) => y.frequency - x.frequency || (x.recommendation < y.recommendation ? -1 : 1));
        for (let k = 1; k <= urls.length; k++) expect(await store.coVisitsAfter(from, k)).toEqual(ranked.slice(0, k));
      }
    });

    it("answers the top k of a long list exactly, past what one read of each shard holds", async () => {
      const from = "https://e.org/long";
      const clicks: ClickToApply[] = [];
      // 240 pages after `from`, 1 to 6 visitors each, every visitor a user of their own: each shard holds a long, flat share.
      for (let i = 0; i < 240; i++)
        for (let j = 0; j < 1 + ((i * 7) % 6); j++) clicks.push(click(`l${i}-${j}`, from, T0), click(`l${i}-${j}`, `https://e.org/l${i}`, T0 + 1_000));
      for (let i = 0; i < clicks.length; i += 128) await store.applyClicks(clicks.slice(i, i + 128));
      const ranked = [...bruteForce(clicks).get(from)!]
        .map(([recommendation, frequency]) => ({ recommendation, frequency }))
        .sort((x, y) => y.frequency - x.frequency || (x.recommendation < y.recommendation ? -1 : 1));
      for (const k of [1, 10, 39, 40, 41, 100, 240]) expect(await store.coVisitsAfter(from, k)).toEqual(ranked.slice(0, k));
    });

    it("refuses a batch whose co-visit keys are not all declared, naming the urls, and changes nothing", async () => {
      const [a, b] = ["https://e.org/da", "https://e.org/db"];
      await store.applyClick(click("decl", a, T0));
      const s = shardOf("decl", shards);
      const p = `${namespace}:recsys:{${shardTag(s, shards)}}:`;
      const before = await redis.zrange(key("h", "decl"), 0, -1);
      // covisit.lua as the store runs it, given b's counts but not a's: the click of b pairs a -> b, which lives in a's counts.
      const keys = [`${p}counts-from-first-click:v4`, key("h", "decl"), key("ids", "decl"), key("r", "decl"), key("erased", "decl"), `${p}cv:${b}`];
      const args = [WINDOW_MS, LATENESS, `${p}cv:`, DEFAULT_DEDUP_RETENTION_MS, 100, 24 * 3600_000, 1, "decl-2", b, T0 + 1_000, 0];
      const answer = await (redis as unknown as { applyClicks(n: number, ...a: Array<string | number>): Promise<string[]> }).applyClicks(
        keys.length,
        ...keys,
        ...args,
      );
      expect(answer).toEqual(["undeclared", a]);
      expect(await redis.zrange(key("h", "decl"), 0, -1)).toEqual(before);
      expect(await redis.exists(`${p}cv:${a}`)).toBe(0);
      // The store reads the history first and declares a's counts itself.
      expect(await store.applyClick(click("decl", b, T0 + 1_000))).toEqual({ status: "applied", pairs: 1 });
      expect(await store.coVisitsAfter(a, 10)).toEqual([{ recommendation: b, frequency: 1 }]);
    });

    it("never lists the page itself; for a user, leaves out what they clicked within the seen horizon before their newest click, and fills up from the next", async () => {
      const [a, b, c, d, e, f] = ["a", "b", "c", "d", "e", "f"].map((p) => `https://e.org/${p}`);
      // Counts after a: b 5, c 4, d 3, e 2, f 1; a after a (a reload) 6.
      let n = 0;
      for (const [to, times] of [
        [a, 6],
        [b, 5],
        [c, 4],
        [d, 3],
        [e, 2],
        [f, 1],
      ] as const) {
        for (let i = 0; i < times; i++) {
          const u = `other${n++}`;
          await store.applyClicks([click(u, a!, T0), click(u, to, T0 + 1_000)]);
        }
      }
      const urls = (list: Array<{ recommendation: string }>) => list.map((x) => x.recommendation);
      expect(urls(await store.coVisitsAfter(a!, 3))).toEqual([b, c, d]);
      // The reader clicked d 25 hours before their newest click (outside the 24 h horizon), then b and c.
      await store.applyClick(click("reader", d!, T0 - 25 * 3600_000));
      await store.applyClicks([click("reader", b!, T0), click("reader", c!, T0 + 60_000)]);
      expect(urls(await store.coVisitsAfter(a!, 3, "reader"))).toEqual([d, e, f]);
      // The first pages read all left out (a itself, then the reader's b and c): read further.
      expect(urls(await store.coVisitsAfter(a!, 1, "reader"))).toEqual([d]);
      expect(await store.coVisitsAfter(a!, 2, "reader")).toEqual([
        { recommendation: d, frequency: 3 },
        { recommendation: e, frequency: 2 },
      ]);
      // As long as the data allows; a user with no clicks changes nothing.
      expect(urls(await store.coVisitsAfter(a!, 10, "reader"))).toEqual([d, e, f]);
      expect(urls(await store.coVisitsAfter(a!, 10, "nobody"))).toEqual([b, c, d, e, f]);
      // What it left out, as RecentPages tells the gateway.
      expect((await store.recentPages("reader")).sort()).toEqual([b, c]);
      expect(await store.recentPages("nobody")).toEqual([]);
      // A horizon of 2 minutes leaves out only c, clicked within it.
      const short = newStore(redis, namespace, LATENESS, DEFAULT_DEDUP_RETENTION_MS, undefined, 2 * 60_000);
      await short.applyClick(click("reader2", b!, T0));
      await short.applyClick(click("reader2", c!, T0 + 3 * 60_000));
      expect(urls(await short.coVisitsAfter(a!, 2, "reader2"))).toEqual([b, d]);
    });

    it("answers a user with more recent pages than one Lua call can take (8,101; the click budget allows 8,640 in 24 h)", async () => {
      const [a, b, c] = ["a", "b", "c"].map((p) => `https://e.org/${p}`);
      // Counts after a: b 3 (others 0 to 2), c 2.
      let n = 0;
      for (const [to, times] of [
        [b, 3],
        [c, 2],
      ] as const) {
        for (let i = 0; i < times; i++, n++) await store.applyClicks([click(`other${n}`, a!, T0), click(`other${n}`, to, T0 + 1_000)]);
      }
      // A click every 10.5 s (58 within any 10 minutes; the budget is 60) for 23.6 hours, each on a page of its own, then b.
      const heavy = Array.from({ length: 8_100 }, (_, i) => click("heavy", `https://e.org/heavy/${i}`, T0 + 1_000 + i * 10_500));
      heavy.push(click("heavy", b!, T0 + 1_000 + 8_100 * 10_500));
      for (let i = 0; i < heavy.length; i += 500) await store.applyClicks(heavy.slice(i, i + 500));
      expect(await store.coVisitsAfter(a!, 2, "heavy")).toEqual([{ recommendation: c, frequency: 2 }]);
      expect(await store.coVisitsAfter(a!, 2, "other0")).toEqual([{ recommendation: c, frequency: 2 }]);
      expect((await store.recentPages("heavy")).length).toBe(8_101);
    }, 60_000);

    it("answers a url with a long tail of equal counts, more than one call's arguments can hold (140,000 a shard)", async () => {
      // Counts as many users would leave them: in every shard 140,000 pages co-visited once after `hub`, and in the last shard a
      // page co-visited 5 times. Below the top, every count ties: a merge over shards reads each shard to its end.
      const hub = "https://e.org/hub";
      const top = "https://e.org/top";
      const countsKey = (s: number) => `${namespace}:recsys:{${shardTag(s, shards)}}:cv:${hub}`;
      for (let s = 0; s < shards; s++) {
        for (let i = 0; i < 140_000; i += 10_000) {
          const members = Array.from({ length: 10_000 }, (_, k) => [1, `https://e.org/tail/${s}/${i + k}`]).flat();
          await redis.zadd(countsKey(s), ...members);
        }
      }
      await redis.zadd(countsKey(shards - 1), 5, top);
      expect(await store.coVisitsAfter(hub, 2)).toEqual([
        { recommendation: top, frequency: 5 },
        { recommendation: "https://e.org/tail/0/0", frequency: 1 },
      ]);
    }, 180_000);

    it("keeps urls and user ids with separators apart", async () => {
      await store.applyClick(click("a:b", "https://e.org/x?q=1:2", T0));
      await store.applyClick(click("a:b", "https://e.org/y", T0 + 1));
      await store.applyClick(click("a", "https://e.org/y", T0 + 2));
      expect(await store.coVisitsAfter("https://e.org/x?q=1:2", 10)).toEqual([{ recommendation: "https://e.org/y", frequency: 1 }]);
    });

    it("after Redis lost its data, neither counts a click on top nor answers, until the counts start again", async () => {
      await store.applyClick(click("u", "https://e.org/a", T0));
      await store.applyClick(click("u", "https://e.org/b", T0 + 1_000));
      await clearNamespace();
      const c = click("u", "https://e.org/c", T0 + 2_000);
      expect(await store.applyClick(c)).toEqual({ status: "lost" });
      expect(store.countsLost).toBe(true);
      expect(await redis.keys(`${namespace}:*`)).toEqual([]);
      await expect(store.coVisitsAfter("https://e.org/a", 10)).rejects.toBeInstanceOf(CountsLostError);
      expect(await store.intact()).toBe(false);

      await store.markFirstClick();
      expect(await store.intact()).toBe(true);
      expect(await store.applyClick(c)).toEqual({ status: "applied", pairs: 0 });
      expect(await store.coVisitsAfter("https://e.org/c", 10)).toEqual([]);
    });

    it("applies a batch as the same clicks one at a time would: outcomes, pairs and counts", async () => {
      let seed = 11;
      const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
      const urls = Array.from({ length: 8 }, (_, i) => `https://example.org/b${i}`);
      const clicks: ClickToApply[] = [];
      for (let i = 0; i < 600; i++)
        clicks.push(click(`u${Math.floor(rnd() * 7)}`, urls[Math.floor(rnd() * urls.length)]!, T0 + Math.floor(rnd() * 5400) * 1000));
      // Arrival disturbed by up to 7 minutes, so that some clicks are late; some redelivered, some of
      // them inside the same batch.
      const arrival = clicks
        .map((c) => ({ c, k: c.eventTimeMs + rnd() * 7 * 60_000 }))
        .sort((a, b) => a.k - b.k)
        .map((x) => x.c);
      for (let i = 0; i < 60; i++) {
        const at = Math.floor(rnd() * arrival.length);
        arrival.splice(at + Math.floor(rnd() * 5), 0, arrival[at]!);
      }

      // The definition, one click at a time in arrival order: a duplicate if its id was seen for the
      // user; late if older than the user's newest time minus the lateness; else it pairs with every
      // applied click of the user within the window on either side.
      const seen = new Set<string>();
      const newest = new Map<string, number>();
      const applied: ClickToApply[] = [];
      const expected = arrival.map((c) => {
        if (seen.has(`${c.userid} ${c.eventId}`)) return { status: "duplicate" };
        const wm = newest.get(c.userid) ?? -Infinity;
        if (c.eventTimeMs < wm - LATENESS) return { status: "late", watermarkMs: wm };
        const pairs = applied.filter(
          (o) => o.userid === c.userid && o.eventTimeMs !== c.eventTimeMs && Math.abs(o.eventTimeMs - c.eventTimeMs) <= WINDOW_MS,
        ).length;
        seen.add(`${c.userid} ${c.eventId}`);
        newest.set(c.userid, Math.max(wm, c.eventTimeMs));
        applied.push(c);
        return { status: "applied", pairs };
      });
      expect(expected.filter((o) => o.status === "late").length).toBeGreaterThan(0);

      const outcomes = [];
      for (let i = 0; i < arrival.length; ) {
        const size = 1 + Math.floor(rnd() * 90);
        outcomes.push(...(await store.applyClicks(arrival.slice(i, i + size))));
        i += size;
      }
      expect(outcomes).toEqual(expected);
      expect(await everyCount(urls)).toEqual(bruteForce(applied));
    });

    it("calls the second copy of an event id in one batch a duplicate, and counts nothing in a batch when the counts were lost", async () => {
      const a = click("dup", "https://e.org/a", T0);
      const b = click("dup", "https://e.org/b", T0 + 1_000);
      expect(await store.applyClicks([a, b, a, b])).toEqual([
        { status: "applied", pairs: 0 },
        { status: "applied", pairs: 1 },
        { status: "duplicate" },
        { status: "duplicate" },
      ]);
      expect(await store.coVisitsAfter("https://e.org/a", 10)).toEqual([{ recommendation: "https://e.org/b", frequency: 1 }]);

      await clearNamespace();
      expect(await store.applyClicks([click("dup", "https://e.org/c", T0 + 2_000), click("other", "https://e.org/d", T0)])).toEqual([
        { status: "lost" },
        { status: "lost" },
      ]);
      expect(await redis.keys(`${namespace}:*`)).toEqual([]);
    });
  });

  describe("erasure (erase.lua, and covisit.lua's tombstone)", () => {
    const [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map((p) => `https://e.org/${p}`) as [string, string, string, string, string];
    /** A click of the CLICKS message at sequence `seq`. */
    const at = (seq: number, userid: string, url: string, t: number) => ({ ...click(userid, url, t), streamSeq: seq });
    const userKeys = (u: string) => ["h", "ids", "r"].map((k) => key(k, u));
    const urls = (list: Array<{ recommendation: string }>) => list.map((x) => x.recommendation);

    it("forgets the user's history, applied ids and recent pages, and keeps the co-visit counts", async () => {
      await store.applyClicks([at(1, "gone", a, T0), at(1, "gone", b, T0 + 1_000)]);
      await store.applyClick(at(2, "stays", a, T0));
      expect(await store.recentPages("gone")).toEqual([a, b]);

      expect(await store.forgetUser("gone", 3)).toBe("erased");
      expect(await redis.exists(...userKeys("gone"))).toBe(0);
      expect(await store.recentPages("gone")).toEqual([]);
      // For a userid, nothing of theirs is left out any more.
      expect(urls(await store.coVisitsAfter(a, 10, "gone"))).toEqual([b]);
      // The aggregate counts carry no userid and stay; another user is untouched.
      expect(await store.coVisitsAfter(a, 10)).toEqual([{ recommendation: b, frequency: 1 }]);
      expect(await store.recentPages("stays")).toEqual([a]);
      // The tombstone holds the erasure's sequence, for as long as CLICKS may hold a message before it.
      const tombstone = key("erased", "gone");
      expect(await redis.zscore(tombstone, "seq")).toBe("3");
      expect(await redis.pttl(tombstone)).toBeGreaterThan(DEFAULT_TOMBSTONE_MS - 60_000);
      expect(await redis.pttl(tombstone)).toBeLessThanOrEqual(DEFAULT_TOMBSTONE_MS);
    });

    it("skips a redelivered click of a message before the erasure: not counted again, not back in the history", async () => {
      await store.applyClicks([at(1, "u", a, T0), at(1, "u", b, T0 + 1_000)]);
      const third = at(2, "u", c, T0 + 2_000);
      await store.applyClick(third);
      await store.forgetUser("u", 3);
      const counts = await everyCount([a, b, c]);

      // Redelivered (its id was forgotten with the user, so only the sequence tells), alone and in a batch with a newer click.
      expect(await store.applyClick(third)).toEqual({ status: "erased" });
      expect(await store.applyClicks([at(1, "u", d, T0 + 3_000), at(4, "u", e, T0 + 4_000)])).toEqual([{ status: "erased" }, { status: "applied", pairs: 0 }]);
      expect(await everyCount([a, b, c, d])).toEqual(counts);
      expect(await store.recentPages("u")).toEqual([e]);
      expect((await redis.zrange(key("h", "u"), 0, -1)).map((m) => m.split(" ")[1])).toEqual([e]);
    });

    it("changes nothing when an erasure is redelivered after the same userid's new clicks", async () => {
      await store.applyClick(at(1, "u", a, T0));
      expect(await store.forgetUser("u", 2)).toBe("erased");
      await store.applyClicks([at(3, "u", b, T0 + 60_000), at(4, "u", c, T0 + 120_000)]);

      expect(await store.forgetUser("u", 2)).toBe("duplicate");
      expect(await store.forgetUser("u", 1)).toBe("duplicate");
      expect((await store.recentPages("u")).sort()).toEqual([b, c]);
      // The new history is whole: the next click pairs with both new clicks.
      expect(await store.applyClick(at(5, "u", d, T0 + 180_000))).toEqual({ status: "applied", pairs: 2 });
      // A later erasure forgets them, and keeps the greater sequence.
      expect(await store.forgetUser("u", 6)).toBe("erased");
      expect(await store.recentPages("u")).toEqual([]);
      expect(await store.forgetUser("u", 5)).toBe("duplicate");
      expect(await redis.zscore(key("erased", "u"), "seq")).toBe("6");
    });

    it("makes the clicks after the erasure a new user's: they pair only with each other, and none is late by the old clicks", async () => {
      await store.applyClicks([at(1, "u", a, T0 + 30 * 60_000), at(1, "u", b, T0 + 30 * 60_000 + 1_000)]);
      await store.forgetUser("u", 2);
      // 30 minutes before the erased user's newest click: late for them, not for the new user.
      expect(await store.applyClick(at(3, "u", c, T0))).toEqual({ status: "applied", pairs: 0 });
      expect(await store.applyClick(at(4, "u", d, T0 + 1_000))).toEqual({ status: "applied", pairs: 1 });
      expect(await store.applyClick(at(5, "u", a, T0 + 30 * 60_000 + 2_000))).toEqual({ status: "applied", pairs: 0 });
      expect(await store.coVisitsAfter(c, 10)).toEqual([{ recommendation: d, frequency: 1 }]);
      expect(await store.coVisitsAfter(a, 10)).toEqual([{ recommendation: b, frequency: 1 }]);
      expect(await store.coVisitsAfter(b, 10)).toEqual([]);
    });

    it("changes nothing after Redis lost the counts", async () => {
      await store.applyClick(at(1, "u", a, T0));
      await clearNamespace();
      expect(await store.forgetUser("u", 2)).toBe("lost");
      expect(store.countsLost).toBe(true);
      expect(await redis.keys(`${namespace}:*`)).toEqual([]);
    });
  });

  describe("hidden pages (visibility.lua, recommend.lua)", () => {
    const [a, b, c, d, e, f, z] = ["a", "b", "c", "d", "e", "f", "z"].map((p) => `https://e.org/${p}`) as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    const urls = (list: Array<{ recommendation: string }>) => list.map((x) => x.recommendation);
    /** Counts after a: b 5, c 4, d 3, e 2, f 1, z 1. */
    async function countsAfterA() {
      let n = 0;
      for (const [to, times] of [
        [b, 5],
        [c, 4],
        [d, 3],
        [e, 2],
        [f, 1],
        [z, 1],
      ] as const) {
        for (let i = 0; i < times; i++) {
          const u = `h${n++}`;
          await store.applyClicks([click(u, a, T0), click(u, to, T0 + 1_000)]);
        }
      }
    }

    it("never lists a hidden url, and fills the list up to its limit from the next ones", async () => {
      await countsAfterA();
      expect(urls(await store.coVisitsAfter(a, 3))).toEqual([b, c, d]);
      expect(await store.applyVisibility(c, true, 1)).toBe("applied");
      expect(await store.coVisitsAfter(a, 3)).toEqual([
        { recommendation: b, frequency: 5 },
        { recommendation: d, frequency: 3 },
        { recommendation: e, frequency: 2 },
      ]);
      // Hidden further down as the list is read past the first: read on until it is full; ties at the cut-off still in url order.
      await store.applyVisibility(b, true, 2);
      await store.applyVisibility(e, true, 3);
      expect(urls(await store.coVisitsAfter(a, 2))).toEqual([d, f]);
      expect(urls(await store.coVisitsAfter(a, 3))).toEqual([d, f, z]);
      // As long as the data allows.
      expect(urls(await store.coVisitsAfter(a, 10))).toEqual([d, f, z]);
      // With a user's recent pages left out too.
      await store.applyClick(click("reader", d, T0));
      expect(urls(await store.coVisitsAfter(a, 2, "reader"))).toEqual([f, z]);
      expect((await store.hiddenPages()).sort()).toEqual([b, c, e]);
    });

    it("changes nothing when an older state of a url comes after a newer one, or the same one again", async () => {
      await countsAfterA();
      expect(await store.applyVisibility(c, false, 5)).toBe("applied");
      expect(await store.applyVisibility(c, true, 4)).toBe("stale");
      expect(urls(await store.coVisitsAfter(a, 3))).toEqual([b, c, d]);
      expect(await store.applyVisibility(c, true, 7)).toBe("applied");
      expect(await store.applyVisibility(c, false, 6)).toBe("stale");
      expect(await store.applyVisibility(c, false, 7)).toBe("stale");
      expect(urls(await store.coVisitsAfter(a, 3))).toEqual([b, d, e]);
    });

    it("lists a url again once it is shown", async () => {
      await countsAfterA();
      await store.applyVisibility(b, true, 10);
      expect(urls(await store.coVisitsAfter(a, 3))).toEqual([c, d, e]);
      expect(await store.applyVisibility(b, false, 11)).toBe("applied");
      expect(await store.coVisitsAfter(a, 3)).toEqual([
        { recommendation: b, frequency: 5 },
        { recommendation: c, frequency: 4 },
        { recommendation: d, frequency: 3 },
      ]);
      expect(await store.hiddenPages()).toEqual([]);
    });
  });

  describe("a reader in another process (CovisitStore.reader, as the gateway reads)", () => {
    const [a, b] = ["https://e.org/ra", "https://e.org/rb"] as const;

    it("answers covisit's answers only while covisit serves from the counts", async () => {
      await store.applyClicks([click("r1", a, T0), click("r1", b, T0 + 1_000)]);
      const reader = CovisitStore.reader(redis, namespace, undefined, shards);
      // Counts in Redis, but covisit has not served from them yet (starting, or a rebuild under way): nothing is answered.
      await expect(reader.coVisitsAfter(a, 10)).rejects.toBeInstanceOf(NotServedYetError);
      await expect(answerRecommendation(reader, { url: a, limit: 10, userid: "" })).rejects.toMatchObject({ code: Code.Unavailable });
      await store.markServed();
      expect(await reader.coVisitsAfter(a, 10)).toEqual(await store.coVisitsAfter(a, 10));
      expect(await reader.coVisitsAfter(a, 10)).toEqual([{ recommendation: b, frequency: 1 }]);
      // Hidden pages and the user's own recent pages are left out as covisit leaves them out.
      await store.applyVisibility(b, true, 1);
      expect(await reader.coVisitsAfter(a, 10)).toEqual([]);
      await store.applyVisibility(b, false, 2);
      expect(await reader.coVisitsAfter(a, 10, "r1")).toEqual(await store.coVisitsAfter(a, 10, "r1"));
      // The keys deleted (Redis lost them, or pnpm covisit:rebuild): nothing again until covisit serves once more.
      await clearNamespace();
      await expect(reader.coVisitsAfter(a, 10)).rejects.toBeInstanceOf(NotServedYetError);
    });

    it("checks the request as covisit does: InvalidArgument naming the field", async () => {
      await store.markServed();
      const reader = CovisitStore.reader(redis, namespace, undefined, shards);
      await expect(answerRecommendation(reader, { url: "nope", limit: 10, userid: "" })).rejects.toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: expect.stringMatching(/^url:/),
      });
      await expect(answerRecommendation(reader, { url: a, limit: -1, userid: "" })).rejects.toMatchObject({
        code: Code.InvalidArgument,
        rawMessage: expect.stringMatching(/^limit:/),
      });
    });
  });
});
