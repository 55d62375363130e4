import { embedBatchSize, embedQueueWait } from "@recsys/metrics";
/** What the batcher needs of a model: token ids per text, and one run over a padded batch. */
export interface BatchModel {
  tokenize(text: string): number[];
  run(batch: number[][]): Promise<Float32Array[]>;
}

/**
 * The service's tokens a batch (EMBED_MAX_BATCH_TOKENS): 16 pages of up to 128 tokens, 32 titles. The transformer-shaped model's
 * passes on this project's 2-core machine, pages sorted by length straight through the model: batch 4 and 16 the fastest, 32 at
 * 0.91 of them, 64 at 0.81; on titles 32 the fastest, 16 at 0.87.
 */
export const DEFAULT_MAX_BATCH_TOKENS = 2_048;

export interface BatcherOptions {
  /** A batch runs as soon as this many sequences of one length class wait… */
  maxBatch: number;
  /**
   * …or fewer, for long ones: at most this many tokens a batch at its class's longest (16, 32, … 256): a run's activations grow
   * with its tokens, and past a point they no longer fit the caches. Unset, `maxBatch` alone.
   */
  maxBatchTokens?: number;
  /** …or when the oldest waiting sequence has waited this long. */
  maxDelayMs: number;
  /** Sequences that may wait at once; beyond it callers get QueueFullError. */
  maxQueue: number;
}

/** What one model run took: its sequences, their tokens, and how long each waited in the queue. */
export interface BatchRun {
  size: number;
  /** Tokens the model ran, padding included, and of those the real ones. */
  paddedTokens: number;
  realTokens: number;
  waitsMs: number[];
}

/** Counts a run in the process's metrics (the batcher's default). */
export function observeBatchRun(run: BatchRun): void {
  embedBatchSize.observe(run.size);
  for (const w of run.waitsMs) embedQueueWait.observe(w / 1000);
}

/** Adds a run to the totals of `stats`. */
export function addBatchRun(stats: BatcherStats, run: BatchRun): void {
  stats.batches++;
  stats.sequences += run.size;
  stats.paddedTokens += run.paddedTokens;
  stats.realTokens += run.realTokens;
  for (const w of run.waitsMs) stats.queueWaitMs += w;
}

/** What the service embeds with: a batching queue, here or on the model thread. */
export interface TextEmbedder {
  /** Embeddings of `texts`, in order; a full queue refuses the whole call with QueueFullError. */
  embed(texts: string[]): Promise<Float32Array[]>;
  /** Texts waiting for their vectors. */
  readonly queued: number;
}

export class QueueFullError extends Error {
  constructor(
    readonly waiting: number,
    readonly asked: number,
    readonly capacity: number,
  ) {
    super(`embedding queue full: ${waiting} texts waiting, ${asked} more asked, capacity ${capacity}`);
  }
}

export interface BatcherStats {
  batches: number;
  sequences: number;
  /** Tokens the model ran, padding included, and of those the real ones. */
  paddedTokens: number;
  realTokens: number;
  /** Sum over sequences of the time from enqueue to the start of their batch. */
  queueWaitMs: number;
}

interface Pending {
  ids: number[];
  enqueuedAt: number;
  resolve(v: Float32Array): void;
  reject(e: unknown): void;
}

/**
 * Length classes: a sequence waits with others of about its length (16, 32, 64, … tokens), so a
 * 20-token title never pads to the 256 tokens of a long page in the same batch.
 */
export function lengthClass(tokens: number): number {
  return Math.max(4, Math.ceil(Math.log2(Math.max(1, tokens))));
}

/** How many of a class's oldest sequences a batch is chosen from: enough to find similar lengths, few enough to bound any wait. */
const CANDIDATES_PER_SLOT = 4;

/**
 * Takes the next batch out of one class's waiting list (oldest first): its oldest sequence and, of the oldest
 * `CANDIDATES_PER_SLOT × size`, the ones whose lengths sit closest to each other around it, so that the batch pads less than
 * the first `size` would (a class spans up to twice its shortest length). The oldest always goes, so none waits forever;
 * the rest keep their order. Which texts share a batch changes no vector: padding is masked.
 */
export function takeBatch<T extends { ids: readonly number[] }>(list: T[], size: number): T[] {
  if (list.length <= size) return list.splice(0);
  const candidates = Math.min(list.length, CANDIDATES_PER_SLOT * size);
  const byLength = Array.from({ length: candidates }, (_, i) => i).sort((a, b) => list[a]!.ids.length - list[b]!.ids.length || a - b);
  const oldestAt = byLength.indexOf(0);
  const length = (k: number) => list[byLength[k]!]!.ids.length;
  // Each window of `size` neighbours in length order that holds the oldest pads to its longest; keep the least padded.
  let best = -1;
  let bestPadding = Infinity;
  for (let start = Math.max(0, oldestAt - size + 1); start <= Math.min(oldestAt, candidates - size); start++) {
    let real = 0;
    for (let k = start; k < start + size; k++) real += length(k);
    const padding = length(start + size - 1) * size - real;
    if (padding < bestPadding) {
      bestPadding = padding;
      best = start;
    }
  }
  const chosen = new Set(byLength.slice(best, best + size));
  const batch: T[] = [];
  let kept = 0;
  for (let i = 0; i < list.length; i++) {
    if (chosen.has(i)) batch.push(list[i]!);
    else list[kept++] = list[i]!;
  }
  list.length = kept;
  return batch;
}

/**
 * One queue for every caller of one model session; a length class runs when full or when its oldest sequence waited `maxDelayMs`.
 * One batch runs at a time: the session already uses every core it is given.
 */
export class DynamicBatcher implements TextEmbedder {
  private readonly classes = new Map<number, Pending[]>();
  private waiting = 0;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  readonly stats: BatcherStats = { batches: 0, sequences: 0, paddedTokens: 0, realTokens: 0, queueWaitMs: 0 };

  constructor(
    private readonly model: BatchModel,
    readonly options: BatcherOptions,
    private readonly now: () => number = () => performance.now(),
    /** Told of each run as it starts; where a model thread batches, it sends them to the thread holding the metrics. */
    private readonly observe: (run: BatchRun) => void = observeBatchRun,
  ) {}

  get queued(): number {
    return this.waiting;
  }

  /** Embeddings of `texts`, in order. All or none are queued: a full queue refuses the whole call. */
  embed(texts: string[]): Promise<Float32Array[]> {
    if (this.waiting + texts.length > this.options.maxQueue) {
      return Promise.reject(new QueueFullError(this.waiting, texts.length, this.options.maxQueue));
    }
    const at = this.now();
    const out = texts.map(
      (text) =>
        new Promise<Float32Array>((resolve, reject) => {
          const p: Pending = { ids: this.model.tokenize(text), enqueuedAt: at, resolve, reject };
          const cls = lengthClass(p.ids.length);
          const list = this.classes.get(cls);
          if (list) list.push(p);
          else this.classes.set(cls, [p]);
          this.waiting++;
        }),
    );
    this.pump();
    return Promise.all(out);
  }

  /** The class to run now, if any: a full one first, else the one holding an overdue sequence. */
  private due(): number | undefined {
    let oldestClass: number | undefined;
    let oldest = Infinity;
    for (const [cls, list] of this.classes) {
      if (list.length >= this.batchSize(cls)) return cls;
      if (list[0]!.enqueuedAt < oldest) {
        oldest = list[0]!.enqueuedAt;
        oldestClass = cls;
      }
    }
    if (oldestClass !== undefined && this.now() - oldest >= this.options.maxDelayMs) return oldestClass;
    return undefined;
  }

  /** The most sequences of length class `cls` a batch takes. */
  private batchSize(cls: number): number {
    const { maxBatch, maxBatchTokens = Number.POSITIVE_INFINITY } = this.options;
    return Math.max(1, Math.min(maxBatch, Math.floor(maxBatchTokens / 2 ** cls)));
  }

  private pump(): void {
    if (this.running) return;
    const cls = this.due();
    if (cls === undefined) {
      this.arm();
      return;
    }
    const list = this.classes.get(cls)!;
    const batch = takeBatch(list, this.batchSize(cls));
    if (list.length === 0) this.classes.delete(cls);
    this.waiting -= batch.length;
    this.running = true;
    void this.runBatch(batch).finally(() => {
      this.running = false;
      this.pump();
    });
  }

  /** Wakes up when the oldest waiting sequence becomes overdue. */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    let oldest = Infinity;
    for (const list of this.classes.values()) oldest = Math.min(oldest, list[0]!.enqueuedAt);
    if (oldest === Infinity) return;
    const delay = Math.max(0, oldest + this.options.maxDelayMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, delay);
    this.timer.unref?.();
  }

  private async runBatch(batch: Pending[]): Promise<void> {
    const started = this.now();
    const run: BatchRun = {
      size: batch.length,
      paddedTokens: Math.max(...batch.map((p) => p.ids.length)) * batch.length,
      realTokens: batch.reduce((n, p) => n + p.ids.length, 0),
      waitsMs: batch.map((p) => started - p.enqueuedAt),
    };
    addBatchRun(this.stats, run);
    this.observe(run);
    try {
      const vectors = await this.model.run(batch.map((p) => p.ids));
      batch.forEach((p, i) => p.resolve(vectors[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }
}
