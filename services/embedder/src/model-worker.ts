// The model thread (see model-thread.ts): loads the model, batches what the main thread asks, answers each ask with its vectors.
import { parentPort, workerData, type Transferable } from "node:worker_threads";
import { type BatchRun, DynamicBatcher } from "./batcher.js";
import type { EmbedAsk, ModelThreadMessage, ModelThreadOptions } from "./model-thread.js";
import { loadTextModel } from "./model/text-model.js";

const port = parentPort!;
const opts = workerData as ModelThreadOptions;
const post = (m: ModelThreadMessage, transfer: Transferable[] = []) => port.postMessage(m, transfer);

try {
  const model = await loadTextModel(opts.dir, { intraOpThreads: opts.intraOpThreads });
  const d = model.dimension;
  // The main thread bounds the queue; this one never refuses what it was handed.
  // Runs go back with the next answer rather than in messages of their own: a message costs both threads.
  let runs: BatchRun[] = [];
  const batcher = new DynamicBatcher(
    model,
    { ...opts.batcher, maxQueue: Number.POSITIVE_INFINITY },
    () => performance.now(),
    (run) => runs.push(run),
  );
  const taken = () => {
    const r = runs;
    runs = [];
    return r;
  };
  const answer = (ask: EmbedAsk) =>
    batcher.embed(ask.texts).then(
      (vectors) => {
        const flat = new Float32Array(vectors.length * d);
        vectors.forEach((v, i) => flat.set(v, i * d));
        post({ kind: "done", id: ask.id, vectors: flat, runs: taken() }, [flat.buffer]);
      },
      (err: unknown) => post({ kind: "failed", id: ask.id, message: err instanceof Error ? err.message : String(err), runs: taken() }),
    );
  // One ask a turn of the event loop: tokenizing 16 pages takes ~3 ms, and asks arrive together. Taken all at once, every run
  // waited for the last of them (a run starts on a later turn), so every call ended at once and this thread then idled while
  // the answers went out and the next calls came in. A turn each lets the runs interleave, so calls end one after another.
  const inbox: EmbedAsk[] = [];
  let draining = false;
  const drainOne = () => {
    const ask = inbox.shift();
    if (!ask) {
      draining = false;
      return;
    }
    void answer(ask);
    setImmediate(drainOne);
  };
  port.on("message", (ask: EmbedAsk) => {
    inbox.push(ask);
    if (!draining) {
      draining = true;
      setImmediate(drainOne);
    }
  });
  post({ kind: "ready", name: model.name, dimension: d, maxTokens: model.maxTokens });
} catch (err) {
  post({ kind: "load-failed", message: `${opts.dir}: ${err instanceof Error ? err.message : String(err)}` });
}
