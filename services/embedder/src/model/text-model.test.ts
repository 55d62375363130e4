import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MINILM_DIR } from "./build-default.js";
import { writeRandomModel } from "./random-model.js";
import { loadTextModel, meanPoolNormalize, type TextModel } from "./text-model.js";

describe("meanPoolNormalize", () => {
  it("averages only unmasked positions and normalizes, against a hand-computed vector", () => {
    // batch 2, seq 3, dim 2. Row 0: positions 0 and 1 count, position 2 is padding with a huge value.
    const hidden = Float32Array.from([1, 2, 3, 2, 100, -100, /* row 1 */ 0, 4, 9, 9, 9, 9]);
    const mask = [1, 1, 0, 1, 0, 0];
    const [a, b] = meanPoolNormalize(hidden, 2, 3, 2, mask);
    // Row 0: mean (2, 2) → (1/√2, 1/√2). Row 1: only (0, 4) → (0, 1).
    expect(Array.from(a!)).toEqual([expect.closeTo(Math.SQRT1_2, 6), expect.closeTo(Math.SQRT1_2, 6)]);
    expect(Array.from(b!)).toEqual([0, 1]);
  });

  it("accepts bigint masks as onnxruntime's int64 tensors hold them", () => {
    const [v] = meanPoolNormalize(Float32Array.from([3, 4, 7, 7]), 1, 2, 2, BigInt64Array.from([1n, 0n]));
    expect(Array.from(v!)).toEqual([expect.closeTo(0.6, 6), expect.closeTo(0.8, 6)]);
  });

  it("returns the zero vector, not NaN, for zero input or an all-masked row", () => {
    const [zero, masked] = meanPoolNormalize(Float32Array.from([0, 0, 0, 0, 1, 1, 1, 1]), 2, 2, 2, [1, 1, 0, 0]);
    expect(Array.from(zero!)).toEqual([0, 0]);
    expect(Array.from(masked!)).toEqual([0, 0]);
  });
});

describe("a model folder with MiniLM's tokenizer and random weights", () => {
  let dir: string;
  let model: TextModel;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "embedder-random-"));
    await writeRandomModel(dir, { dimension: 48, seed: 7, tokenizerDir: MINILM_DIR });
    model = await loadTextModel(dir);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Expected ids looked up by hand in vocab.txt (line number − 1): BERT basic tokenization
  // (lowercase, strip accents, split punctuation) then greedy longest-match WordPiece.
  it.each([
    ["hello world", [101, 7592, 2088, 102]],
    ["The quick brown fox.", [101, 1996, 4248, 2829, 4419, 1012, 102]],
    // em ##bed ##ding ##s: no longer prefix of "embeddings" or of its rests is in the vocabulary.
    ["Streaming embeddings!", [101, 11058, 7861, 8270, 4667, 2015, 999, 102]],
    ["Café déjà-vu, real-time 3D", [101, 7668, 2139, 3900, 1011, 24728, 1010, 2613, 1011, 2051, 7605, 102]],
    ["unaffable", [101, 14477, 20961, 3468, 102]],
  ])("tokenizes %j as BERT uncased does", (text, ids) => {
    expect(model.tokenize(text)).toEqual(ids);
  });

  it("truncates to maxTokens with [SEP] still last", () => {
    expect(model.maxTokens).toBe(256);
    const ids = model.tokenize("word ".repeat(400));
    expect(ids).toHaveLength(256);
    expect(ids[0]).toBe(101);
    expect(ids[255]).toBe(102);
    expect(ids[254]).toBe(2773); // "word"
  });

  it("loads with onnxruntime and returns unit vectors of the declared dimension", async () => {
    expect(model.name).toBe("random-d48-s7");
    expect(model.dimension).toBe(48);
    const vectors = await model.run(["a first text", "and a second, different one"].map((t) => model.tokenize(t)));
    expect(vectors).toHaveLength(2);
    for (const v of vectors) {
      expect(v).toHaveLength(48);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
    }
    expect(Array.from(vectors[0]!)).not.toEqual(Array.from(vectors[1]!));
  });

  it("gives a text the same embedding alone and padded in a batch with a longer one", async () => {
    const short = model.tokenize("short text");
    const long = model.tokenize("a much longer text that forces the short one to be padded with many pad tokens ".repeat(3));
    const [alone] = await model.run([short]);
    const [padded, other] = await model.run([short, long]);
    expect(padded).toHaveLength(48);
    for (let d = 0; d < 48; d++) expect(Math.abs(padded![d]! - alone![d]!)).toBeLessThan(1e-5);
    expect(Math.abs(other![0]! - alone![0]!)).toBeGreaterThan(1e-6);
  });

  it("pools inside the run when the graph has a sentence_embedding output, to the same vectors", async () => {
    const pooledDir = await mkdtemp(join(tmpdir(), "embedder-random-"));
    try {
      await writeRandomModel(pooledDir, { dimension: 48, seed: 7, tokenizerDir: MINILM_DIR, pooledOutput: true });
      const pooling = await loadTextModel(pooledDir);
      const batch = ["short text", "a longer text, so that the short one is padded in the batch", ""].map((t) => model.tokenize(t));
      const want = await model.run(batch);
      const got = await pooling.run(batch);
      expect(got).toHaveLength(3);
      got.forEach((v, i) => {
        expect(Math.hypot(...v)).toBeCloseTo(1, 5);
        for (let d = 0; d < 48; d++) expect(Math.abs(v[d]! - want[i]![d]!)).toBeLessThan(1e-6);
      });
    } finally {
      await rm(pooledDir, { recursive: true, force: true });
    }
  });

  it("is deterministic from the seed", async () => {
    const again = await mkdtemp(join(tmpdir(), "embedder-random-"));
    try {
      await writeRandomModel(again, { dimension: 48, seed: 7, tokenizerDir: MINILM_DIR });
      const twin = await loadTextModel(again);
      const ids = model.tokenize("same seed, same vectors");
      expect(Array.from((await twin.run([ids]))[0]!)).toEqual(Array.from((await model.run([ids]))[0]!));
    } finally {
      await rm(again, { recursive: true, force: true });
    }
  });
});
