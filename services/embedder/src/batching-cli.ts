// Docs/s of the reference pages through the batching queue, max batch 1 against the given settings.
//   node dist/batching-cli.js [--model DIR] [--content FILE] [--texts pages|titles] [--pages N] [--max-batch N] [--max-delay-ms N] [--threads N]
// --texts titles: each page's title alone (about 6 tokens), as short as a stated interest, instead of title and text (about 108).
// --pages: the first N reference pages only (a MiniLM-sized transformer runs 70-100 pages a second on 2 cores, a lookup model thousands).
import { parseArgs } from "node:util";
import { DynamicBatcher } from "./batcher.js";
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
    "max-delay-ms": { type: "string", default: "5" },
    threads: { type: "string", default: "2" },
    pages: { type: "string" },
    texts: { type: "string", default: "pages" },
  },
});
const model = await loadTextModel(values.model, { intraOpThreads: Number(values.threads) });
const pages = await readPages(values.content);
if (values.texts !== "pages" && values.texts !== "titles") throw new Error(`--texts must be pages or titles, got ${values.texts}`);
const textOf = values.texts === "titles" ? (p: Page) => p.title : (p: Page) => pageText(p.title, p.text);
const texts = pages.slice(0, values.pages === undefined ? pages.length : Number(values.pages)).map(textOf);

async function docsPerSecond(maxBatch: number, sample: string[]) {
  const batcher = new DynamicBatcher(model, { maxBatch, maxDelayMs: Number(values["max-delay-ms"]), maxQueue: sample.length });
  const t0 = performance.now();
  // Every page asked at once, one text a call, as the content consumer asks.
  await Promise.all(sample.map((t) => batcher.embed([t])));
  const s = (performance.now() - t0) / 1000;
  return {
    maxBatch,
    docsPerSecond: Math.round(sample.length / s),
    batches: batcher.stats.batches,
    paddingShare: 1 - batcher.stats.realTokens / batcher.stats.paddedTokens,
  };
}

// Warm-up: compiles the code paths and lets onnxruntime allocate its buffers for both batch sizes.
await docsPerSecond(Number(values["max-batch"]), texts.slice(0, 2 * Number(values["max-batch"])));
await docsPerSecond(1, texts.slice(0, 8));
const one = await docsPerSecond(1, texts);
const many = await docsPerSecond(Number(values["max-batch"]), texts);
console.log(
  JSON.stringify({
    model: model.name,
    texts: values.texts,
    pages: texts.length,
    batch1: one,
    batched: many,
    speedup: Math.round((many.docsPerSecond / one.docsPerSecond) * 100) / 100,
  }),
);
