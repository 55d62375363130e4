import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeRandomModel } from "@recsys/embedder/random-model";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { repoRoot, startStack, type TestStack } from "./harness/stack.js";

// A stand-in for all-MiniLM-L6-v2: its tokenizer files and folder layout, random weights with the
// same ONNX inputs and output. The embedder must pick it up from where MiniLM's weights would be.
const miniLm = join(mkdtempSync(join(tmpdir(), "minilm-")), "all-MiniLM-L6-v2");
let stack: TestStack;
let c: ReturnType<typeof clientsOf>;

const norm = (v: number[]) => Math.hypot(...v);
const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);

beforeAll(async () => {
  await writeRandomModel(miniLm, { dimension: 384, seed: 7, tokenizerDir: join(repoRoot, "../shared/models/all-MiniLM-L6-v2") });
  stack = await startStack("minilm", { EMBEDDER_MINILM_DIR: miniLm, EMBED_MAX_BATCH: "8", EMBED_MAX_DELAY_MS: "2" });
  c = clientsOf(stack);
}, 120_000);
afterAll(async () => stack?.stop());

describe("the MiniLM path, with a model of the same contract", () => {
  it("loads the model found where MiniLM's weights would be, and says so", async () => {
    const p = await c.embedder.progress({});
    expect(p.model).toBe("random-d384-s7");
    expect(p.dimension).toBe(384);
  });

  it("embeds through the batching queue: unit vectors, in request order, the same text the same vector", async () => {
    const texts = ["hello world", "a much longer text about stream processing with Apache Flink and Kafka", "", "hello world"];
    const res = await c.embedder.embed({ texts });
    expect(res.model).toBe("random-d384-s7");
    expect(res.embeddings).toHaveLength(4);
    for (const e of res.embeddings) {
      expect(e.values).toHaveLength(384);
      expect(norm(e.values)).toBeCloseTo(1, 5);
    }
    expect(dot(res.embeddings[0]!.values, res.embeddings[3]!.values)).toBeCloseTo(1, 5);
    expect(dot(res.embeddings[0]!.values, res.embeddings[1]!.values)).toBeLessThan(0.99);
    // The same text alone and inside a batch of other lengths: padding and the mask change nothing.
    const alone = (await c.embedder.embed({ texts: [texts[1]!] })).embeddings[0]!.values;
    expect(dot(alone, res.embeddings[1]!.values)).toBeCloseTo(1, 5);
  });

  it("carries a page from Content to SimilarContent with its vector", async () => {
    const page = { url: "https://en.wikipedia.org/wiki/Zoop", title: "Zoop", text: "Zoop is a puzzle video game." };
    await c.gateway.content({ event: page });
    await c.gateway.clickstream({ event: { userid: "reader", url: page.url } });
    await expect
      .poll(
        async () =>
          (await c.gateway.similarContent({ userid: "reader", limit: 1, includeSeen: true })).items.map((i) => [i.url, Math.round(i.similarity * 1e4) / 1e4]),
        {
          timeout: 30_000,
          interval: 100,
        },
      )
      .toEqual([[page.url, 1]]);
  });
});
