// Docs/s of the reference pages through the batching queue, max batch 1 against the given settings.
//   node dist/batching-cli.js [--model DIR] [--content FILE] [--max-batch N] [--max-delay-ms N] [--threads N]
import { parseArgs } from "node:util";
import { DynamicBatcher } from "./batcher.js";
import { pageText } from "./content.js";
import { DEFAULT_MODEL_DIR } from "./model-dir.js";
import { CONTENT_FILE } from "./model/build-default.js";
import { readPages } from "./model/corpus.js";
import { loadTextModel } from "./model/text-model.js";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: DEFAULT_MODEL_DIR },
    content: { type: "string", default: CONTENT_FILE },
    "max-batch": { type: "string", default: "32" },
    "max-delay-ms": { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
  },
});
const model = await loadTextModel(values.model, { intraOpThreads: Number(values.threads) });
const texts = (await readPages(values.content)).map((p) => pageText(p.title, p.text));

async function docsPerSecond(maxBatch: number) {
  const batcher = new DynamicBatcher(model, { maxBatch, maxDelayMs: Number(values["max-delay-ms"]), maxQueue: texts.length });
  const t0 = performance.now();
  // Every page asked at once, one text a call, as the content consumer asks.
  await Promise.all(texts.map((t) => batcher.embed([t])));
  const s = (performance.now() - t0) / 1000;
  return {
    maxBatch,
    docsPerSecond: Math.round(texts.length / s),
    batches: batcher.stats.batches,
    paddingShare: 1 - batcher.stats.realTokens / batcher.stats.paddedTokens,
  };
}

await docsPerSecond(Number(values["max-batch"])); // warm-up
const one = await docsPerSecond(1);
const many = await docsPerSecond(Number(values["max-batch"]));
console.log(
  JSON.stringify({
    model: model.name,
    pages: texts.length,
    batch1: one,
    batched: many,
    speedup: Math.round((many.docsPerSecond / one.docsPerSecond) * 100) / 100,
  }),
);
