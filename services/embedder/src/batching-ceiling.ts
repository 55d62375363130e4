import type { BatchModel } from "./batcher.js";

/** Docs/s of one pass over the texts, in batches of `batch`. */
export interface CeilingPass {
  batch: number;
  docsPerSecond: number;
}

export interface BatchingCeiling {
  texts: number;
  /** The texts' median length in tokens. */
  tokensP50: number;
  /** Batch 1 first, each larger size, batch 1 again: a machine that drifts during the passes shows in the two batch-1 figures. */
  passes: CeilingPass[];
  /** The fastest pass at a batch larger than 1. */
  best: CeilingPass;
  /** `best` over the mean of the two batch-1 passes: the most any batching policy can give this model on this machine. */
  ceiling: number;
}

/**
 * What batching can give a model at most, here: the texts sorted by token length (so a batch pads next to nothing) and sent straight
 * to the model's run, one pass at batch 1, one at each larger size, batch 1 again, with no queue or delay in front of the model.
 * A batcher in front of the same model waits, pads and hands over; it cannot run faster than the best of these passes.
 */
export async function batchingCeiling(
  model: BatchModel,
  texts: string[],
  sizes: number[],
  now: () => number = () => performance.now(),
): Promise<BatchingCeiling> {
  const larger = sizes.filter((s) => s > 1);
  if (texts.length === 0 || larger.length === 0) throw new Error("batchingCeiling: needs texts and a batch size above 1");
  const rows = texts.map((t) => model.tokenize(t)).sort((a, b) => a.length - b.length);
  const pass = async (batch: number): Promise<CeilingPass> => {
    // One batch first, unmeasured: the runtime sizes its buffers for a new shape on the first run with it.
    await model.run(rows.slice(0, batch));
    const t0 = now();
    for (let i = 0; i < rows.length; i += batch) await model.run(rows.slice(i, i + batch));
    return { batch, docsPerSecond: rows.length / ((now() - t0) / 1000) };
  };
  const passes: CeilingPass[] = [await pass(1)];
  for (const size of larger) passes.push(await pass(size));
  passes.push(await pass(1));
  const batch1 = (passes[0]!.docsPerSecond + passes.at(-1)!.docsPerSecond) / 2;
  const best = passes.filter((p) => p.batch > 1).reduce((a, b) => (b.docsPerSecond > a.docsPerSecond ? b : a));
  return { texts: rows.length, tokensP50: rows[Math.floor(rows.length / 2)]!.length, passes, best, ceiling: best.docsPerSecond / batch1 };
}
