import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { registry } from "@recsys/metrics";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
// The thread runs the built worker (dist/model-worker.js): the test takes the built module beside it, as the service runs it.
import { QueueFullError } from "../dist/batcher.js";
import { ModelThread } from "../dist/model-thread.js";
import { MINILM_DIR } from "./model/build-default.js";
import { writeRandomModel } from "./model/random-model.js";
import { loadTextModel, type TextModel } from "./model/text-model.js";

const texts = ["hello world", "The quick brown fox jumps over the lazy dog.", "", "Streaming embeddings!", "a ".repeat(300)];

async function batchSizeCount(): Promise<number> {
  const metric = await registry.getSingleMetric("recsys_embed_batch_size")!.get();
  return metric.values.find((v) => v.metricName === "recsys_embed_batch_size_count")?.value ?? 0;
}

describe("ModelThread", () => {
  let dir: string;
  let alone: TextModel;
  const threads: ModelThread[] = [];
  const exits: Error[] = [];
  const start = async (batcher: { maxBatch: number; maxDelayMs: number; maxQueue: number }) => {
    const t = await ModelThread.start({ dir, intraOpThreads: 1, batcher }, (err: Error) => exits.push(err));
    threads.push(t);
    return t;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "embedder-thread-"));
    await writeRandomModel(dir, { dimension: 48, seed: 11, tokenizerDir: MINILM_DIR });
    alone = await loadTextModel(dir);
  });
  afterAll(async () => {
    for (const t of threads) await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("answers each text with the vector the model gives it alone, in order, whatever shares its batch", async () => {
    const thread = await start({ maxBatch: 4, maxDelayMs: 2, maxQueue: 64 });
    expect({ name: thread.name, dimension: thread.dimension }).toEqual({ name: alone.name, dimension: 48 });
    const before = await batchSizeCount();
    // Two calls at once: their texts share runs on the thread.
    const [a, b] = await Promise.all([thread.embed(texts), thread.embed([...texts].reverse())]);
    for (const [got, want] of [
      [a, texts],
      [b, [...texts].reverse()],
    ] as const) {
      expect(got).toHaveLength(want.length);
      for (let i = 0; i < want.length; i++) {
        const [own] = await alone.run([alone.tokenize(want[i]!)]);
        expect(Array.from(got[i]!)).toEqual(Array.from(own!).map((x) => expect.closeTo(x, 5)));
      }
    }
    // The runs are counted where the metrics are served: the stats and the batch-size histogram of this thread.
    expect(thread.stats.sequences).toBe(2 * texts.length);
    expect(thread.stats.batches).toBeGreaterThanOrEqual(3);
    expect((await batchSizeCount()) - before).toBe(thread.stats.batches);
    expect(thread.queued).toBe(0);
  });

  it("refuses a whole call at once when the queue is full, and takes calls again once it drained", async () => {
    const thread = await start({ maxBatch: 64, maxDelayMs: 300, maxQueue: 4 });
    const waiting = thread.embed(texts.slice(0, 3));
    expect(thread.queued).toBe(3);
    const refused = await thread.embed(texts.slice(0, 2)).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(QueueFullError);
    expect(refused).toMatchObject({ waiting: 3, asked: 2, capacity: 4 });
    // Nothing of the refused call was queued: one more text still fits.
    const fits = thread.embed([texts[3]!]);
    expect(thread.queued).toBe(4);
    expect(await waiting).toHaveLength(3);
    expect(await fits).toHaveLength(1);
    expect(thread.queued).toBe(0);
    expect(await thread.embed(texts.slice(0, 4))).toHaveLength(4);
  });

  it("fails to start with the folder's name when the folder holds no model", async () => {
    const empty = await mkdtemp(join(tmpdir(), "embedder-empty-"));
    try {
      await expect(ModelThread.start({ dir: empty, intraOpThreads: 1, batcher: { maxBatch: 4, maxDelayMs: 2, maxQueue: 8 } }, () => {})).rejects.toThrow(
        new RegExp(`${empty}.*tokenizer\\.json`),
      );
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it("fails the calls in flight when closed, and refuses new ones", async () => {
    const thread = await start({ maxBatch: 64, maxDelayMs: 5_000, maxQueue: 8 });
    const inFlight = thread.embed(["never run"]);
    await thread.close();
    await expect(inFlight).rejects.toThrow(/model thread/);
    await expect(thread.embed(["late"])).rejects.toThrow(/closed/);
    // A close is not a crash: the service is not told the thread died.
    expect(exits).toEqual([]);
  });
});
