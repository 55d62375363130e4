import { fileURLToPath } from "node:url";
import type { Tokenizer } from "@huggingface/tokenizers";
import type { Page } from "./corpus.js";
import { truncatedSvd, type SparseRow } from "./lsa.js";
import { writeModelFolder, vocabularySize } from "./model-folder.js";
import { lookupEncoderModel, serializeModel } from "./onnx-graph.js";
import { SeededRandom } from "./seeded-random.js";
import { DEFAULT_MAX_TOKENS, loadTokenizer } from "./text-model.js";

export const DEFAULT_MODEL_NAME = "recsys-default-lsa-v1";
/** The tokenizer the default model shares with all-MiniLM-L6-v2, so either can serve the same ids. */
export const MINILM_DIR = fileURLToPath(new URL("../../../../../shared/models/all-MiniLM-L6-v2", import.meta.url));
export const CONTENT_FILE = fileURLToPath(new URL("../../../../../shared/data/content.json.gz", import.meta.url));
export const DEFAULT_OUT_DIR = fileURLToPath(new URL("../../models/default", import.meta.url));

/** How token vectors are made; the default recipe is tuned on the eval's held-out retrieval (see the README). */
export interface Recipe {
  dimension: number;
  /** Token weight = idf^idfPower, used both to fit the LSA and to scale each row. */
  idfPower: number;
  /** Weight of the token's own random direction relative to a typical LSA row. */
  hashWeight: number;
  seed: number;
  oversample: number;
  powerIterations: number;
}

export const DEFAULT_RECIPE: Recipe = { dimension: 384, idfPower: 2, hashWeight: 1.5, seed: 20_240_101, oversample: 32, powerIterations: 2 };

/** The text a page is fitted on: what the service embeds for a page (title, newline, text). */
export const fitText = (p: Page) => `${p.title}\n${p.text}`;

export interface Vocabulary {
  size: number;
  /** Ids whose rows stay zero: special tokens ([CLS], [SEP], [PAD], …) and punctuation-only pieces. */
  silent: ReadonlySet<number>;
}

const PUNCTUATION_ONLY = /^[\p{P}\p{S}]+$/u;

export function vocabularyOf(tokenizer: Tokenizer, size: number): Vocabulary {
  const silent = new Set<number>();
  for (const [id, token] of tokenizer.get_added_tokens_decoder()) if (token.special) silent.add(id);
  for (let id = 0; id < size; id++) {
    const piece = tokenizer.id_to_token(id);
    if (piece === undefined) continue;
    if (/^\[[A-Z]+\]$/.test(piece) || PUNCTUATION_ONLY.test(piece.replace(/^##/, ""))) silent.add(id);
  }
  return { size, silent };
}

/** A unit vector that depends only on the seed and the token id, so unseen tokens still match exactly. */
function tokenDirection(seed: number, id: number, dim: number, out: Float64Array): void {
  const rng = new SeededRandom(Math.imul(seed ^ 0x5bd1e995, 0x01000193) ^ Math.imul(id + 1, 0x9e3779b1));
  let norm = 0;
  for (let d = 0; d < dim; d++) {
    out[d] = rng.normal();
    norm += out[d]! * out[d]!;
  }
  norm = Math.sqrt(norm);
  for (let d = 0; d < dim; d++) out[d]! /= norm;
}

/**
 * The [vocab, dimension] table: row t = w_t · (LSA_t / median‖LSA‖ + hashWeight · h_t), w_t = idf_t^p (unseen tokens: the largest idf),
 * h_t a seeded random unit vector; a document's masked mean is then a projected TF-IDF + LSA vector.
 */
export function fitTokenTable(docs: readonly number[][], vocab: Vocabulary, recipe: Recipe = DEFAULT_RECIPE): Float32Array {
  const { size: v } = vocab;
  const dim = recipe.dimension;
  const n = docs.length;
  const df = new Float64Array(v);
  const counted = docs.map((ids) => {
    const tf = new Map<number, number>();
    for (const id of ids) if (id >= 0 && id < v && !vocab.silent.has(id)) tf.set(id, (tf.get(id) ?? 0) + 1);
    for (const id of tf.keys()) df[id]! += 1;
    return tf;
  });
  const weight = new Float64Array(v);
  for (let t = 0; t < v; t++) {
    if (vocab.silent.has(t)) continue;
    weight[t] = (Math.log((1 + n) / (1 + df[t]!)) + 1) ** recipe.idfPower;
  }
  const rows: SparseRow[] = counted
    .filter((tf) => tf.size > 0)
    .map((tf) => {
      const cols = Int32Array.from([...tf.keys()].sort((a, b) => a - b));
      const vals = Float64Array.from(cols, (t) => tf.get(t)! * weight[t]!);
      const norm = Math.hypot(...vals);
      for (let i = 0; i < vals.length; i++) vals[i]! /= norm;
      return { cols, vals };
    });
  const k = Math.min(dim, rows.length);
  const svd = k > 0 ? truncatedSvd(rows, v, { k, oversample: recipe.oversample, powerIterations: recipe.powerIterations, seed: recipe.seed }) : undefined;

  // Scale LSA rows so a typical fitted token's LSA part has norm 1, comparable to its unit hash part.
  const norms: number[] = [];
  if (svd) {
    for (let t = 0; t < v; t++) {
      if (df[t] === 0 || weight[t] === 0) continue;
      let s = 0;
      for (let c = 0; c < k; c++) s += svd.right[t * k + c]! ** 2;
      norms.push(Math.sqrt(s));
    }
    norms.sort((a, b) => a - b);
  }
  const median = norms.length > 0 ? norms[Math.floor(norms.length / 2)]! : 1;
  const lsaScale = median > 0 ? 1 / median : 0;

  const table = new Float32Array(v * dim);
  const h = new Float64Array(dim);
  for (let t = 0; t < v; t++) {
    const w = weight[t]!;
    if (w === 0) continue;
    tokenDirection(recipe.seed, t, dim, h);
    const row = t * dim;
    for (let d = 0; d < dim; d++) table[row + d] = w * recipe.hashWeight * h[d]!;
    if (svd && df[t]! > 0) for (let c = 0; c < k; c++) table[row + c]! += w * lsaScale * svd.right[t * k + c]!;
  }
  return table;
}

export interface BuildOptions {
  pages: readonly Page[];
  outDir: string;
  tokenizerDir?: string;
  /** Recorded in model.json. */
  builtFrom?: string;
  recipe?: Partial<Recipe>;
}

export interface BuiltModel {
  dir: string;
  name: string;
  dimension: number;
  pages: number;
  millis: number;
}

/** Fits the default model on `pages` and writes a folder laid out like all-MiniLM-L6-v2's. */
export async function buildDefaultModel(opts: BuildOptions): Promise<BuiltModel> {
  const started = performance.now();
  const recipe = { ...DEFAULT_RECIPE, ...opts.recipe };
  const tokenizerDir = opts.tokenizerDir ?? MINILM_DIR;
  const { tokenizer } = await loadTokenizer(tokenizerDir);
  const size = await vocabularySize(tokenizerDir);
  const docs = opts.pages.map((p) => tokenizer.encode(fitText(p), { add_special_tokens: false }).ids);
  const tokenTable = fitTokenTable(docs, vocabularyOf(tokenizer, size), recipe);
  const onnx = serializeModel(
    lookupEncoderModel({
      name: DEFAULT_MODEL_NAME,
      tokenTable,
      vocabSize: size,
      dimension: recipe.dimension,
      docString: `idf^${recipe.idfPower}-weighted LSA + hashed token directions over the BERT WordPiece vocabulary, fitted on ${opts.pages.length} pages`,
      metadata: { recipe: JSON.stringify(recipe) },
      pooledOutput: true,
    }),
  );
  await writeModelFolder(opts.outDir, tokenizerDir, onnx, {
    name: DEFAULT_MODEL_NAME,
    dimension: recipe.dimension,
    maxTokens: DEFAULT_MAX_TOKENS,
    builtFrom: opts.builtFrom ?? "pages",
    pages: opts.pages.length,
  });
  return { dir: opts.outDir, name: DEFAULT_MODEL_NAME, dimension: recipe.dimension, pages: opts.pages.length, millis: Math.round(performance.now() - started) };
}
