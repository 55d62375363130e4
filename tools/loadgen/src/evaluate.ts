import { readFileSync } from "node:fs";
import { TRUTH_FORMAT, type Truth, type UserTruth } from "./truth.js";

/** The two questions of the evaluation, as urls best first. */
export interface GatewayQueries {
  recommendation(url: string, limit: number): Promise<string[]>;
  similarContent(userid: string, limit: number): Promise<string[]>;
}

/** The largest `limit` the gateway takes. */
export const MAX_LIMIT = 1000;

export interface RecommendationScore {
  /** Share of the top k that are the path's later pages. */
  precision: number;
  /** Share of the path's later pages that are in the top k. */
  recall: number;
  /** The best precision any ranking could reach: fewer later pages than k cap it. */
  idealPrecision: number;
  /** Expected precision of k pages drawn at random among the other pages. */
  randomPrecision: number;
  randomRecall: number;
}

/** One planted path: its first page asked, `returned` the answer's urls best first. */
export function scoreRecommendation(pathPages: readonly string[], returned: readonly string[], k: number, pageCount: number): RecommendationScore {
  const successors = new Set(pathPages.slice(1));
  const hits = returned.slice(0, k).filter((url) => successors.has(url)).length;
  const others = pageCount - 1;
  return {
    precision: hits / k,
    recall: hits / successors.size,
    idealPrecision: Math.min(k, successors.size) / k,
    randomPrecision: successors.size / others,
    randomRecall: Math.min(k, others) / others,
  };
}

export interface SimilarContentScore {
  /** Share of the top k pages the user did not click that are of the user's topic. */
  precision: number;
  idealPrecision: number;
  /** Expected precision of k pages drawn at random among those the user did not click. */
  randomPrecision: number;
  /** Share of the top k as answered, clicked pages included, that are of the user's topic. */
  precisionWithClicked: number;
  randomPrecisionWithClicked: number;
}

/**
 * One user with a preferred topic; `returned` is the answer to a limit of at least k plus the
 * pages they clicked, so that k pages remain once those are left out.
 */
export function scoreSimilarContent(
  user: UserTruth,
  topicPages: ReadonlySet<string>,
  returned: readonly string[],
  k: number,
  pageCount: number,
): SimilarContentScore {
  const clicked = new Set(user.clicked);
  const heldOut = new Set(user.heldOut);
  const unseen = returned.filter((url) => !clicked.has(url)).slice(0, k);
  return {
    precision: unseen.filter((url) => heldOut.has(url)).length / k,
    idealPrecision: Math.min(k, heldOut.size) / k,
    randomPrecision: heldOut.size / Math.max(1, pageCount - clicked.size),
    precisionWithClicked: returned.slice(0, k).filter((url) => topicPages.has(url)).length / k,
    randomPrecisionWithClicked: topicPages.size / pageCount,
  };
}

export interface EvaluationReport {
  gateway: string;
  k: number;
  pages: number;
  /** Over the planted paths, asking for each one's first page. Null figures: no path. */
  recommendation: {
    queries: number;
    precisionAtK: number | null;
    recallAtK: number | null;
    idealPrecisionAtK: number | null;
    randomPrecisionAtK: number | null;
    randomRecallAtK: number | null;
  };
  /** Over the users with a preferred topic and a click; pages a user clicked are left out of their top k. */
  similarContent: {
    queries: number;
    clickedExcluded: true;
    precisionAtK: number | null;
    idealPrecisionAtK: number | null;
    randomPrecisionAtK: number | null;
    withClicked: { precisionAtK: number | null; randomPrecisionAtK: number | null };
  };
}

export function readTruth(path: string): Truth {
  let truth: Truth;
  try {
    truth = JSON.parse(readFileSync(path, "utf8")) as Truth;
  } catch (err) {
    const reason = err instanceof SyntaxError ? "not JSON" : err instanceof Error ? err.message : String(err);
    throw new Error(`${path}: ${reason}; expected the truth.json of loadgen generate`);
  }
  if (truth?.format !== TRUTH_FORMAT)
    throw new Error(`${path}: not a truth file of loadgen generate (format ${JSON.stringify(truth?.format)}, expected ${TRUTH_FORMAT})`);
  return truth;
}

/** Asks every question of the truth file through `gateway`, `concurrency` at a time, and scores the answers. */
export async function evaluate(opts: { truth: Truth; gateway: GatewayQueries; gatewayUrl: string; k: number; concurrency: number }): Promise<EvaluationReport> {
  const { truth, gateway, k } = opts;
  if (!Number.isInteger(k) || k < 1 || k > MAX_LIMIT) throw new Error(`--k must be 1..${MAX_LIMIT}, got ${k}`);
  const pageCount = truth.topics.reduce((n, t) => n + t.pages.length, 0);
  const topicPages = new Map(truth.topics.map((t) => [t.name, new Set(t.pages)]));
  // A user without clicks has no interest to rank by: the workload shows nothing of their preference.
  const users = truth.users.filter((u) => u.topic !== null && u.clicked.length > 0);

  const pathScores = await mapConcurrently(truth.paths, opts.concurrency, async (path) =>
    scoreRecommendation(path.pages, await gateway.recommendation(path.pages[0]!, k), k, pageCount),
  );
  const userScores = await mapConcurrently(users, opts.concurrency, async (user) =>
    scoreSimilarContent(
      user,
      topicPages.get(user.topic!)!,
      await gateway.similarContent(user.userid, Math.min(MAX_LIMIT, k + user.clicked.length)),
      k,
      pageCount,
    ),
  );
  const over = <T>(scores: T[], f: (s: T) => number) => (scores.length === 0 ? null : scores.reduce((s, x) => s + f(x), 0) / scores.length);
  return {
    gateway: opts.gatewayUrl,
    k,
    pages: pageCount,
    recommendation: {
      queries: pathScores.length,
      precisionAtK: over(pathScores, (s) => s.precision),
      recallAtK: over(pathScores, (s) => s.recall),
      idealPrecisionAtK: over(pathScores, (s) => s.idealPrecision),
      randomPrecisionAtK: over(pathScores, (s) => s.randomPrecision),
      randomRecallAtK: over(pathScores, (s) => s.randomRecall),
    },
    similarContent: {
      queries: userScores.length,
      clickedExcluded: true,
      precisionAtK: over(userScores, (s) => s.precision),
      idealPrecisionAtK: over(userScores, (s) => s.idealPrecision),
      randomPrecisionAtK: over(userScores, (s) => s.randomPrecision),
      withClicked: { precisionAtK: over(userScores, (s) => s.precisionWithClicked), randomPrecisionAtK: over(userScores, (s) => s.randomPrecisionWithClicked) },
    },
  };
}

async function mapConcurrently<T, R>(items: readonly T[], concurrency: number, f: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await f(items[i]!);
      }
    }),
  );
  return out;
}

/** The gateway's Connect protocol with JSON bodies, as any HTTP client would call it. */
export function connectJsonGateway(baseUrl: string, opts: { apiKey?: string; timeoutMs?: number } = {}): GatewayQueries {
  const base = baseUrl.replace(/\/+$/, "");
  async function call(method: string, body: object): Promise<Record<string, unknown>> {
    const url = `${base}/recsys.gateway.v1.GatewayService/${method}`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...(opts.apiKey ? { "x-api-key": opts.apiKey } : {}) },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
      });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
      throw new Error(`${method}: cannot reach the gateway at ${base}: ${cause}`);
    }
    const text = await res.text();
    let json: Record<string, unknown> | undefined;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      json = undefined;
    }
    if (!res.ok || json === undefined) {
      const detail = json && typeof json.code === "string" ? `${json.code}: ${String(json.message ?? "")}` : text.slice(0, 200);
      throw new Error(`${method} ${JSON.stringify(body)}: HTTP ${res.status} ${detail}`);
    }
    return json;
  }
  const items = (json: Record<string, unknown>) => (Array.isArray(json.items) ? (json.items as Array<Record<string, unknown>>) : []);
  return {
    async recommendation(url, limit) {
      return items(await call("Recommendation", { url, limit })).map((i) => String(i.recommendation));
    },
    async similarContent(userid, limit) {
      return items(await call("SimilarContent", { userid, limit })).map((i) => String(i.url));
    },
  };
}

export function formatEvaluation(r: EvaluationReport): string {
  const f = (x: number | null) => (x === null ? "-" : x.toFixed(3));
  const row = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(16) : c.padStart(i === 2 || i === 5 ? 14 : 8))).join("");
  const { recommendation: rec, similarContent: sim } = r;
  return [
    `${r.gateway}: ${r.pages} pages of the truth file, top ${r.k}`,
    row(["", "queries", `precision@${r.k}`, "random", "ideal", `recall@${r.k}`, "random"]),
    row([
      "Recommendation",
      String(rec.queries),
      f(rec.precisionAtK),
      f(rec.randomPrecisionAtK),
      f(rec.idealPrecisionAtK),
      f(rec.recallAtK),
      f(rec.randomRecallAtK),
    ]),
    row(["SimilarContent", String(sim.queries), f(sim.precisionAtK), f(sim.randomPrecisionAtK), f(sim.idealPrecisionAtK), "-", "-"]),
    row(["  with clicked", String(sim.queries), f(sim.withClicked.precisionAtK), f(sim.withClicked.randomPrecisionAtK), "-", "-", "-"]),
    "Recommendation: the first page of each planted path; a hit is a later page of that path.",
    "SimilarContent: users with a preferred topic and a click, their clicked pages left out; a hit is",
    "a page of their topic they never clicked. with clicked: the answer as given, any page of the",
    "topic a hit. random: the expectation for pages drawn at random; ideal: the best any ranking can reach.",
  ].join("\n");
}
