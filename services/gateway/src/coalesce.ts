import { Code, ConnectError } from "@connectrpc/connect";
import type { BatchOutcome } from "@recsys/server";
import DataLoader from "dataloader";

/** One answer of a batch RPC as it arrives: the single RPC's response, what it would have failed with, or (a broken answer) neither. */
export type BatchAnswer<R> = { outcome: BatchOutcome<R> | { case: undefined; value?: undefined } };

export interface CoalesceOptions<Q, R> {
  /** The most calls one batch call carries. */
  maxBatch: number;
  /** Batch calls in flight at once; calls made meanwhile wait and go together in the next one. */
  maxInFlight: number;
  /** Calls waiting or out at once, at most; more are refused with ResourceExhausted at once (load shed, not queued). */
  maxOutstanding: number;
  /** The batch RPC: one answer per request, in order. */
  batch(requests: readonly Q[]): Promise<Array<BatchAnswer<R>>>;
}

/**
 * Turns calls of a single RPC into calls of its batch RPC, as concurrent calls come: a call made
 * while fewer than `maxInFlight` batch calls are out goes at once (with any made in the same
 * tick), so a quiet gateway adds no wait; calls made while all are out wait for one to come back
 * and then go together. Under load each backend call, its round trip and its request and response
 * headers are shared by many calls. Each call gets its own answer or its own error.
 */
export function coalesce<Q, R>(opts: CoalesceOptions<Q, R>): (req: Q) => Promise<R> {
  let inFlight = 0;
  // Batches whose dispatch is scheduled for the end of this tick; they count as in flight.
  let pendingDispatches = 0;
  const waiting: Array<() => void> = [];
  const loader = new DataLoader<Q, R>(
    async (requests) => {
      inFlight++;
      try {
        const answers = await opts.batch(requests);
        if (answers.length !== requests.length) throw new Error(`${requests.length} requests, ${answers.length} answers`);
        return answers.map(({ outcome }) => {
          if (outcome.case === "response") return outcome.value;
          if (outcome.case === "refused") return new ConnectError(outcome.value.message, outcome.value.code);
          return new Error("the batch call gave no answer for this request");
        });
      } finally {
        inFlight--;
        waiting.shift()?.();
      }
    },
    {
      cache: false,
      maxBatchSize: opts.maxBatch,
      batchScheduleFn: (dispatch) => {
        if (inFlight + pendingDispatches < opts.maxInFlight) {
          pendingDispatches++;
          process.nextTick(() => {
            pendingDispatches--;
            dispatch();
          });
        } else waiting.push(dispatch);
      },
    },
  );
  let outstanding = 0;
  return async (req) => {
    if (outstanding >= opts.maxOutstanding) {
      throw new ConnectError(`gateway busy: ${outstanding} calls of this kind waiting; retry shortly`, Code.ResourceExhausted);
    }
    outstanding++;
    try {
      return await loader.load(req);
    } finally {
      outstanding--;
    }
  };
}
