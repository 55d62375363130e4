import type { ConnectRouter } from "@connectrpc/connect";
import { consumerNames, consumerProgress, deadLettered, type Bus } from "@recsys/bus";
import { CovisitService, type RecommendationRequest } from "@recsys/contracts/covisit/v1/covisit";
import { answerEach } from "@recsys/server";
import { checkUserid, orInvalidArgument } from "@recsys/validation";
import { answerRecommendation, type CovisitStore } from "./redis-store.js";

/** `durables`: the CLICKS consumers whose progress Progress reports (see clickDurables). */
export function covisitRoutes(store: CovisitStore, bus: Bus, durables: string[]) {
  const recommendation = (req: RecommendationRequest) => answerRecommendation(store, req);
  return (router: ConnectRouter) =>
    router.service(CovisitService, {
      recommendation,
      // The scripts go out together: the Redis client pipelines what is sent in one tick.
      async batchRecommendation(req) {
        return { results: await answerEach(req.requests, recommendation) };
      },
      async recentPages(req) {
        const userid = orInvalidArgument(() => checkUserid(req.userid));
        return { urls: await store.recentPages(userid) };
      },
      async progress() {
        const p = await consumerProgress(bus, bus.topology.clicksStream, durables);
        return {
          ackFloorStreamSequence: p.ackFloor,
          pending: p.pending,
          ackPending: p.ackPending,
          deadLetteredClicks: await deadLettered(bus, consumerNames("covisit", "clicks").deadLetterSource),
        };
      },
    });
}
