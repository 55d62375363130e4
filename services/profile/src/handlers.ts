import type { ConnectRouter } from "@connectrpc/connect";
import { consumerProgress, type Bus } from "@recsys/bus";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { checkLimit, checkUserid, orInvalidArgument } from "@recsys/validation";
import { CLICKS_DURABLE, EMBEDDINGS_DURABLE } from "./consumers.js";
import type { ProfileStore } from "./pg-store.js";

export function profileRoutes(store: ProfileStore, bus: Bus) {
  return (router: ConnectRouter) =>
    router.service(ProfileService, {
      async similarContent(req) {
        const userid = orInvalidArgument(() => checkUserid(req.userid));
        const limit = orInvalidArgument(() => checkLimit(req.limit === 0 ? undefined : req.limit));
        return { items: await store.similarContent(userid, limit) };
      },
      async progress() {
        const [embeddings, clicks, counts] = await Promise.all([
          consumerProgress(bus, bus.topology.embeddingsStream, EMBEDDINGS_DURABLE),
          consumerProgress(bus, bus.topology.clicksStream, CLICKS_DURABLE),
          store.counts(),
        ]);
        return {
          embeddingsAckFloor: embeddings.ackFloor,
          clicksAckFloor: clicks.ackFloor,
          pages: counts.pages,
          parkedClicks: counts.parkedClicks,
        };
      },
    });
}
