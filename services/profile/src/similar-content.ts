import { ConnectError } from "@connectrpc/connect";
import { refusal, type BatchResult } from "@recsys/server";
import { checkLimit, checkUserid, orInvalidArgument } from "@recsys/validation";
import type { SimilarContentAsk } from "./reads.js";
import type { SimilarPage } from "./types.js";

// SimilarContent's checks and answers, shared by profile's RPCs and by readers of profile's PostgreSQL (the gateway), so that a
// request is checked, answered and refused alike whoever reads.

/** 0 on the wire means "unset" for the optional limits. */
export const limitOrDefault = (limit: number) => checkLimit(limit === 0 ? undefined : limit);

/** A SimilarContent request checked: InvalidArgument naming the field otherwise. */
export function checkSimilarContent(req: { userid: string; limit: number; includeSeen: boolean }): SimilarContentAsk {
  return {
    userid: orInvalidArgument(() => checkUserid(req.userid)),
    limit: orInvalidArgument(() => limitOrDefault(req.limit)),
    includeSeen: req.includeSeen,
  };
}

/**
 * A batch of SimilarContent requests: each checked alone, then one read (`similarContentMany` on a pool or a client) for every
 * one that checks out; answers in order, a refused request beside the others' answers.
 */
export async function answerSimilarContentBatch(
  requests: ReadonlyArray<{ userid: string; limit: number; includeSeen: boolean }>,
  read: (asks: SimilarContentAsk[]) => Promise<SimilarPage[][]>,
): Promise<Array<BatchResult<{ items: SimilarPage[] }>>> {
  const asked = requests.map((one) => {
    try {
      return checkSimilarContent(one);
    } catch (err) {
      return ConnectError.from(err);
    }
  });
  const answers = await read(asked.filter((a): a is SimilarContentAsk => !(a instanceof ConnectError)));
  let next = 0;
  return asked.map((a) => (a instanceof ConnectError ? refusal(a) : { outcome: { case: "response" as const, value: { items: answers[next++]! } } }));
}
