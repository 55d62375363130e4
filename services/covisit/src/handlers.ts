import type { ConnectRouter } from "@connectrpc/connect";
import type { Bus } from "@recsys/bus";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { checkLimit, checkUrl, orInvalidArgument } from "@recsys/validation";
import { DURABLE } from "./consumer.js";
import type { CovisitStore } from "./redis-store.js";

export function covisitRoutes(store: CovisitStore, bus: Bus) {
  return (router: ConnectRouter) =>
    router.service(CovisitService, {
      async recommendation(req) {
        const url = orInvalidArgument(() => checkUrl(req.url));
        const limit = orInvalidArgument(() => checkLimit(req.limit === 0 ? undefined : req.limit));
        const items = await store.coVisitsAfter(url, limit);
        return { items: items.map((c) => ({ recommendation: c.recommendation, frequency: BigInt(c.frequency) })) };
      },
      async progress() {
        const info = await bus.jsm.consumers.info(bus.topology.clicksStream, DURABLE);
        const subject = bus.topology.deadLetterSubject("clicks");
        const dead = await bus.jsm.streams.info(bus.topology.deadLetterStream, { subjects_filter: subject });
        return {
          ackFloorStreamSequence: BigInt(info.ack_floor.stream_seq),
          pending: BigInt(info.num_pending),
          ackPending: BigInt(info.num_ack_pending),
          deadLetteredClicks: BigInt(dead.state.subjects?.[subject] ?? 0),
        };
      },
    });
}
