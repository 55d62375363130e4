import type { ConnectRouter } from "@connectrpc/connect";
import { consumerNames, consumerProgress, deadLettered, type Bus } from "@recsys/bus";
import { CovisitService, type RecommendationRequest } from "@recsys/contracts/covisit/v1/covisit";
import { answerEach } from "@recsys/server";
import { checkUrl, checkUserid, FieldError, orInvalidArgument } from "@recsys/validation";
import { answerRecommendation, type CovisitStore } from "./redis-store.js";

/** The most urls RecentPages checks in one call, as many as a list answers. */
const MAX_RECENT_URLS = 1_000;

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
        const { userid, urls } = orInvalidArgument(() => {
          if (req.urls.length > MAX_RECENT_URLS) throw new FieldError("urls", `at most ${MAX_RECENT_URLS}, not ${req.urls.length}`);
          return { userid: checkUserid(req.userid), urls: req.urls.map((u, i) => checkUrl(u, `urls[${i}]`)) };
        });
        if (urls.length === 0) return { urls: await store.recentPages(userid) };
        const recent = await store.recentAmong(userid, urls);
        return { urls: urls.filter((u) => recent.has(u)) };
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
