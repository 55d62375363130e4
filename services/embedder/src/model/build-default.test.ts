import { readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildDefaultModel, CONTENT_FILE, DEFAULT_MODEL_NAME } from "./build-default.js";
import { readPages, type Page } from "./corpus.js";
import { cosineScorer, evaluate } from "./eval.js";
import { loadTextModel, MODEL_FILE, type TextModel } from "./text-model.js";

const cosine = (a: Float32Array, b: Float32Array) => cosineScorer([a], [b])(0, 0);

describe("the default model built from a few pages", () => {
  let pages: Page[];
  let scratch: string;
  let model: TextModel;
  beforeAll(async () => {
    pages = (await readPages(CONTENT_FILE)).slice(0, 80);
    scratch = await mkdtemp(join(tmpdir(), "embedder-default-"));
    await buildDefaultModel({ pages, outDir: join(scratch, "a") });
    model = await loadTextModel(join(scratch, "a"));
  }, 60_000);
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it("loads as a 384-d model named by its model.json, with MiniLM's folder layout", async () => {
    expect(model.name).toBe(DEFAULT_MODEL_NAME);
    expect(model.dimension).toBe(384);
    expect(model.maxTokens).toBe(256);
    const manifest = JSON.parse(await readFile(join(scratch, "a", "model.json"), "utf8"));
    expect(manifest).toMatchObject({ name: DEFAULT_MODEL_NAME, dimension: 384, maxTokens: 256, pages: 80 });
  });

  it("puts a page's two halves closer to each other than to an unrelated page", async () => {
    const animation = pages.find((p) => p.title === "Animation")!;
    const unrelated = pages.find((p) => p.title === "CORAL")!;
    const words = animation.text.split(/\s+/);
    const [first, second, other] = await model.run(
      [words.slice(0, words.length / 2).join(" "), words.slice(words.length / 2).join(" "), unrelated.text].map((t) => model.tokenize(t)),
    );
    expect(cosine(first!, second!)).toBeGreaterThan(cosine(first!, other!) + 0.1);
  });

  it("gives special tokens and punctuation no weight: an empty text is the zero vector, not NaN", async () => {
    const [empty, dots] = await model.run([model.tokenize(""), model.tokenize("... !!! ,")]);
    expect(Array.from(empty!).every((x) => x === 0)).toBe(true);
    expect(Array.from(dots!).every((x) => x === 0)).toBe(true);
  });

  it("is reproducible: the same pages give the same bytes", async () => {
    await buildDefaultModel({ pages, outDir: join(scratch, "b") });
    const [a, b] = await Promise.all(["a", "b"].map((d) => readFile(join(scratch, d, MODEL_FILE))));
    expect(Buffer.compare(a!, b!)).toBe(0);
  }, 60_000);
});

describe("held-out half-page retrieval on all reference pages", () => {
  it("ranks better with the default model than word TF-IDF fitted on the same pages", async () => {
    const report = await evaluate({ pages: await readPages(CONTENT_FILE) });
    expect(report.fitPages).toBe(1298);
    expect(report.queries).toBe(1298);
    expect(report.model.recallAt10).toBeGreaterThan(report.tfidf.recallAt10 + 0.05);
    expect(report.model.recallAt1).toBeGreaterThan(report.tfidf.recallAt1);
  }, 300_000);
});
