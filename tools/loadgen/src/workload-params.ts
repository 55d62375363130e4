import { isoSeconds } from "./workload-format.js";
import { TOPICS } from "./vocabulary.js";
import { COVISIT_WINDOW_MS } from "@recsys/validation";

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

/** Defaults filled in and every value checked; an error names the option as the CLI spells it. */
export function resolveParams(input: Partial<WorkloadParams>): WorkloadParams {
  const given = { ...DEFAULT_PARAMS, ...stripUndefined(input) };
  const topics = given.topics;
  if (!Number.isInteger(topics) || topics < 1 || topics > TOPICS.length)
    throw new Error(`--topics must be 1..${TOPICS.length} (the built-in vocabularies), got ${topics}`);
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
    throw new Error(
      `--paths: ${pathsPerTopic} paths of ${p.pathLength} pages in one topic need ${pathsPerTopic * p.pathLength} pages of it, but a topic has ${pagesPerTopic}; raise --pages or lower --paths or --path-length`,
    );
  }
  const pathClicks = p.paths * p.followers * p.pathLength;
  if (pathClicks > p.clicks) throw new Error(`--clicks: the paths alone take ${pathClicks} clicks (paths × followers × path length), more than ${p.clicks}`);
  return p;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
