import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import * as ort from "onnxruntime-node";
import { SENTENCE_EMBEDDING } from "./onnx-graph.js";

/** Where a model folder keeps its graph, as in the sentence-transformers ONNX exports. */
export const MODEL_FILE = join("onnx", "model_quantized.onnx");
/** all-MiniLM-L6-v2's sentence_bert_config.json says 256; used when a folder says nothing. */
export const DEFAULT_MAX_TOKENS = 256;
const OUTPUT = "last_hidden_state";

/** A sentence encoder with the sentence-transformers BERT contract: tokens in, one unit vector per text out. */
export interface TextModel {
  readonly name: string;
  readonly dimension: number;
  readonly maxTokens: number;
  /** Token ids with [CLS] … [SEP], truncated to maxTokens with [SEP] kept last. */
  tokenize(text: string): number[];
  /**
   * One session run for the whole batch; the i-th vector is the masked mean of the i-th row,
   * L2-normalized (pooled inside the run when the graph has a sentence_embedding output).
   */
  run(batch: number[][]): Promise<Float32Array[]>;
}

export interface LoadOptions {
  /** ORT intra-op threads; the service has few cores, so keep this small. */
  intraOpThreads?: number;
}

/** What `build-default` writes beside the graph; other folders (MiniLM) do not have one. */
export interface ModelManifest {
  name: string;
  dimension?: number;
  maxTokens?: number;
  builtFrom?: string;
  pages?: number;
}

async function readJsonIfPresent<T>(path: string): Promise<T | undefined> {
  if (!existsSync(path)) return undefined;
  return JSON.parse(await readFile(path, "utf8")) as T;
}

/** L2-normalized rows of a [batch, dim] tensor; a zero row stays zero instead of becoming NaN. */
export function normalizeRows(pooled: Float32Array, batch: number, dim: number): Float32Array[] {
  if (pooled.length !== batch * dim) throw new Error(`pooled has ${pooled.length} values, expected ${batch}×${dim}`);
  const out: Float32Array[] = [];
  for (let b = 0; b < batch; b++) {
    const row = pooled.subarray(b * dim, (b + 1) * dim);
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += row[d]! * row[d]!;
    norm = Math.sqrt(norm);
    const v = new Float32Array(dim);
    if (norm > 0 && Number.isFinite(norm)) for (let d = 0; d < dim; d++) v[d] = row[d]! / norm;
    out.push(v);
  }
  return out;
}

/**
 * Attention-masked mean over the sequence, then L2 normalization; rows whose mean is the zero
 * vector stay zero instead of becoming NaN. `hidden` is [batch, seq, dim] row-major, `mask` [batch, seq].
 */
export function meanPoolNormalize(hidden: Float32Array, batch: number, seq: number, dim: number, mask: ArrayLike<number | bigint>): Float32Array[] {
  if (hidden.length !== batch * seq * dim) throw new Error(`hidden has ${hidden.length} values, expected ${batch}×${seq}×${dim}`);
  if (mask.length !== batch * seq) throw new Error(`mask has ${mask.length} values, expected ${batch}×${seq}`);
  const out: Float32Array[] = [];
  const sum = new Float64Array(dim);
  for (let b = 0; b < batch; b++) {
    sum.fill(0);
    let count = 0;
    for (let s = 0; s < seq; s++) {
      const m = Number(mask[b * seq + s]);
      if (m === 0) continue;
      count += m;
      const base = (b * seq + s) * dim;
      for (let d = 0; d < dim; d++) sum[d]! += m * hidden[base + d]!;
    }
    const v = new Float32Array(dim);
    let norm = 0;
    for (let d = 0; d < dim; d++) norm += sum[d]! * sum[d]!;
    norm = Math.sqrt(norm);
    // Dividing by the token count does not change the direction, so normalize the sum directly.
    if (count > 0 && norm > 0 && Number.isFinite(norm)) for (let d = 0; d < dim; d++) v[d] = sum[d]! / norm;
    out.push(v);
  }
  return out;
}

function tensorDimension(meta: ort.InferenceSession.ValueMetadata | undefined): number | undefined {
  if (!meta?.isTensor) return undefined;
  const last = meta.shape[meta.shape.length - 1];
  return typeof last === "number" && last > 0 ? last : undefined;
}

class OnnxTextModel implements TextModel {
  readonly #tokenizer: Tokenizer;
  readonly #session: ort.InferenceSession;
  readonly #inputs: ReadonlySet<string>;
  readonly #clsId: number;
  readonly #sepId: number;
  readonly #padId: number;
  /** The graph pools for us (sentence_embedding [batch, dim]); else last_hidden_state is pooled here. */
  readonly #pooled: boolean;
  dimension = 0;

  constructor(
    readonly name: string,
    readonly maxTokens: number,
    tokenizer: Tokenizer,
    session: ort.InferenceSession,
    padId: number,
  ) {
    this.#tokenizer = tokenizer;
    this.#session = session;
    this.#inputs = new Set(session.inputNames);
    this.#clsId = tokenizer.token_to_id("[CLS]") ?? 101;
    this.#sepId = tokenizer.token_to_id("[SEP]") ?? 102;
    this.#padId = padId;
    this.#pooled = session.outputNames.includes(SENTENCE_EMBEDDING);
    if (!this.#inputs.has("input_ids") || !this.#inputs.has("attention_mask")) {
      throw new Error(`model ${name} must take input_ids and attention_mask, it takes ${session.inputNames.join(", ")}`);
    }
    if (!session.outputNames.includes(OUTPUT)) {
      throw new Error(`model ${name} has no ${OUTPUT} output (outputs: ${session.outputNames.join(", ")})`);
    }
  }

  tokenize(text: string): number[] {
    const ids = this.#tokenizer.encode(text).ids;
    if (ids.length <= this.maxTokens) return ids;
    const kept = ids.slice(0, this.maxTokens);
    kept[this.maxTokens - 1] = ids[ids.length - 1] ?? this.#sepId;
    return kept;
  }

  async run(batch: number[][]): Promise<Float32Array[]> {
    if (batch.length === 0) return [];
    // An empty row would have nothing to attend to; give it [CLS] [SEP] like the tokenizer does for "".
    const rows = batch.map((ids) => (ids.length === 0 ? [this.#clsId, this.#sepId] : ids));
    const seq = Math.max(...rows.map((ids) => ids.length));
    const n = rows.length;
    const inputIds = new BigInt64Array(n * seq).fill(BigInt(this.#padId));
    const mask = new BigInt64Array(n * seq);
    rows.forEach((ids, b) => {
      for (let s = 0; s < ids.length; s++) {
        inputIds[b * seq + s] = BigInt(ids[s]!);
        mask[b * seq + s] = 1n;
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", inputIds, [n, seq]),
      attention_mask: new ort.Tensor("int64", mask, [n, seq]),
    };
    if (this.#inputs.has("token_type_ids")) feeds.token_type_ids = new ort.Tensor("int64", new BigInt64Array(n * seq), [n, seq]);
    if (this.#pooled) {
      const pooled = (await this.#session.run(feeds, [SENTENCE_EMBEDDING]))[SENTENCE_EMBEDDING];
      if (pooled?.type !== "float32" || pooled.dims.length !== 2 || pooled.dims[0] !== n) {
        throw new Error(`model ${this.name}: ${SENTENCE_EMBEDDING} must be float32 [batch, dim], got ${pooled?.type} [${pooled?.dims.join(", ")}]`);
      }
      try {
        return normalizeRows(pooled.data as Float32Array, n, pooled.dims[1]!);
      } finally {
        pooled.dispose();
      }
    }
    const results = await this.#session.run(feeds, [OUTPUT]);
    const hidden = results[OUTPUT];
    if (hidden?.type !== "float32" || hidden.dims.length !== 3) {
      throw new Error(`model ${this.name}: ${OUTPUT} must be float32 [batch, seq, dim], got ${hidden?.type} [${hidden?.dims.join(", ")}]`);
    }
    const dim = hidden.dims[2]!;
    try {
      return meanPoolNormalize(hidden.data as Float32Array, n, seq, dim, mask);
    } finally {
      hidden.dispose();
    }
  }

  async release(): Promise<void> {
    await this.#session.release();
  }
}

/** The folder's tokenizer (tokenizer.json, plus tokenizer_config.json when present). */
export async function loadTokenizer(dir: string): Promise<{ tokenizer: Tokenizer; padId: number }> {
  const tokenizerJson = await readJsonIfPresent<Record<string, unknown>>(join(dir, "tokenizer.json"));
  if (!tokenizerJson) throw new Error(`${dir} has no tokenizer.json`);
  const tokenizerConfig = (await readJsonIfPresent<Record<string, unknown>>(join(dir, "tokenizer_config.json"))) ?? {};
  const padding = tokenizerJson.padding as { pad_id?: number } | null | undefined;
  return { tokenizer: new Tokenizer(tokenizerJson, tokenizerConfig), padId: padding?.pad_id ?? 0 };
}

/** Loads a sentence-transformers style folder: tokenizer.json (+ tokenizer_config.json) and onnx/model_quantized.onnx. */
export async function loadTextModel(dir: string, opts: LoadOptions = {}): Promise<TextModel> {
  const root = resolve(dir);
  const { tokenizer, padId } = await loadTokenizer(root);
  const manifest = await readJsonIfPresent<ModelManifest>(join(root, "model.json"));
  const sbert = await readJsonIfPresent<{ max_seq_length?: number }>(join(root, "sentence_bert_config.json"));
  const maxTokens = sbert?.max_seq_length ?? manifest?.maxTokens ?? DEFAULT_MAX_TOKENS;
  if (!Number.isInteger(maxTokens) || maxTokens < 2) throw new Error(`${root}: max tokens must be an integer ≥ 2, got ${maxTokens}`);

  const modelPath = join(root, MODEL_FILE);
  if (!existsSync(modelPath)) throw new Error(`${root} has no ${MODEL_FILE}`);
  const session = await ort.InferenceSession.create(modelPath, {
    graphOptimizationLevel: "all",
    executionMode: "sequential",
    intraOpNumThreads: opts.intraOpThreads ?? 1,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    // Idle pool threads would spin waiting for the next run, taking CPU the service's own thread
    // (tokenizing) and every other process on the machine need.
    extra: { session: { intra_op: { allow_spinning: "0" }, inter_op: { allow_spinning: "0" } } },
  });
  const model = new OnnxTextModel(manifest?.name ?? basename(root), maxTokens, tokenizer, session, padId);
  const outputMeta = session.outputMetadata[session.outputNames.indexOf(OUTPUT)];
  model.dimension = tensorDimension(outputMeta) ?? (await model.run([model.tokenize("")]))[0]!.length;
  if (manifest?.dimension !== undefined && manifest.dimension !== model.dimension) {
    throw new Error(`${root}: model.json says dimension ${manifest.dimension}, the graph outputs ${model.dimension}`);
  }
  return model;
}
