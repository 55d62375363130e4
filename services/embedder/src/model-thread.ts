import { Worker } from "node:worker_threads";
import { addBatchRun, observeBatchRun, QueueFullError, type BatcherOptions, type BatcherStats, type BatchRun } from "./batcher.js";

/** What the model thread is started with. */
export interface ModelThreadOptions {
  dir: string;
  intraOpThreads: number;
  batcher: BatcherOptions;
}

/** To the model thread: embed these texts, answer with this id. */
export interface EmbedAsk {
  id: number;
  texts: string[];
}

/** From the model thread. */
export type ModelThreadMessage =
  | { kind: "ready"; name: string; dimension: number; maxTokens: number }
  | { kind: "load-failed"; message: string }
  /** The vectors of one ask, in order, one after the other in one array; and the runs that started since the last answer. */
  | { kind: "done"; id: number; vectors: Float32Array; runs: BatchRun[] }
  | { kind: "failed"; id: number; message: string; runs: BatchRun[] };

interface Ask {
  texts: number;
  resolve(v: Float32Array[]): void;
  reject(e: unknown): void;
}

const workerFile = new URL("./model-worker.js", import.meta.url);
const YOUNG_GENERATION_MB = 48;

/**
 * The embedder's tokenizer, batching queue and ONNX session on a thread of their own. An ONNX Runtime run blocks the thread that
 * calls it, and tokenizing is plain JavaScript: on the main thread both held back the RPCs and the consumers, which then waited
 * for the one core that thread runs on. Here the main thread serves and the model thread computes, each on a core.
 *
 * The queue's bound is kept on this side, over the texts not answered yet, so a full queue refuses a call at once and whole, as
 * the batcher does.
 */
export class ModelThread {
  readonly stats: BatcherStats = { batches: 0, sequences: 0, paddedTokens: 0, realTokens: 0, queueWaitMs: 0 };
  private readonly asks = new Map<number, Ask>();
  private nextId = 0;
  /** Texts handed to the thread and not answered yet. */
  private waiting = 0;
  private closing = false;

  private constructor(
    private readonly worker: Worker,
    private readonly maxQueue: number,
    readonly name: string,
    readonly dimension: number,
    readonly maxTokens: number,
  ) {}

  /**
   * Starts the thread and loads the model in it. `onExit` is told if the thread ends other than by close(): every call waiting
   * on it has failed by then, and nothing more can be embedded.
   */
  static async start(opts: ModelThreadOptions, onExit: (err: Error) => void): Promise<ModelThread> {
    // Tokenizing allocates short-lived strings and arrays for every token: a young generation of 48 MB collects them less often.
    // All pages through Embed, alternating with a thread of the default limits, five rounds: 3,155-3,662 against 3,211-3,437 docs/s.
    const worker = new Worker(workerFile, { workerData: opts, resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB } });
    const ready = await new Promise<{ name: string; dimension: number; maxTokens: number }>((resolve, reject) => {
      const onMessage = (m: ModelThreadMessage) => {
        if (m.kind === "ready") resolve(m);
        else if (m.kind === "load-failed") reject(new Error(m.message));
        else return;
        worker.off("exit", onEarlyExit);
        worker.off("error", onError);
      };
      const onEarlyExit = (code: number) => reject(new Error(`the model thread exited with code ${code} while loading ${opts.dir}`));
      // A throw before the thread's own handling (its imports, say) comes as an 'error', then an 'exit'.
      const onError = (err: Error) => reject(err);
      worker.once("message", onMessage);
      worker.once("exit", onEarlyExit);
      worker.once("error", onError);
    }).catch(async (err: unknown) => {
      await worker.terminate();
      throw err;
    });
    const thread = new ModelThread(worker, opts.batcher.maxQueue, ready.name, ready.dimension, ready.maxTokens);
    worker.on("message", (m: ModelThreadMessage) => thread.receive(m));
    // An exception in the thread ends it: 'error' comes first, then 'exit'.
    let failure: Error | undefined;
    worker.on("error", (err) => (failure = err));
    worker.on("exit", (code) => {
      const err = failure ?? new Error(`the model thread exited with code ${code}`);
      for (const ask of thread.asks.values()) ask.reject(err);
      thread.asks.clear();
      thread.waiting = 0;
      if (!thread.closing) onExit(err);
    });
    return thread;
  }

  /** Texts waiting for their vectors: in the batching queue or in the run under way. */
  get queued(): number {
    return this.waiting;
  }

  /** Embeddings of `texts`, in order. All or none are queued: a full queue refuses the whole call. */
  embed(texts: string[]): Promise<Float32Array[]> {
    if (this.closing) return Promise.reject(new Error("the model thread is closed"));
    if (this.waiting + texts.length > this.maxQueue) return Promise.reject(new QueueFullError(this.waiting, texts.length, this.maxQueue));
    const id = this.nextId++;
    this.waiting += texts.length;
    return new Promise((resolve, reject) => {
      this.asks.set(id, { texts: texts.length, resolve, reject });
      this.worker.postMessage({ id, texts } satisfies EmbedAsk);
    });
  }

  private receive(m: ModelThreadMessage): void {
    if (m.kind !== "done" && m.kind !== "failed") return;
    for (const run of m.runs) {
      addBatchRun(this.stats, run);
      observeBatchRun(run);
    }
    const ask = this.asks.get(m.id);
    if (!ask) return;
    this.asks.delete(m.id);
    this.waiting -= ask.texts;
    if (m.kind === "failed") {
      ask.reject(new Error(m.message));
      return;
    }
    const d = this.dimension;
    ask.resolve(Array.from({ length: ask.texts }, (_, i) => m.vectors.subarray(i * d, (i + 1) * d)));
  }

  /** Ends the thread; calls still waiting fail. */
  async close(): Promise<void> {
    this.closing = true;
    await this.worker.terminate();
  }
}
