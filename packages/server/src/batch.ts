import { ConnectError } from "@connectrpc/connect";

/** What the single RPC gave one request of a batch RPC: a response, or the code and message it refused it with. */
export type BatchOutcome<R> = { case: "response"; value: R } | { case: "refused"; value: { code: number; message: string } };

/** One request of a batch RPC, answered as its single RPC would have answered it. */
export type BatchResult<R> = { outcome: BatchOutcome<R> };

/** The answer, in a batch RPC, for a request the single RPC would have failed with `err`. */
export function refusal(err: unknown): BatchResult<never> {
  const ce = ConnectError.from(err);
  return { outcome: { case: "refused", value: { code: ce.code, message: ce.rawMessage } } };
}

/**
 * Answers every request of a batch RPC with what the single RPC would have given it: a response,
 * or the code and message it would have failed with. One refused request does not fail the others.
 */
export function answerEach<Q, R>(requests: Q[], single: (req: Q) => Promise<R>): Promise<Array<BatchResult<R>>> {
  return Promise.all(requests.map((req) => single(req).then((value): BatchResult<R> => ({ outcome: { case: "response", value } }), refusal)));
}
