import { describe, expect, it } from "vitest";
import type { BatchModel } from "./batcher.js";
import { batchingCeiling } from "./batching-ceiling.js";

/**
 * A model on a clock of its own: a run costs a fixed `overheadMs` plus `perTokenMs` for every padded token (rows × the longest row),
 * that cost × `slowdown` above `fastUpTo` rows (a batch too big for the caches). A text of n words is n tokens.
 */
class ClockedModel implements BatchModel {
  clock = 0;
  runs: number[][][] = [];
  constructor(
    private readonly overheadMs: number,
    private readonly perTokenMs: number,
    private readonly fastUpTo = Number.POSITIVE_INFINITY,
    private readonly slowdown = 1,
  ) {}
  tokenize(text: string): number[] {
    return text.split(" ").map((w) => w.length);
  }
  async run(batch: number[][]): Promise<Float32Array[]> {
    this.runs.push(batch);
    const padded = batch.length * Math.max(...batch.map((r) => r.length));
    this.clock += (this.overheadMs + this.perTokenMs * padded) * (batch.length > this.fastUpTo ? this.slowdown : 1);
    return batch.map(() => new Float32Array(1));
  }
}

const text = (tokens: number) => Array.from({ length: tokens }, () => "w").join(" ");

describe("batchingCeiling", () => {
  it("is the best batched pass over batch 1, as a run's fixed cost and its per-token cost make it", async () => {
    // 2 ms a run and 1 ms per 100 tokens: batch 1 costs 3 ms a text, batch 16 costs 2/16 + 1 = 1.125 ms, batch 32 (past the
    // caches, half as fast again) (2/32 + 1) × 1.5 = 1.59375 ms.
    const model = new ClockedModel(2, 0.01, 16, 1.5);
    const out = await batchingCeiling(
      model,
      Array.from({ length: 64 }, () => text(100)),
      [4, 16, 32],
      () => model.clock,
    );
    expect(out.passes.map((p) => p.batch)).toEqual([1, 4, 16, 32, 1]);
    expect(out.passes[0]!.docsPerSecond).toBeCloseTo(1000 / 3, 6);
    expect(out.passes[1]!.docsPerSecond).toBeCloseTo(1000 / 1.5, 6);
    expect(out.passes[3]!.docsPerSecond).toBeCloseTo(1000 / 1.59375, 6);
    expect(out.best.batch).toBe(16);
    expect(out.ceiling).toBeCloseTo(3 / 1.125, 6);
    expect(out.tokensP50).toBe(100);
  });

  it("sorts the texts by length, so that a batch of equal lengths pads nothing", async () => {
    const model = new ClockedModel(0, 1);
    // Interleaved: 8 texts of 5 tokens and 8 of 9; in the order given, every batch of 8 would pad to 9.
    const texts = Array.from({ length: 16 }, (_, i) => text(i % 2 === 0 ? 5 : 9));
    const out = await batchingCeiling(model, texts, [8], () => model.clock);
    const measured = model.runs.filter((batch) => batch.length === 8).slice(1);
    expect(measured.map((batch) => batch.map((r) => r.length))).toEqual([Array(8).fill(5), Array(8).fill(9)]);
    // No fixed cost: batching saves nothing, and without padding loses nothing.
    expect(out.ceiling).toBeCloseTo(1, 6);
    expect(out.tokensP50).toBe(9);
  });

  it("refuses a measurement without a batch size above 1", async () => {
    await expect(batchingCeiling(new ClockedModel(1, 1), [text(3)], [1])).rejects.toThrow(/batch size above 1/);
  });
});
