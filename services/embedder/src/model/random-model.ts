import { lookupEncoderModel, serializeModel } from "./onnx-graph.js";
import { vocabularySize, writeModelFolder } from "./model-folder.js";
import { SeededRandom } from "./seeded-random.js";

export interface RandomModelOptions {
  dimension: number;
  seed: number;
  /** A folder with tokenizer.json etc. (e.g. all-MiniLM-L6-v2's); its vocabulary size sets the table's rows. */
  tokenizerDir: string;
  /** Also a sentence_embedding output, as the default model has (MiniLM's export does not). */
  pooledOutput?: boolean;
}

/**
 * Writes a stand-in for MiniLM with the same inputs and output but random weights, so tests can
 * drive the whole ONNX path (tokenize, pad, run, pool) without the real model.
 */
export async function writeRandomModel(dir: string, opts: RandomModelOptions): Promise<void> {
  const { dimension, seed } = opts;
  const vocabSize = await vocabularySize(opts.tokenizerDir);
  const rng = new SeededRandom(seed);
  const tokenTable = new Float32Array(vocabSize * dimension);
  for (let i = 0; i < tokenTable.length; i++) tokenTable[i] = rng.normal();
  // Segment vectors are smaller than token vectors so token identity dominates, as in BERT.
  const typeTable = new Float32Array(2 * dimension);
  for (let i = 0; i < typeTable.length; i++) typeTable[i] = 0.1 * rng.normal();
  const name = `random-d${dimension}-s${seed}`;
  const onnx = serializeModel(
    lookupEncoderModel({ name, tokenTable, vocabSize, dimension, typeTable, docString: "random test weights", pooledOutput: opts.pooledOutput }),
  );
  await writeModelFolder(dir, opts.tokenizerDir, onnx, { name, dimension, maxTokens: 256 });
}
