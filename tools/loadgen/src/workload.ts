import { drawStreams, type Draws } from "./draws.js";
import { pageText, pageTitle } from "./page-text.js";
import { TRUTH_FORMAT, type Truth } from "./truth.js";
import { TOPICS } from "./vocabulary.js";
import { isoSeconds, URL_BASE, type ClickEventType, type SyntheticClick, type SyntheticPage } from "./workload-format.js";
import { BEHAVIOUR, resolveParams, type WorkloadParams } from "./workload-params.js";

export interface Workload {
  pages: SyntheticPage[];
  clicks: SyntheticClick[];
  truth: Truth;
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
      throw new Error(
        `--followers: ${p.followers} users follow each path, but only ${candidates.length} prefer ${topics[topic]!.name} or no topic; raise --users or lower --followers`,
      );
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
    visit({
      user: noiseDraws.int(0, p.users - 1),
      page: noiseDraws.int(0, p.pages - 1),
      t: noiseDraws.int(0, durationS - 1),
      type: "landing",
      seconds,
      viewed: viewedPercent(noiseDraws, seconds),
    });
  }

  const clicks = visits
    .map((v) => ({ v, userid: userids[v.user]!, url: pages[v.page]!.url }))
    .sort((a, b) => a.v.t - b.v.t || compare(a.userid, b.userid) || compare(a.url, b.url))
    .map(
      ({ v, userid, url }): SyntheticClick => ({
        userid,
        url,
        event_time: isoSeconds(startMs + v.t * 1000),
        event_type: v.type,
        seconds_on_page: v.seconds,
        viewed_percent: v.viewed,
      }),
    );

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
