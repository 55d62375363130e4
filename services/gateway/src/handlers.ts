import { Code, ConnectError, type Client, type ConnectRouter } from "@connectrpc/connect";
import type { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import type { IngestService } from "@recsys/contracts/ingest/v1/ingest";
import type { ProfileService } from "@recsys/contracts/profile/v1/profile";
import type { Logger } from "@recsys/logging";
import { checkLimit, orInvalidArgument } from "@recsys/validation";

export interface Backends {
  covisit: Client<typeof CovisitService>;
  ingest: Client<typeof IngestService>;
  profile: Client<typeof ProfileService>;
}

type IngestOutcome<A> = { case: "accepted"; value: A } | { case: "rejected"; value: { field: string; reason: string } } | { case: undefined; value?: undefined };

/** The one result of a single-event ingest call: the accepted value, or InvalidArgument naming `event.<field>`. */
function acceptedOrRefused<A>(outcome: IngestOutcome<A> | undefined, what: string, logger: Logger): A {
  if (outcome?.case === "rejected") {
    logger.info({ field: outcome.value.field, reason: outcome.value.reason }, `${what} refused`);
    throw new ConnectError(`event.${outcome.value.field}: ${outcome.value.reason}`, Code.InvalidArgument);
  }
  if (outcome?.case !== "accepted") throw new ConnectError(`ingest gave no result for the ${what}`, Code.Internal);
  return outcome.value;
}

/** The public RPCs, named after the reference GraphQL fields; validation here, work in the backends. */
export function gatewayRoutes(backends: Backends, logger: Logger, deadlineMs: number) {
  return (router: ConnectRouter) =>
    router.service(GatewayService, {
      async recommendation(req) {
        const limit = orInvalidArgument(() => checkLimit(req.limit));
        // covisit validates the url itself; its InvalidArgument reaches the client unchanged.
        const res = await backends.covisit.recommendation({ url: req.url, limit }, { timeoutMs: deadlineMs });
        return { items: res.items.map((i) => ({ recommendation: i.recommendation, frequency: i.frequency })) };
      },
      async clickstream(req) {
        if (!req.event) throw new ConnectError("event: is required", Code.InvalidArgument);
        const { userid, url, eventTime, eventId } = req.event;
        const res = await backends.ingest.publishClicks({ clicks: [{ userid, url, eventTime, eventId }] }, { timeoutMs: deadlineMs });
        const accepted = acceptedOrRefused(res.results[0]?.outcome, "click", logger);
        return { eventId: accepted.eventId, userid, url, eventTime: accepted.eventTime, duplicate: accepted.duplicate };
      },
      async similarContent(req) {
        const limit = orInvalidArgument(() => checkLimit(req.limit));
        // profile validates the userid itself; its InvalidArgument reaches the client unchanged.
        const res = await backends.profile.similarContent({ userid: req.userid, limit }, { timeoutMs: deadlineMs });
        return { items: res.items.map((i) => ({ url: i.url, title: i.title, similarity: i.similarity })) };
      },
      async content(req) {
        if (!req.event) throw new ConnectError("event: is required", Code.InvalidArgument);
        const { url, id, title, text, sourceTime } = req.event;
        const res = await backends.ingest.publishContent({ pages: [{ url, id, title, text, sourceTime }] }, { timeoutMs: deadlineMs });
        const accepted = acceptedOrRefused(res.results[0]?.outcome, "page", logger);
        return { eventId: accepted.eventId, url, title, sourceTime: accepted.sourceTime, duplicate: accepted.duplicate };
      },
    });
}
