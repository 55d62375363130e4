// Docs/s of the reference pages through the batching queue, max batch 1 against the given settings; then the most batching can give
// the model here (batching-ceiling.ts), over --ceiling-texts of them spread over the whole.
//   node dist/batching-cli.js [--model DIR] [--content FILE] [--texts pages|titles] [--pages N] [--max-batch N] [--max-batch-tokens N]
//     [--max-delay-ms N] [--threads N] [--ceiling-texts N]
// The batched pass takes the service's defaults (EMBED_MAX_BATCH, EMBED_MAX_BATCH_TOKENS, EMBED_MAX_DELAY_MS) unless told otherwise.
// --texts titles: each page's title alone (about 6 tokens), as short as a stated interest, instead of title and text (about 108).
// --pages: the first N reference pages only (a MiniLM-sized transformer runs 70-100 pages a second on 2 cores, a lookup model thousands).
import { parseArgs } from "node:util";
import { DEFAULT_MAX_BATCH_TOKENS, DynamicBatcher } from "./batcher.js";
import { batchingCeiling } from "./batching-ceiling.js";
import { pageText } from "./content.js";
import { DEFAULT_MODEL_DIR } from "./model-dir.js";
import { CONTENT_FILE } from "./model/build-default.js";
import { readPages, type Page } from "./model/corpus.js";
import { loadTextModel } from "./model/text-model.js";

const { values } = parseArgs({
  options: {
    model: { type: "string", default: DEFAULT_MODEL_DIR },
    content: { type: "string", default: CONTENT_FILE },
    "max-batch": { type: "string", default: "32" },
    "max-batch-tokens": { type: "string", default: String(DEFAULT_MAX_BATCH_TOKENS) },
    "max-delay-ms": { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
    pages: { type: "string" },
    texts: { type: "string", default: "pages" },
    "ceiling-texts": { type: "string", default: "128" },
  },
});
const model = await loadTextModel(values.model, { intraOpThreads: Number(values.threads) });
const pages = await readPages(values.content);
if (values.texts !== "pages" && values.texts !== "titles") throw new Error(`--texts must be pages or titles, got ${values.texts}`);
const textOf = values.texts === "titles" ? (p: Page) => p.title : (p: Page) => pageText(p.title, p.text);
const maxBatch = Number(values["max-batch"]);
const texts = pages.slice(0, values.pages === undefined ? pages.length : Number(values.pages)).map(textOf);

async function docsPerSecond(size: number, sample: string[]) {
  const batcher = new DynamicBatcher(model, {
    maxBatch: size,
    maxBatchTokens: Number(values["max-batch-tokens"]),
    maxDelayMs: Number(values["max-delay-ms"]),
    maxQueue: sample.length,
  });
  const t0 = performance.now();
  // Every page asked at once, one text a call, as the content consumer asks.
  await Promise.all(sample.map((t) => batcher.embed([t])));
  const s = (performance.now() - t0) / 1000;
  return {
    maxBatch: size,
    docsPerSecond: Math.round(sample.length / s),
    batches: batcher.stats.batches,
    paddingShare: 1 - batcher.stats.realTokens / batcher.stats.paddedTokens,
  };
}

// Warm-up: compiles the code paths and lets onnxruntime allocate its buffers for both batch sizes.
await docsPerSecond(maxBatch, texts.slice(0, 2 * maxBatch));
await docsPerSecond(1, texts.slice(0, 8));
const one = await docsPerSecond(1, texts);
const many = await docsPerSecond(maxBatch, texts);
// Every k-th text, so that the sample's lengths are spread as the whole's are.
const step = Math.max(1, Math.ceil(texts.length / Number(values["ceiling-texts"])));
const ceiling = await batchingCeiling(
  model,
  texts.filter((_, i) => i % step === 0),
  [...new Set([4, 16, maxBatch, 2 * maxBatch])],
);
console.log(
  JSON.stringify({
    model: model.name,
    texts: values.texts,
    pages: texts.length,
    batch1: one,
    batched: many,
    speedup: Math.round((many.docsPerSecond / one.docsPerSecond) * 100) / 100,
    ceiling: { ...ceiling, ceiling: Math.round(ceiling.ceiling * 100) / 100 },
    // The most `speedup` can be on this machine: the best pass over the queue's own batch 1.
    speedupBound: Math.round((ceiling.best.docsPerSecond / one.docsPerSecond) * 100) / 100,
  }),
);
