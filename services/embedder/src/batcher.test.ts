import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DynamicBatcher, QueueFullError, lengthClass, takeBatch, type BatchModel } from "./batcher.js";

/** Token ids = one per word, valued by the word's length; the "embedding" echoes the ids back. */
class RecordingModel implements BatchModel {
  batches: number[][][] = [];
  failNext = false;
  tokenize(text: string): number[] {
    return text
      .split(" ")
      .filter(Boolean)
      .map((w) => w.length);
  }
  async run(batch: number[][]): Promise<Float32Array[]> {
    this.batches.push(batch);
    if (this.failNext) {
      this.failNext = false;
      throw new Error("session failed");
    }
    return batch.map((ids) => Float32Array.from(ids));
  }
}

const words = (n: number, w = "ab") => Array.from({ length: n }, () => w).join(" ");

let model: RecordingModel;
beforeEach(() => {
  vi.useFakeTimers();
  model = new RecordingModel();
});
afterEach(() => vi.useRealTimers());

describe("DynamicBatcher", () => {
  it("runs a full batch at once, without waiting for the delay", async () => {
    const b = new DynamicBatcher(model, { maxBatch: 4, maxDelayMs: 1_000, maxQueue: 100 }, () => Date.now());
    const out = b.embed(["a b", "cc dd", "e f", "gg h"]);
    await vi.advanceTimersByTimeAsync(0);
    expect(model.batches).toHaveLength(1);
    expect(await out).toEqual(
      [
        [1, 1],
        [2, 2],
        [1, 1],
        [2, 1],
      ].map((v) => Float32Array.from(v)),
    );
  });

  it("takes fewer long texts a batch, to at most its tokens at the class's longest, and short ones up to the max batch", async () => {
    const b = new DynamicBatcher(model, { maxBatch: 32, maxBatchTokens: 2_048, maxDelayMs: 10, maxQueue: 1_000 }, () => Date.now());
    // 100 tokens: the class up to 128, 16 a batch; 3 tokens: the class up to 16, 128 would fit, 32 a batch.
    const pages = b.embed(Array.from({ length: 40 }, () => words(100)));
    const titles = b.embed(Array.from({ length: 40 }, () => words(3)));
    await vi.advanceTimersByTimeAsync(0);
    expect(model.batches.map((batch) => [batch.length, batch[0]!.length])).toEqual([
      [16, 100],
      [16, 100],
      [32, 3],
    ]);
    await vi.advanceTimersByTimeAsync(10);
    expect(model.batches.slice(3).map((batch) => [batch.length, batch[0]!.length])).toEqual([
      [8, 100],
      [8, 3],
    ]);
    await expect(Promise.all([pages, titles])).resolves.toHaveLength(2);
  });

  it("runs a partial batch when its oldest text has waited the max delay, not before", async () => {
    const b = new DynamicBatcher(model, { maxBatch: 8, maxDelayMs: 10, maxQueue: 100 }, () => Date.now());
    const first = b.embed(["one"]);
    await vi.advanceTimersByTimeAsync(6);
    const second = b.embed(["two"]);
    await vi.advanceTimersByTimeAsync(3);
    expect(model.batches).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(model.batches).toEqual([[[3], [3]]]);
    await expect(Promise.all([first, second])).resolves.toHaveLength(2);
  });

  it("does not pad short texts to long ones: each length class runs on its own", async () => {
    const b = new DynamicBatcher(model, { maxBatch: 8, maxDelayMs: 5, maxQueue: 100 }, () => Date.now());
    const texts = [words(3), words(200), words(5), words(180), words(4)];
    const out = b.embed(texts);
    await vi.advanceTimersByTimeAsync(20);
    const vectors = await out;
    expect(vectors.map((v) => v.length)).toEqual([3, 200, 5, 180, 4]);
    expect(model.batches.map((batch) => batch.map((ids) => ids.length).sort((x, y) => x - y))).toEqual(
      expect.arrayContaining([
        [3, 4, 5],
        [180, 200],
      ]),
    );
    expect(model.batches).toHaveLength(2);
    // Padding: the short class pads to 5, the long one to 200.
    expect(b.stats.paddedTokens).toBe(3 * 5 + 2 * 200);
    expect(b.stats.realTokens).toBe(3 + 4 + 5 + 180 + 200);
  });

  it("batches texts of one class by similar length, each caller still getting its own vector", async () => {
    const b = new DynamicBatcher(model, { maxBatch: 3, maxDelayMs: 1_000, maxQueue: 100 }, () => Date.now());
    // One length class (17-32 tokens), lengths interleaved: first in, first out would pad 17 to 32 and 18 to 31.
    const texts = [17, 32, 18, 31, 19, 30].map((n) => words(n));
    const out = b.embed(texts);
    await vi.advanceTimersByTimeAsync(0);
    expect(model.batches.map((batch) => batch.map((ids) => ids.length))).toEqual([
      [17, 18, 19],
      [32, 31, 30],
    ]);
    expect((await out).map((v) => v.length)).toEqual([17, 32, 18, 31, 19, 30]);
    expect(b.stats.paddedTokens).toBe(3 * 19 + 3 * 32);
  });

  it("keeps a class that fills up from waiting behind an overdue one, and serves both", async () => {
    const b = new DynamicBatcher(model, { maxBatch: 2, maxDelayMs: 50, maxQueue: 100 }, () => Date.now());
    const lonely = b.embed([words(100)]);
    const pair = b.embed([words(2), words(3)]);
    await vi.advanceTimersByTimeAsync(0);
    expect(model.batches.map((x) => x.length)).toEqual([2]);
    await vi.advanceTimersByTimeAsync(50);
    expect(model.batches.map((x) => x.length)).toEqual([2, 1]);
    await Promise.all([lonely, pair]);
  });

  it("refuses a call that does not fit the queue, queuing none of it", async () => {
    const b = new DynamicBatcher(model, { maxBatch: 100, maxDelayMs: 1_000, maxQueue: 5 }, () => Date.now());
    const held = b.embed(["a", "b", "c"]);
    await expect(b.embed(["d", "e", "f"])).rejects.toBeInstanceOf(QueueFullError);
    expect(b.queued).toBe(3);
    const fits = b.embed(["d", "e"]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await held).toHaveLength(3);
    expect(await fits).toHaveLength(2);
    expect(b.queued).toBe(0);
  });

  it("fails every caller of a failed batch and goes on with the next", async () => {
    const b = new DynamicBatcher(model, { maxBatch: 2, maxDelayMs: 1, maxQueue: 10 }, () => Date.now());
    model.failNext = true;
    const failed = expect(b.embed(["a", "b"])).rejects.toThrow("session failed");
    const after = b.embed(["c", "d"]);
    await vi.advanceTimersByTimeAsync(5);
    await failed;
    expect(await after).toHaveLength(2);
  });
});

describe("takeBatch", () => {
  const waiting = (...lengths: number[]) => lengths.map((n, order) => ({ ids: Array.from({ length: n }, () => 1), order }));
  const lengthsOf = (list: { ids: readonly number[] }[]) => list.map((p) => p.ids.length);

  it("takes the oldest and the texts nearest its length, leaving the rest in order", () => {
    const list = waiting(50, 100, 51, 99, 52, 98, 53);
    expect(lengthsOf(takeBatch(list, 3))).toEqual([50, 51, 52]);
    expect(lengthsOf(list)).toEqual([100, 99, 98, 53]);
  });

  it("always takes the oldest, even when its length is far from every other", () => {
    const list = waiting(100, 10, 11, 12, 13);
    expect(lengthsOf(takeBatch(list, 2))).toEqual([100, 13]);
    expect(lengthsOf(list)).toEqual([10, 11, 12]);
  });

  it("is first in, first out at max batch 1, and takes a short list whole", () => {
    const list = waiting(9, 3, 7);
    expect(lengthsOf(takeBatch(list, 1))).toEqual([9]);
    expect(lengthsOf(takeBatch(list, 5))).toEqual([3, 7]);
    expect(list).toEqual([]);
  });
});

describe("lengthClass", () => {
  it("groups lengths by powers of two, with everything up to 16 tokens together", () => {
    expect([1, 16, 17, 32, 33, 128, 129, 256].map(lengthClass)).toEqual([4, 4, 5, 5, 6, 7, 8, 8]);
  });
});
