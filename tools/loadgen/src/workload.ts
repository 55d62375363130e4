import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import type { RandomGenerator } from "pure-rand/types/RandomGenerator";
import { COVISIT_WINDOW_MS } from "@recsys/validation";
import { COMMON_WORDS, TOPICS, type Topic } from "./vocabulary.js";

/** What `loadgen generate` makes; the same parameters give the same workload, byte for byte. */
export interface WorkloadParams {
  users: number;
  pages: number;
  topics: number;
  clicks: number;
  /** Planted co-visit paths, spread over the topics in turn. */
  paths: number;
  /** Pages of a path, its first page included. */
  pathLength: number;
  /** Users who follow each path. */
  followers: number;
  /** Share of the clicks outside paths that are background noise. */
  noise: number;
  /** 0 .. 2^32 - 1. */
  seed: number;
  /** RFC 3339: the earliest possible click. */
  start: string;
  durationMinutes: number;
}

export const DEFAULT_PARAMS: Omit<WorkloadParams, "paths"> = {
  users: 600,
  pages: 600,
  topics: 8,
  clicks: 20_000,
  pathLength: 11,
  followers: 20,
  noise: 0.15,
  seed: 1,
  start: "2024-01-02T00:00:00Z",
  durationMinutes: 60,
};

/** How the simulated users behave; recorded in truth.json. */
export const BEHAVIOUR = {
  /** Share of users with a preferred topic; the others browse every page alike. */
  preferringUsers: 0.8,
  /** Share of a preferring user's browsing clicks on pages of their topic; the rest go to any page. */
  topicAffinity: 0.85,
  sessionClicks: [3, 8],
  /** Seconds between two clicks of a browsing session. */
  sessionGapSeconds: [20, 120],
  /** A path's last page follows its first by at most this: 30 s inside the co-visit window. */
  pathSpanSeconds: COVISIT_WINDOW_MS / 1000 - 30,
  /** Share of the words of a page's text drawn from its topic; the others are common words. */
  topicWordShare: 0.55,
} as const;

export const TRUTH_FORMAT = "recsys-synthetic-truth/1";
export const URL_BASE = "https://synthetic.example";

/** A page as in the reference content.json.gz. */
export interface SyntheticPage {
  id: string;
  url: string;
  title: string;
  text: string;
  _source_time: string;
}

/** How the reader reached the page: from outside, by a link on the page before, or by a search. */
export type ClickEventType = "landing" | "link" | "search";

/** A click as in the reference clickstream.json.gz, with what an analytics tag would add. */
export interface SyntheticClick {
  userid: string;
  url: string;
  event_time: string;
  event_type: ClickEventType;
  seconds_on_page: number;
  viewed_percent: number;
}

export interface PlantedPath {
  topic: string;
  /** In the order followers click them, each within the pathSpanSeconds of the first. */
  pages: string[];
  followers: string[];
}

export interface UserTruth {
  userid: string;
  /** The preferred topic; null for users who browse every page alike. */
  topic: string | null;
  /** Every page the user clicked. */
  clicked: string[];
  /** Pages of the preferred topic the user never clicked. */
  heldOut: string[];
}

export interface Truth {
  format: typeof TRUTH_FORMAT;
  params: WorkloadParams;
  behaviour: typeof BEHAVIOUR;
  counts: { pages: number; users: number; preferringUsers: number; clicks: number; pathClicks: number; browsingClicks: number; noiseClicks: number };
  topics: Array<{ name: string; pages: string[] }>;
  paths: PlantedPath[];
  users: UserTruth[];
}

export interface Workload {
  pages: SyntheticPage[];
  clicks: SyntheticClick[];
  truth: Truth;
}

/** Seeded draws: every random choice of the generator goes through one of these. */
export class Draws {
  constructor(private readonly rng: RandomGenerator) {}

  /** An integer in [from, to]. */
  int(from: number, to: number): number {
    return uniformInt(this.rng, from, to);
  }

  /** A number in [0, 1). */
  float(): number {
    return uniformFloat64(this.rng);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }

  /** Fisher–Yates, in place. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }

  /** `n` distinct items, in draw order. */
  sample<T>(xs: readonly T[], n: number): T[] {
    return this.shuffle([...xs]).slice(0, n);
  }
}

/**
 * Independent streams of one seed (xoroshiro128+ jumps of 2^64 draws), one per part of the
 * workload, so that changing the number of clicks leaves the pages as they were.
 */
export function drawStreams(seed: number, n: number): Draws[] {
  const rng = xoroshiro128plus(seed);
  return Array.from({ length: n }, () => {
    const stream = new Draws(rng.clone());
    rng.jump();
    return stream;
  });
}

/** Defaults filled in and every value checked; an error names the option as the CLI spells it. */
export function resolveParams(input: Partial<WorkloadParams>): WorkloadParams {
  const given = { ...DEFAULT_PARAMS, ...stripUndefined(input) };
  const topics = given.topics;
  if (!Number.isInteger(topics) || topics < 1 || topics > TOPICS.length) throw new Error(`--topics must be 1..${TOPICS.length} (the built-in vocabularies), got ${topics}`);
  // Built key by key so that truth.json lists them in one order, however they were given.
  const p: WorkloadParams = {
    users: given.users,
    pages: given.pages,
    topics,
    clicks: given.clicks,
    paths: given.paths ?? 2 * topics,
    pathLength: given.pathLength,
    followers: given.followers,
    noise: given.noise,
    seed: given.seed,
    start: given.start,
    durationMinutes: given.durationMinutes,
  };
  const whole = (name: string, v: number, min: number, max = Number.MAX_SAFE_INTEGER) => {
    if (!Number.isInteger(v) || v < min || v > max) throw new Error(`${name} must be a whole number in ${min}..${max}, got ${v}`);
  };
  whole("--users", p.users, 1);
  whole("--pages", p.pages, topics);
  whole("--clicks", p.clicks, 1);
  whole("--paths", p.paths, 0);
  whole("--path-length", p.pathLength, 2, 31);
  whole("--followers", p.followers, 1);
  whole("--seed", p.seed, 0, 2 ** 32 - 1);
  whole("--duration", p.durationMinutes, 15, 7 * 24 * 60);
  if (!(p.noise >= 0 && p.noise <= 1)) throw new Error(`--noise must be a share in 0..1, got ${p.noise}`);
  if (!Number.isFinite(Date.parse(p.start))) throw new Error(`--start must be an RFC 3339 time, got ${JSON.stringify(p.start)}`);
  p.start = isoSeconds(Date.parse(p.start));
  const pagesPerTopic = Math.floor(p.pages / topics);
  const pathsPerTopic = Math.ceil(p.paths / topics);
  if (pathsPerTopic * p.pathLength > pagesPerTopic) {
    throw new Error(`--paths: ${pathsPerTopic} paths of ${p.pathLength} pages in one topic need ${pathsPerTopic * p.pathLength} pages of it, but a topic has ${pagesPerTopic}; raise --pages or lower --paths or --path-length`);
  }
  const pathClicks = p.paths * p.followers * p.pathLength;
  if (pathClicks > p.clicks) throw new Error(`--clicks: the paths alone take ${pathClicks} clicks (paths × followers × path length), more than ${p.clicks}`);
  return p;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** RFC 3339 in UTC, without milliseconds when there are none (as the reference files write times). */
export function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, "Z");
}

interface Visit {
  user: number;
  page: number;
  /** Seconds after the start. */
  t: number;
  type: ClickEventType;
  seconds: number;
  viewed: number;
}

/** The whole workload, from the parameters alone. */
export function generateWorkload(input: Partial<WorkloadParams>): Workload {
  const p = resolveParams(input);
  const [pageDraws, userDraws, pathDraws, browseDraws, noiseDraws] = drawStreams(p.seed, 5) as [Draws, Draws, Draws, Draws, Draws];
  const startMs = Date.parse(p.start);
  const durationS = p.durationMinutes * 60;
  const topics = TOPICS.slice(0, p.topics);

  // Pages: page i is of topic i mod T, so every topic has about the same number.
  const topicOf = (page: number) => page % p.topics;
  const ids = uniqueDraws(p.pages, () => String(pageDraws.int(100_000_000, 999_999_999)));
  const sourceTime = isoSeconds(startMs - 24 * 3600_000);
  const pages: SyntheticPage[] = Array.from({ length: p.pages }, (_, i) => {
    const topic = topics[topicOf(i)]!;
    return {
      id: ids[i]!,
      url: `${URL_BASE}/s${p.seed}/${topic.name}/${Math.floor(i / p.topics) + 1}`,
      title: pageTitle(pageDraws, topic),
      text: pageText(pageDraws, topic),
      _source_time: sourceTime,
    };
  });
  const pagesOfTopic = topics.map((_, t) => pages.map((_, i) => i).filter((i) => topicOf(i) === t));

  // Users: a balanced share of them prefer a topic, taken in turn.
  const userids = uniqueDraws(p.users, () => uuidLike(userDraws));
  const userTopic: Array<number | null> = new Array(p.users).fill(null);
  const preferring = Math.round(p.users * BEHAVIOUR.preferringUsers);
  userDraws.shuffle(Array.from({ length: p.users }, (_, u) => u)).forEach((u, rank) => {
    if (rank < preferring) userTopic[u] = rank % p.topics;
  });

  const visits: Visit[] = [];
  const taken = new Set<string>();
  // The same user, page and second twice would be one event to ingest (the same derived id).
  const visit = (v: Visit) => {
    while (taken.has(`${v.user}:${v.page}:${v.t}`)) v.t++;
    taken.add(`${v.user}:${v.page}:${v.t}`);
    visits.push(v);
  };

  // Planted paths: distinct pages of one topic, followed by users of that topic (or of none).
  const pathPool = pagesOfTopic.map((ps) => pathDraws.shuffle([...ps]));
  const gapMax = Math.min(90, Math.floor(BEHAVIOUR.pathSpanSeconds / (p.pathLength - 1)));
  const gapMin = Math.max(1, Math.floor(gapMax / 2));
  const paths: Array<{ topic: number; pages: number[]; followers: number[] }> = [];
  for (let j = 0; j < p.paths; j++) {
    const topic = j % p.topics;
    const pathPages = pathPool[topic]!.splice(0, p.pathLength);
    const ofTopic = pathDraws.shuffle(userids.map((_, u) => u).filter((u) => userTopic[u] === topic));
    const ofNone = pathDraws.shuffle(userids.map((_, u) => u).filter((u) => userTopic[u] === null));
    const candidates = [...ofTopic, ...ofNone];
    if (candidates.length < p.followers) {
      throw new Error(`--followers: ${p.followers} users follow each path, but only ${candidates.length} prefer ${topics[topic]!.name} or no topic; raise --users or lower --followers`);
    }
    const followers = candidates.slice(0, p.followers);
    for (const user of followers) {
      const gaps = Array.from({ length: p.pathLength - 1 }, () => pathDraws.int(gapMin, gapMax));
      let t = pathDraws.int(0, durationS - 1 - sum(gaps));
      pathPages.forEach((page, step) => {
        const seconds = step < gaps.length ? gaps[step]! : pathDraws.int(10, 180);
        visit({ user, page, t, type: step === 0 ? "landing" : "link", seconds, viewed: viewedPercent(pathDraws, seconds) });
        t += gaps[step] ?? 0;
      });
    }
    paths.push({ topic, pages: pathPages, followers });
  }
  const pathClicks = visits.length;

  // Browsing sessions: users weighted unequally, preferring users mostly on their topic.
  const outsidePaths = p.clicks - pathClicks;
  const noiseClicks = Math.round(outsidePaths * p.noise);
  const browsingClicks = outsidePaths - noiseClicks;
  const cumulative: number[] = [];
  let total = 0;
  for (let u = 0; u < p.users; u++) cumulative.push((total += 0.5 + browseDraws.float()));
  const choosePage = (user: number, previous: number): number => {
    const topic = userTopic[user] ?? null;
    for (let attempt = 0; ; attempt++) {
      const page = topic !== null && browseDraws.chance(BEHAVIOUR.topicAffinity) ? browseDraws.pick(pagesOfTopic[topic]!) : browseDraws.int(0, p.pages - 1);
      if (page !== previous || attempt >= 3) return page;
    }
  };
  const [minSession, maxSession] = BEHAVIOUR.sessionClicks;
  const [minGap, maxGap] = BEHAVIOUR.sessionGapSeconds;
  // Every user browses at least once while the clicks last, so every preference shows; then
  // sessions go to users in proportion to their weight.
  const firstRound = browseDraws.shuffle(userids.map((_, u) => u));
  for (let remaining = browsingClicks, session = 0; remaining > 0; session++) {
    const user = session < firstRound.length ? firstRound[session]! : lowerBound(cumulative, browseDraws.float() * total);
    const n = Math.min(remaining, browseDraws.int(minSession, maxSession));
    const gaps = Array.from({ length: n - 1 }, () => browseDraws.int(minGap, maxGap));
    let t = browseDraws.int(0, durationS - 1 - sum(gaps));
    let previous = -1;
    for (let i = 0; i < n; i++) {
      const page = choosePage(user, previous);
      const seconds = i < gaps.length ? gaps[i]! : browseDraws.int(5, 300);
      const type: ClickEventType = i === 0 ? "landing" : browseDraws.chance(0.8) ? "link" : "search";
      visit({ user, page, t, type, seconds, viewed: viewedPercent(browseDraws, seconds) });
      t += gaps[i] ?? 0;
      previous = page;
    }
    remaining -= n;
  }

  // Background noise: any user, any page, any time.
  for (let i = 0; i < noiseClicks; i++) {
    const seconds = noiseDraws.int(3, 240);
    visit({ user: noiseDraws.int(0, p.users - 1), page: noiseDraws.int(0, p.pages - 1), t: noiseDraws.int(0, durationS - 1), type: "landing", seconds, viewed: viewedPercent(noiseDraws, seconds) });
  }

  const clicks = visits
    .map((v) => ({ v, userid: userids[v.user]!, url: pages[v.page]!.url }))
    .sort((a, b) => a.v.t - b.v.t || compare(a.userid, b.userid) || compare(a.url, b.url))
    .map(({ v, userid, url }): SyntheticClick => ({
      userid,
      url,
      event_time: isoSeconds(startMs + v.t * 1000),
      event_type: v.type,
      seconds_on_page: v.seconds,
      viewed_percent: v.viewed,
    }));

  const clickedBy = userids.map(() => new Set<number>());
  for (const v of visits) clickedBy[v.user]!.add(v.page);
  const urlOf = (page: number) => pages[page]!.url;
  const truth: Truth = {
    format: TRUTH_FORMAT,
    params: p,
    behaviour: BEHAVIOUR,
    counts: { pages: p.pages, users: p.users, preferringUsers: preferring, clicks: clicks.length, pathClicks, browsingClicks, noiseClicks },
    topics: topics.map((topic, t) => ({ name: topic.name, pages: pagesOfTopic[t]!.map(urlOf) })),
    paths: paths.map((path) => ({ topic: topics[path.topic]!.name, pages: path.pages.map(urlOf), followers: path.followers.map((u) => userids[u]!) })),
    users: userids.map((userid, u) => {
      const topic = userTopic[u]!;
      const clicked = [...clickedBy[u]!].sort((a, b) => a - b);
      return {
        userid,
        topic: topic === null ? null : topics[topic]!.name,
        clicked: clicked.map(urlOf),
        heldOut: topic === null ? [] : pagesOfTopic[topic]!.filter((page) => !clickedBy[u]!.has(page)).map(urlOf),
      };
    }),
  };
  return { pages, clicks, truth };
}

/** Two or three words of the topic, in title case. */
export function pageTitle(d: Draws, topic: Topic): string {
  return d
    .sample(topic.words, d.int(2, 3))
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join(" ");
}

/** Sentences of topic words among common words, about as long as a reference page's text (~400–500 characters). */
export function pageText(d: Draws, topic: Topic): string {
  const sentences: string[] = [];
  for (let length = 0; length < 400; ) {
    const words = Array.from({ length: d.int(7, 12) }, () => (d.chance(BEHAVIOUR.topicWordShare) ? d.pick(topic.words) : d.pick(COMMON_WORDS)));
    const sentence = `${words[0]![0]!.toUpperCase()}${words.join(" ").slice(1)}.`;
    sentences.push(sentence);
    length += sentence.length + 1;
  }
  return sentences.join(" ");
}

/** Share of the page the reader scrolled through: grows with the time on it, with reading speed drawn per visit. */
function viewedPercent(d: Draws, seconds: number): number {
  return Math.max(1, Math.min(100, Math.round(seconds * (0.6 + 0.9 * d.float()))));
}

function uuidLike(d: Draws): string {
  const hex = Array.from({ length: 8 }, () => d.int(0, 0xffff).toString(16).padStart(4, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function uniqueDraws(n: number, draw: () => string): string[] {
  const seen = new Set<string>();
  while (seen.size < n) seen.add(draw());
  return [...seen];
}

/** The first index whose cumulative weight exceeds x. */
function lowerBound(cumulative: readonly number[], x: number): number {
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cumulative[mid]! > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function sum(xs: readonly number[]): number {
  return xs.reduce((s, x) => s + x, 0);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** One object a line, spaced as the reference files are (`{"key": "value", ...}`). */
export function jsonLine(o: object): string {
  return `{${Object.entries(o)
    .map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`)
    .join(", ")}}`;
}

/** truth.json: one top-level key a line, and each path, topic and user on a line of its own. */
export function truthJson(truth: Truth): string {
  const entries = Object.entries(truth).map(([k, v]) => {
    const value = Array.isArray(v) && v.length > 0 ? `[\n${v.map((item) => `    ${JSON.stringify(item)}`).join(",\n")}\n  ]` : JSON.stringify(v);
    return `  ${JSON.stringify(k)}: ${value}`;
  });
  return `{\n${entries.join(",\n")}\n}\n`;
}
