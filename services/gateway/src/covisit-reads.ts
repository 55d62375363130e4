import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { BatchRecommendationResponseSchema, type CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { answerRecommendation, type CovisitStore } from "@recsys/covisit-store";
import type { Logger } from "@recsys/logging";
import { answerEach } from "@recsys/server";
import { failureLog } from "./failure-log.js";

/**
 * covisit's client with its `BatchRecommendation` answered here, from covisit's Redis, by covisit's own code (`answerRecommendation`
 * on a `CovisitStore.reader`): the same script, checks and errors, without a second process in the path of the busiest query.
 * The reader answers only while covisit serves from those counts (Unavailable otherwise, as covisit's RPC would be), so counts
 * being rebuilt, or read before every hidden page is applied, are never answered. A failing Redis is Unavailable too. The other
 * RPCs still go to covisit.
 */
export function readingCovisitRedis(client: Client<typeof CovisitService>, reader: CovisitStore, logger: Logger): Client<typeof CovisitService> {
  const failed = failureLog(logger, "covisit's Redis failed a read");
  const single = (req: { url?: string; limit?: number; userid?: string }) =>
    answerRecommendation(reader, { url: req.url ?? "", limit: req.limit ?? 0, userid: req.userid ?? "" }).catch((err: unknown) => {
      if (err instanceof ConnectError) throw err;
      // Its text, which can name hosts and users, goes to the log, not to the caller.
      failed(err);
      throw new ConnectError("covisit's Redis is unavailable", Code.Unavailable, undefined, undefined, err);
    });
  return {
    ...client,
    async batchRecommendation(req) {
      return create(BatchRecommendationResponseSchema, { results: await answerEach(req.requests ?? [], single) });
    },
  };
}
