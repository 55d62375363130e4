import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DynamicBatcher } from "../batcher.js";
import { pageText } from "../content.js";
import { CONTENT_FILE } from "./build-default.js";
import { readPages } from "./corpus.js";
import { transformerParameters } from "./onnx-graph.js";
import { MINILM_L6_SHAPE, writeTransformerModel, type WrittenTransformer } from "./transformer-model.js";
import { loadTextModel, MODEL_FILE, type TextModel } from "./text-model.js";

const maxDifference = (a: Float32Array, b: Float32Array) => a.reduce((m, x, d) => Math.max(m, Math.abs(x - b[d]!)), 0);

describe("the transformer-shaped test model (MiniLM-L6's shapes, random weights)", () => {
  let scratch: string;
  let written: WrittenTransformer;
  let model: TextModel;
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "embedder-transformer-"));
    written = await writeTransformerModel(join(scratch, "full"));
    model = await loadTextModel(written.dir, { intraOpThreads: 2 });
  }, 120_000);
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it("has all-MiniLM-L6-v2's parameters (without the pooler sentence-transformers does not use)", () => {
    // 22,713,216 in MiniLM-L6's BertModel, less its 384 × 384 + 384 pooler.
    expect(written.parameters).toBe(22_713_216 - 147_840);
    expect(transformerParameters({ ...MINILM_L6_SHAPE, vocabSize: 30_522 }).find((p) => p.name === "word_embeddings")!.dims).toEqual([30_522, 384]);
    expect(written.bytes).toBeGreaterThan(4 * written.parameters);
    expect(written.bytes).toBeLessThan(4 * written.parameters + 1_000_000);
  });

  it("loads through the embedder's model loading as a 384-d model giving unit vectors", async () => {
    expect(model.name).toBe(written.name);
    expect(model.dimension).toBe(384);
    expect(model.maxTokens).toBe(256);
    const vectors = await model.run(["a first text", "and a second, different one"].map((t) => model.tokenize(t)));
    for (const v of vectors) {
      expect(v).toHaveLength(384);
      expect(Math.hypot(...v)).toBeCloseTo(1, 5);
    }
    expect(maxDifference(vectors[0]!, vectors[1]!)).toBeGreaterThan(1e-3);
  });

  it("is deterministic: the same text gives the same vector, run after run", async () => {
    const ids = model.tokenize("same weights, same vectors");
    const [a] = await model.run([ids]);
    const [b] = await model.run([ids]);
    expect(Array.from(b!)).toEqual(Array.from(a!));
  });

  it("gives each text of a padded batch the vector it has alone, which is what makes batching correct", async () => {
    const texts = ["short", "a sentence of a few more words than that", "a page of text, much longer than the others; ".repeat(12)];
    const ids = texts.map((t) => model.tokenize(t));
    const batched = await model.run(ids);
    for (const [i, row] of ids.entries()) {
      const [alone] = await model.run([row]);
      expect(maxDifference(batched[i]!, alone!)).toBeLessThan(1e-5);
    }
    // The check has teeth: the same pad ids with the mask set (padding attended to) move the vector.
    const [unmasked] = await model.run([[...ids[0]!, ...Array.from({ length: ids[2]!.length - ids[0]!.length }, () => 0)]]);
    expect(maxDifference(unmasked!, batched[0]!)).toBeGreaterThan(1e-2);
  });

  it("answers through the batcher at max batch 32 what it answers one text at a time", async () => {
    const texts = (await readPages(CONTENT_FILE)).slice(0, 40).map((p) => pageText(p.title, p.text));
    texts.push("a title", "another short one");
    const embedAll = (maxBatch: number) => new DynamicBatcher(model, { maxBatch, maxDelayMs: 1, maxQueue: 100 }).embed(texts);
    const one = await embedAll(1);
    const many = await embedAll(32);
    many.forEach((v, i) => expect(maxDifference(v, one[i]!)).toBeLessThan(1e-5));
  }, 60_000);

  it("is reproducible: the same seed and shape give the same bytes", async () => {
    const small = { layers: 1, hidden: 32, heads: 4, intermediate: 64 };
    await writeTransformerModel(join(scratch, "a"), { seed: 3, shape: small });
    await writeTransformerModel(join(scratch, "b"), { seed: 3, shape: small });
    await writeTransformerModel(join(scratch, "c"), { seed: 4, shape: small });
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((d) => readFile(join(scratch, d, MODEL_FILE))));
    expect(Buffer.compare(a!, b!)).toBe(0);
    expect(Buffer.compare(a!, c!)).not.toBe(0);
  });
});
