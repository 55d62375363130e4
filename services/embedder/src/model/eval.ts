import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildDefaultModel, fitText } from "./build-default.js";
import type { Page } from "./corpus.js";
import { loadTextModel, type TextModel } from "./text-model.js";

/**
 * Held-out half-page retrieval: fit on even-indexed pages; for each odd-indexed page, its second
 * half (by whitespace words) is the query and the first halves of all odd pages are the candidates.
 */
export interface Recall {
  recallAt1: number;
  recallAt10: number;
}

export interface EvalReport {
  model: Recall & { name: string; dimension: number; dir: string; buildMillis?: number; embedMillis: number };
  /** Word TF-IDF fitted on the even pages; words outside their vocabulary are dropped (as scikit-learn does). */
  tfidf: Recall;
  /** The same, but words never seen in the fit still count, with the largest idf: what exact overlap alone can do. */
  tfidfOpenVocabulary: Recall;
  fitPages: number;
  queries: number;
}

export function splitHalves(text: string): { first: string; second: string } {
  const words = text.split(/\s+/).filter((w) => w !== "");
  const half = Math.floor(words.length / 2);
  return { first: words.slice(0, half).join(" "), second: words.slice(half).join(" ") };
}

export function heldOutSplit(pages: readonly Page[]): { fit: Page[]; queries: string[]; candidates: string[] } {
  const fit = pages.filter((_, i) => i % 2 === 0);
  const halves = pages.filter((_, i) => i % 2 === 1).map((p) => splitHalves(p.text));
  return { fit, queries: halves.map((h) => h.second), candidates: halves.map((h) => h.first) };
}

export type Scorer = (query: number, candidate: number) => number;

/** Query i's answer is candidate i; a candidate scoring the same as the answer counts as ranked above it. */
export function recallOf(count: number, score: Scorer): Recall {
  let at1 = 0;
  let at10 = 0;
  for (let q = 0; q < count; q++) {
    const own = score(q, q);
    let rank = 1;
    for (let c = 0; c < count && rank <= 10; c++) if (c !== q && score(q, c) >= own) rank++;
    if (rank <= 1) at1++;
    if (rank <= 10) at10++;
  }
  return { recallAt1: at1 / count, recallAt10: at10 / count };
}

export function cosineScorer(queries: readonly Float32Array[], candidates: readonly Float32Array[]): Scorer {
  return (q, c) => {
    const a = queries[q]!;
    const b = candidates[c]!;
    let dot = 0;
    for (let d = 0; d < a.length; d++) dot += a[d]! * b[d]!;
    return dot;
  };
}

/** scikit-learn's default token pattern, \b\w\w+\b, lowercased. */
const words = (text: string) => text.toLowerCase().match(/[\p{L}\p{N}_]{2,}/gu) ?? [];

/** Smoothed-idf word TF-IDF (raw counts, L2-normalized) fitted on `fit`, scored by cosine. */
export function tfidfScorer(fit: readonly string[], queries: readonly string[], candidates: readonly string[], openVocabulary: boolean): Scorer {
  const df = new Map<string, number>();
  for (const text of fit) for (const w of new Set(words(text))) df.set(w, (df.get(w) ?? 0) + 1);
  const n = fit.length;
  const idf = (w: string) => {
    const d = df.get(w);
    if (d === undefined && !openVocabulary) return 0;
    return Math.log((1 + n) / (1 + (d ?? 0))) + 1;
  };
  const vectorize = (text: string) => {
    const tf = new Map<string, number>();
    for (const w of words(text)) tf.set(w, (tf.get(w) ?? 0) + 1);
    const v = new Map<string, number>();
    let norm = 0;
    for (const [w, c] of tf) {
      const x = c * idf(w);
      if (x === 0) continue;
      v.set(w, x);
      norm += x * x;
    }
    norm = Math.sqrt(norm);
    for (const [w, x] of v) v.set(w, x / norm);
    return v;
  };
  const qs = queries.map(vectorize);
  const cs = candidates.map(vectorize);
  return (q, c) => {
    let dot = 0;
    for (const [w, x] of qs[q]!) dot += x * (cs[c]!.get(w) ?? 0);
    return dot;
  };
}

/** Runs texts through the model the way the service does: tokenize, then one session run per batch. */
export async function embedTexts(model: TextModel, texts: readonly string[], batchSize = 32): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (let i = 0; i < texts.length; i += batchSize) {
    out.push(...(await model.run(texts.slice(i, i + batchSize).map((t) => model.tokenize(t)))));
  }
  return out;
}

export interface EvalOptions {
  pages: readonly Page[];
  /** A model folder to evaluate as is; without it the default model is built from the even pages. */
  modelDir?: string;
  tokenizerDir?: string;
  intraOpThreads?: number;
}

export async function evaluate(opts: EvalOptions): Promise<EvalReport> {
  const { fit, queries, candidates } = heldOutSplit(opts.pages);
  let dir = opts.modelDir;
  let scratch: string | undefined;
  let buildMillis: number | undefined;
  try {
    if (!dir) {
      scratch = await mkdtemp(join(tmpdir(), "embedder-eval-"));
      dir = join(scratch, "model");
      const built = await buildDefaultModel({ pages: fit, outDir: dir, builtFrom: "even-indexed pages (eval)", tokenizerDir: opts.tokenizerDir });
      buildMillis = built.millis;
    }
    const model = await loadTextModel(dir, { intraOpThreads: opts.intraOpThreads });
    const started = performance.now();
    const q = await embedTexts(model, queries);
    const c = await embedTexts(model, candidates);
    const embedMillis = Math.round(performance.now() - started);
    const fitTexts = fit.map(fitText);
    return {
      model: {
        name: model.name,
        dimension: model.dimension,
        dir: opts.modelDir ?? "(default, built from the even pages)",
        buildMillis,
        embedMillis,
        ...recallOf(queries.length, cosineScorer(q, c)),
      },
      tfidf: recallOf(queries.length, tfidfScorer(fitTexts, queries, candidates, false)),
      tfidfOpenVocabulary: recallOf(queries.length, tfidfScorer(fitTexts, queries, candidates, true)),
      fitPages: fit.length,
      queries: queries.length,
    };
  } finally {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

export function formatReport(r: EvalReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(7);
  const row = (name: string, s: Recall) => `${name.padEnd(44)} ${pct(s.recallAt1)} ${pct(s.recallAt10)}`;
  return [
    `held-out half-page retrieval: fit on ${r.fitPages} even pages, ${r.queries} odd-page queries (second half → first halves)`,
    `${"".padEnd(44)} ${"R@1".padStart(7)} ${"R@10".padStart(7)}`,
    row(`${r.model.name} (${r.model.dimension}d)`, r.model),
    row("word TF-IDF (even-page vocabulary)", r.tfidf),
    row("word TF-IDF (open vocabulary)", r.tfidfOpenVocabulary),
    `model: ${r.model.dir}${r.model.buildMillis !== undefined ? `, built in ${(r.model.buildMillis / 1000).toFixed(1)} s` : ""}, embedded ${2 * r.queries} texts in ${(r.model.embedMillis / 1000).toFixed(1)} s`,
  ].join("\n");
}
