import { COVISIT_WINDOW_MS } from "@recsys/validation";
import { describe, expect, it } from "vitest";
import { drawStreams } from "./draws.js";
import { truthJson } from "./truth.js";
import { COMMON_WORDS, TOPICS } from "./vocabulary.js";
import { generateWorkload, type Workload } from "./workload.js";
import { jsonLine, type SyntheticClick } from "./workload-format.js";
import { BEHAVIOUR, resolveParams, type WorkloadParams } from "./workload-params.js";

const SMALL: Partial<WorkloadParams> = { users: 400, pages: 160, topics: 4, clicks: 3000, paths: 4, followers: 12, durationMinutes: 15, seed: 7 };
const small = generateWorkload(SMALL);

const serialized = (w: Workload) => [w.pages.map(jsonLine).join("\n"), w.clicks.map(jsonLine).join("\n"), truthJson(w.truth)];
const ms = (c: SyntheticClick) => Date.parse(c.event_time);

/** The reference SQL's co-visits, by brute force: b → a for clicks of one user with b.t < a.t <= b.t + 10 min. */
function coVisits(clicks: SyntheticClick[]): Map<string, Map<string, number>> {
  const byUser = new Map<string, SyntheticClick[]>();
  for (const c of clicks) (byUser.get(c.userid) ?? byUser.set(c.userid, []).get(c.userid)!).push(c);
  const counts = new Map<string, Map<string, number>>();
  for (const list of byUser.values()) {
    for (const b of list) {
      for (const a of list) {
        if (!(ms(b) < ms(a) && ms(b) >= ms(a) - COVISIT_WINDOW_MS)) continue;
        const after = counts.get(b.url) ?? counts.set(b.url, new Map()).get(b.url)!;
        after.set(a.url, (after.get(a.url) ?? 0) + 1);
      }
    }
  }
  return counts;
}

/** Recommendation's order: frequency desc, then url asc. */
const ranked = (after: Map<string, number>) => [...after].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));

describe("generateWorkload", () => {
  it("gives the same bytes for the same parameters, in whatever order they come, and others for another seed", () => {
    const reordered = generateWorkload(Object.fromEntries(Object.entries(SMALL).reverse()));
    expect(serialized(reordered)).toEqual(serialized(small));
    const other = serialized(generateWorkload({ ...SMALL, seed: 8 }));
    serialized(small).forEach((text, i) => expect(other[i]).not.toEqual(text));
  });

  it("keeps the pages when only the clicks change: each part draws from its own stream", () => {
    expect(generateWorkload({ ...SMALL, clicks: 4000 }).pages).toEqual(small.pages);
  });

  it("writes pages of one topic's words among common words, with unique urls and ids", () => {
    const { pages, truth } = small;
    expect(pages).toHaveLength(160);
    expect(new Set(pages.map((p) => p.url)).size).toBe(160);
    expect(new Set(pages.map((p) => p.id)).size).toBe(160);
    truth.topics.forEach((topic, t) => {
      expect(topic.pages).toHaveLength(40);
      const words = new Set([...TOPICS[t]!.words, ...COMMON_WORDS]);
      for (const url of topic.pages) {
        const page = pages.find((p) => p.url === url)!;
        const tokens = page.text.toLowerCase().split(/[ .]+/).filter(Boolean);
        expect(tokens.every((w) => words.has(w))).toBe(true);
        expect(tokens.filter((w) => TOPICS[t]!.words.includes(w)).length / tokens.length).toBeGreaterThan(0.3);
        expect(
          page.title
            .toLowerCase()
            .split(" ")
            .every((w) => TOPICS[t]!.words.includes(w)),
        ).toBe(true);
        expect(page._source_time).toBe("2024-01-01T00:00:00Z");
      }
    });
  });

  it("writes the clicks asked for, in time order, inside the duration, never one user, page and second twice", () => {
    const { clicks } = small;
    expect(clicks).toHaveLength(3000);
    const times = clicks.map(ms);
    expect(times).toEqual([...times].sort((x, y) => x - y));
    expect(Math.min(...times)).toBeGreaterThanOrEqual(Date.parse("2024-01-02T00:00:00Z"));
    expect(Math.max(...times)).toBeLessThan(Date.parse("2024-01-02T00:15:00Z"));
    expect(new Set(clicks.map((c) => `${c.userid} ${c.url} ${c.event_time}`)).size).toBe(3000);
    for (const c of clicks) {
      expect(c.viewed_percent).toBeGreaterThanOrEqual(1);
      expect(c.viewed_percent).toBeLessThanOrEqual(100);
      expect(c.seconds_on_page).toBeGreaterThan(0);
    }
    const { pathClicks, browsingClicks, noiseClicks } = small.truth.counts;
    expect(pathClicks).toBe(4 * 12 * 11);
    expect(pathClicks + browsingClicks + noiseClicks).toBe(3000);
    expect(noiseClicks).toBe(Math.round((3000 - pathClicks) * 0.15));
  });

  it("has every follower click a path's pages in order, the last within the co-visit window of the first", () => {
    for (const path of small.truth.paths) {
      expect(path.followers).toHaveLength(12);
      for (const userid of path.followers) {
        const mine = small.clicks.filter((c) => c.userid === userid);
        const times = path.pages.map((url) => mine.filter((c) => c.url === url).map(ms));
        // Some click of each page, in order and within 570 s of a click of the first page.
        const ok = times[0]!.some((t0) => {
          let t = t0;
          return times.slice(1).every((ts) => {
            const next = ts.find((x) => x > t && x <= t0 + BEHAVIOUR.pathSpanSeconds * 1000 + 1000);
            if (next === undefined) return false;
            t = next;
            return true;
          });
        });
        expect(ok, `${userid} on ${path.pages[0]}`).toBe(true);
      }
    }
  });

  it("states for every user the topic, the pages clicked and the pages of the topic held out", () => {
    const { truth, clicks } = small;
    expect(truth.users).toHaveLength(400);
    expect(truth.users.filter((u) => u.topic !== null)).toHaveLength(320);
    const topicPages = new Map(truth.topics.map((t) => [t.name, t.pages]));
    for (const u of truth.users) {
      const clicked = new Set(clicks.filter((c) => c.userid === u.userid).map((c) => c.url));
      expect(new Set(u.clicked)).toEqual(clicked);
      if (u.topic === null) {
        expect(u.heldOut).toEqual([]);
        continue;
      }
      expect(u.heldOut).toEqual(topicPages.get(u.topic)!.filter((url) => !clicked.has(url)));
    }
    // Followers are users of the path's topic, or of none.
    for (const path of truth.paths) for (const f of path.followers) expect([path.topic, null]).toContain(truth.users.find((u) => u.userid === f)!.topic);
  });

  it("shows every preference: a user with a topic clicks mostly pages of it", () => {
    const topicOf = new Map(small.truth.topics.flatMap((t) => t.pages.map((url) => [url, t.name] as const)));
    const shares = small.truth.users
      .filter((u) => u.topic !== null)
      .map((u) => {
        const mine = small.clicks.filter((c) => c.userid === u.userid);
        return mine.filter((c) => topicOf.get(c.url) === u.topic).length / Math.max(1, mine.length);
      });
    const mean = shares.reduce((s, x) => s + x, 0) / shares.length;
    expect(mean).toBeGreaterThan(0.7);
    expect(shares.filter((s) => s >= 0.5).length / shares.length).toBeGreaterThan(0.9);
  });

  // The design guarantee that evaluate's Recommendation precision rests on, checked on the exact
  // counts the service must give: every follower adds one co-visit from a path's first page to each
  // later page, and browsing and noise give no other page of the topic as many.
  it.each([
    ["the small workload of the integration test", SMALL],
    ["the defaults", {}],
    ["the defaults with another seed", { seed: 2 }],
  ])(
    "puts a path's later pages first in the co-visits of its first page: %s",
    (_, params) => {
      const w = params === SMALL ? small : generateWorkload(params);
      const counts = coVisits(w.clicks);
      for (const path of w.truth.paths) {
        const order = ranked(counts.get(path.pages[0]!)!);
        const later = new Set(path.pages.slice(1));
        expect(new Set(order.slice(0, later.size).map(([url]) => url))).toEqual(later);
        const weakestLater = Math.min(...order.filter(([url]) => later.has(url)).map(([, n]) => n));
        const strongestOther = order.find(([url]) => !later.has(url))?.[1] ?? 0;
        expect(weakestLater).toBeGreaterThanOrEqual(w.truth.params.followers);
        expect(weakestLater - strongestOther).toBeGreaterThanOrEqual(3);
      }
    },
    30_000,
  ); // generating the default workload takes about 2 s of CPU
});

describe("resolveParams", () => {
  it("fills in the defaults, 2 paths a topic", () => {
    expect(resolveParams({})).toMatchObject({
      users: 600,
      pages: 600,
      topics: 8,
      clicks: 20_000,
      paths: 16,
      pathLength: 11,
      followers: 20,
      seed: 1,
      start: "2024-01-02T00:00:00Z",
    });
    expect(resolveParams({ topics: 3 }).paths).toBe(6);
  });

  it.each([
    [{ topics: 15 }, "--topics"],
    [{ topics: 0 }, "--topics"],
    [{ pages: 40, paths: 8 }, "--paths"],
    [{ clicks: 1000 }, "--clicks"],
    [{ users: 10 }, "--followers"],
    [{ noise: 1.5 }, "--noise"],
    [{ seed: 2 ** 32 }, "--seed"],
    [{ start: "yesterday" }, "--start"],
    [{ durationMinutes: 10 }, "--duration"],
    [{ pathLength: 1 }, "--path-length"],
  ])("refuses %j naming %s", (params, option) => {
    expect(() => generateWorkload(params)).toThrow(option);
  });
});

describe("files", () => {
  it("writes a line as the reference files space it", () => {
    expect(jsonLine({ userid: "u", url: "https://e.org/a", event_time: "2024-01-02T00:00:00Z", seconds_on_page: 3 })).toBe(
      '{"userid": "u", "url": "https://e.org/a", "event_time": "2024-01-02T00:00:00Z", "seconds_on_page": 3}',
    );
  });

  it("writes truth.json as JSON that reads back as the truth, a user a line", () => {
    const text = truthJson(small.truth);
    expect(JSON.parse(text)).toEqual(small.truth);
    expect(text.split("\n").filter((l) => l.startsWith('    {"userid"'))).toHaveLength(400);
  });
});

describe("vocabulary and draws", () => {
  it("has no word in two topics, and only lowercase words", () => {
    const all = TOPICS.flatMap((t) => t.words);
    expect(new Set(all).size).toBe(all.length);
    for (const w of [...all, ...COMMON_WORDS]) expect(w).toMatch(/^[a-z]+$/);
    for (const t of TOPICS) expect(t.words.length).toBeGreaterThanOrEqual(14);
  });

  it("draws the same numbers from the same seed, in independent streams", () => {
    const [a1, b1] = drawStreams(42, 2);
    const [a2] = drawStreams(42, 1);
    const first = Array.from({ length: 20 }, () => a1!.int(0, 1000));
    expect(Array.from({ length: 20 }, () => a2!.int(0, 1000))).toEqual(first);
    expect(Array.from({ length: 20 }, () => b1!.int(0, 1000))).not.toEqual(first);
  });
});
