import { fileURLToPath } from "node:url";
import { MINILM_DIR } from "./build-default.js";
import { vocabularySize, writeModelFolder } from "./model-folder.js";
import { serializeModel, transformerEncoderModel, transformerParameters, type TransformerShape } from "./onnx-graph.js";
import { SeededRandom } from "./seeded-random.js";
import { DEFAULT_MAX_TOKENS } from "./text-model.js";

/** all-MiniLM-L6-v2's config.json; the vocabulary size comes from the tokenizer folder. */
export const MINILM_L6_SHAPE: Omit<TransformerShape, "vocabSize"> = {
  hidden: 384,
  layers: 6,
  heads: 12,
  intermediate: 1536,
  maxPositions: 512,
  typeVocabSize: 2,
};
/** BERT's initializer_range: the standard deviation of every drawn parameter. */
const INITIALIZER_RANGE = 0.02;
export const TRANSFORMER_SEED = 20_240_601;
export const TRANSFORMER_OUT_DIR = fileURLToPath(new URL("../../models/transformer", import.meta.url));

export interface TransformerModelOptions {
  seed?: number;
  /** A folder with tokenizer.json etc.; its vocabulary size sets the embedding rows. Default all-MiniLM-L6-v2's. */
  tokenizerDir?: string;
  /** Overrides of MiniLM-L6's shape (tests build a small one). */
  shape?: Partial<Omit<TransformerShape, "vocabSize">>;
}

export interface WrittenTransformer {
  dir: string;
  name: string;
  parameters: number;
  bytes: number;
  millis: number;
}

/**
 * Writes a transformer with MiniLM-L6's shapes and seeded random weights (byte for byte the same for a seed), in MiniLM's folder
 * layout with its tokenizer: a stand-in that costs what MiniLM costs to run, for measuring batching where the weights are absent.
 */
export async function writeTransformerModel(dir: string, opts: TransformerModelOptions = {}): Promise<WrittenTransformer> {
  const started = performance.now();
  const seed = opts.seed ?? TRANSFORMER_SEED;
  const tokenizerDir = opts.tokenizerDir ?? MINILM_DIR;
  const shape: TransformerShape = { ...MINILM_L6_SHAPE, ...opts.shape, vocabSize: await vocabularySize(tokenizerDir) };
  const rng = new SeededRandom(seed);
  const weights = new Map<string, Float32Array>();
  let parameters = 0;
  // BERT's initialization (normal(0, 0.02), LayerNorm gain 1 and shift 0), except that biases are drawn too rather than zero.
  for (const { name, dims, init } of transformerParameters(shape)) {
    const w = new Float32Array(dims.reduce((a, b) => a * b, 1));
    if (init === "ones") w.fill(1);
    else if (init === "normal") for (let i = 0; i < w.length; i++) w[i] = INITIALIZER_RANGE * rng.normal();
    weights.set(name, w);
    parameters += w.length;
  }
  const name = `random-bert-L${shape.layers}-H${shape.hidden}-A${shape.heads}-s${seed}`;
  const onnx = serializeModel(
    transformerEncoderModel({
      shape,
      weights,
      name,
      docString: `random weights (seed ${seed}) in the shapes of a BERT encoder, for measuring`,
      metadata: { shape: JSON.stringify(shape), seed: String(seed) },
    }),
  );
  await writeModelFolder(dir, tokenizerDir, onnx, { name, dimension: shape.hidden, maxTokens: DEFAULT_MAX_TOKENS, builtFrom: `seed ${seed}` });
  return { dir, name, parameters, bytes: onnx.length, millis: Math.round(performance.now() - started) };
}
