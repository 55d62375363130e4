import { create, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import { RecommendationRequestSchema, type CovisitService, type RecommendationRequest } from "@recsys/contracts/covisit/v1/covisit";
import {
  AddInterestResponseSchema,
  ClickMetricsResponseSchema,
  ClickstreamResponseSchema,
  ContentResponseSchema,
  DeleteUserResponseSchema,
  EventMixResponseSchema,
  EventSchema,
  EventsLikedResponseSchema,
  EventsResponseSchema,
  GatewayService,
  HidePageResponseSchema,
  LikesResponseSchema,
  PersonalizedEventSearchResponseSchema,
  RecommendationResponseSchema,
  RecommendedEventsResponseSchema,
  RelatedContentResponseSchema,
  SimilarContentResponseSchema,
  TrendingResponseSchema,
  type Event,
} from "@recsys/contracts/gateway/v1/gateway";
import type { AnalyticsService } from "@recsys/contracts/analytics/v1/analytics";
import type { IngestService } from "@recsys/contracts/ingest/v1/ingest";
import { SimilarContentRequestSchema, type Event as ProfileEvent, type ProfileService, type SimilarContentRequest } from "@recsys/contracts/profile/v1/profile";
import type { Logger } from "@recsys/logging";
import type { PlainJsonRoute } from "@recsys/server";
import { callerOf, type Access, type Caller, type Rpc } from "./access.js";
import { coalesce } from "./coalesce.js";
import { checkLimit, checkOffset, checkPageId, checkUrl, checkUserid, DEFAULT_EVENT_TYPE, orInvalidArgument } from "@recsys/validation";

export interface Backends {
  analytics: Client<typeof AnalyticsService>;
  covisit: Client<typeof CovisitService>;
  ingest: Client<typeof IngestService>;
  profile: Client<typeof ProfileService>;
}

type Methods = (typeof GatewayService)["method"];

/** The public RPCs as plain async methods: one implementation behind both Connect and GraphQL. */
export type GatewayApi = {
  [M in keyof Methods]: (req: MessageShape<Methods[M]["input"]>) => Promise<MessageShape<Methods[M]["output"]>>;
};

type IngestOutcome<A> =
  | { case: "accepted"; value: A }
  | { case: "rejected"; value: { field: string; reason: string; code: number } }
  | { case: undefined; value?: undefined };

/**
 * The one result of a single-event ingest call: the accepted value, or the refusal naming the
 * field as the client sent it (`fieldName` maps ingest's field name to the gateway's): InvalidArgument
 * for a bad value, ResourceExhausted for a user over its click or engagement budget.
 */
function acceptedOrRefused<A>(outcome: IngestOutcome<A> | undefined, what: string, logger: Logger, fieldName: (ingestField: string) => string): A {
  if (outcome?.case === "rejected") {
    logger.info({ field: outcome.value.field, reason: outcome.value.reason }, `${what} refused`);
    const code = outcome.value.code === Code.ResourceExhausted ? Code.ResourceExhausted : Code.InvalidArgument;
    throw new ConnectError(`${fieldName(outcome.value.field)}: ${outcome.value.reason}`, code);
  }
  if (outcome?.case !== "accepted") throw new ConnectError(`ingest gave no result for the ${what}`, Code.Internal);
  return outcome.value;
}

const toEvent = (e: ProfileEvent): Event =>
  create(EventSchema, { id: e.id, url: e.url, title: e.title, abstract: e.abstract, likeCount: e.likeCount, score: e.score });

/**
 * How the gateway gathers concurrent Recommendation and SimilarContent calls into batch calls: the
 * most calls a batch call carries, and how many batch calls of each kind may be out at once.
 */
export interface Coalescing {
  maxBatch: number;
  /** Calls of one kind waiting or out at once; past it the gateway sheds load with ResourceExhausted. */
  maxOutstanding: number;
  recommendationInFlight: number;
  similarContentInFlight: number;
}

/** covisit's work per call is its own event loop's: one call out at a time gathers the most. PostgreSQL's scans run on both cores: two. */
export const DEFAULT_COALESCING: Coalescing = { maxBatch: 64, maxOutstanding: 4096, recommendationInFlight: 1, similarContentInFlight: 2 };

/** The most items one call of a list answers. */
const MAX_LIMIT = 1000;

/** The window Trending counts over when not asked for one, and Recommendation's fallback counts over. */
export const DEFAULT_TRENDING_WINDOW = "1h";

/** The deadline of DeleteUser and HidePage: ingest's wait for the consumers (APPLY_WAIT_MS, 10 s) and room to spare. */
export const ADMIN_DEADLINE_MS = 15_000;

/** The public RPCs, named after the reference GraphQL fields; validation here, work in the backends. */
export function createGatewayApi(backends: Backends, logger: Logger, deadlineMs: number, coalescing: Coalescing = DEFAULT_COALESCING): GatewayApi {
  const call = { timeoutMs: deadlineMs };
  // Erasure and hiding wait for the consumers to apply them (ingest's APPLY_WAIT_MS, 10 s): their deadline leaves room for it.
  const adminCall = { timeoutMs: Math.max(deadlineMs, ADMIN_DEADLINE_MS) };
  // The two hot queries: concurrent calls share backend calls (see coalesce.ts).
  const coVisits = coalesce({
    maxBatch: coalescing.maxBatch,
    maxOutstanding: coalescing.maxOutstanding,
    maxInFlight: coalescing.recommendationInFlight,
    batch: async (requests: readonly RecommendationRequest[]) => (await backends.covisit.batchRecommendation({ requests: [...requests] }, call)).results,
  });
  const similar = coalesce({
    maxBatch: coalescing.maxBatch,
    maxOutstanding: coalescing.maxOutstanding,
    maxInFlight: coalescing.similarContentInFlight,
    batch: async (requests: readonly SimilarContentRequest[]) => (await backends.profile.batchSimilarContent({ requests: [...requests] }, call)).results,
  });
  /**
   * The pages nearest in meaning to the page after the co-visits, up to `limit`: none listed already, none the user has seen.
   * Without profile, or for a page it does not have, none. Frequency is the similarity in thousandths.
   */
  async function relatedFill(url: string, userid: string, listed: ReadonlyArray<{ recommendation: string }>, limit: number) {
    const taken = new Set(listed.map((i) => i.recommendation));
    try {
      const res = await backends.profile.relatedContent({ url, userid, limit: Math.min(1000, limit + taken.size) }, call);
      return res.items
        .filter((p) => !taken.has(p.url))
        .slice(0, limit - listed.length)
        .map((p) => ({ recommendation: p.url, frequency: BigInt(Math.round(p.similarity * 1000)), source: "related" }));
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.NotFound)) logger.warn({ err: String(err) }, "Recommendation's related fallback unavailable");
      return [];
    }
  }
  /**
   * Trending urls after the co-visits, up to `limit`: none of the listed ones, nor the page itself, nor (with a userid) the pages
   * covisit leaves out for that user. Without analytics, none.
   */
  async function trendingFill(url: string, userid: string, listed: ReadonlyArray<{ recommendation: string }>, limit: number) {
    const seen = new Set([url, ...listed.map((i) => i.recommendation)]);
    const wanted = limit - listed.length;
    try {
      // Only the trending urls are checked against the user's recent pages, which may number thousands. When those left out
      // leave the list short, the longest list is asked for once more: at most two Trending queries a call.
      for (let asked = Math.min(1000, wanted + seen.size); ; asked = 1000) {
        const res = await backends.analytics.trending({ window: DEFAULT_TRENDING_WINDOW, limit: asked }, call);
        let fill = res.urls.filter((u) => !seen.has(u.url));
        if (userid && fill.length > 0) {
          const recent = new Set((await backends.covisit.recentPages({ userid, urls: fill.map((u) => u.url) }, call)).urls);
          fill = fill.filter((u) => !recent.has(u.url));
        }
        if (fill.length >= wanted || res.urls.length < asked || asked === 1000)
          return fill.slice(0, wanted).map((u) => ({ recommendation: u.url, frequency: u.clicks, source: "trending" }));
      }
    } catch (err) {
      logger.warn({ err: String(err) }, "Recommendation's trending fallback unavailable: co-visits only");
      return [];
    }
  }
  return {
    async recommendation(req) {
      const limit = orInvalidArgument(() => checkLimit(req.limit));
      // covisit validates the url itself; its InvalidArgument reaches the client unchanged.
      const res = await coVisits(create(RecommendationRequestSchema, { url: req.url, limit, userid: req.userid }));
      const source = req.fallback ? "covisit" : "";
      const items = res.items.map((i) => ({ recommendation: i.recommendation, frequency: i.frequency, source }));
      if (req.fallback && items.length < limit) items.push(...(await relatedFill(req.url, req.userid, items, limit)));
      if (req.fallback && items.length < limit) items.push(...(await trendingFill(req.url, req.userid, items, limit)));
      return create(RecommendationResponseSchema, { items });
    },
    async clickstream(req) {
      if (!req.event) throw new ConnectError("event: is required", Code.InvalidArgument);
      const { userid, url, eventTime, eventId, event, properties } = req.event;
      const res = await backends.ingest.publishClicks({ clicks: [{ userid, url, eventTime, eventId, event, properties }] }, call);
      const accepted = acceptedOrRefused(res.results[0]?.outcome, "click", logger, (f) => `event.${f}`);
      return create(ClickstreamResponseSchema, {
        eventId: accepted.eventId,
        userid,
        url,
        eventTime: accepted.eventTime,
        duplicate: accepted.duplicate,
        event: event || DEFAULT_EVENT_TYPE,
      });
    },
    async similarContent(req) {
      const limit = orInvalidArgument(() => checkLimit(req.limit));
      // profile validates the userid itself; its InvalidArgument reaches the client unchanged.
      const res = await similar(create(SimilarContentRequestSchema, { userid: req.userid, limit, includeSeen: req.includeSeen }));
      return create(SimilarContentResponseSchema, { items: res.items.map((i) => ({ url: i.url, title: i.title, similarity: i.similarity })) });
    },
    async relatedContent(req) {
      const limit = orInvalidArgument(() => checkLimit(req.limit));
      // profile validates the url and userid itself, and answers NotFound for a url without a page.
      const res = await backends.profile.relatedContent({ url: req.url, limit, userid: req.userid }, call);
      return create(RelatedContentResponseSchema, { items: res.items.map((i) => ({ url: i.url, title: i.title, similarity: i.similarity })) });
    },
    async content(req) {
      if (!req.event) throw new ConnectError("event: is required", Code.InvalidArgument);
      const { url, id, title, text, sourceTime } = req.event;
      const res = await backends.ingest.publishContent({ pages: [{ url, id, title, text, sourceTime }] }, call);
      const accepted = acceptedOrRefused(res.results[0]?.outcome, "page", logger, (f) => `event.${f}`);
      return create(ContentResponseSchema, { eventId: accepted.eventId, url, title, sourceTime: accepted.sourceTime, duplicate: accepted.duplicate });
    },
    async likes(req) {
      if (!req.liked) throw new ConnectError("liked: is required", Code.InvalidArgument);
      const { userid, eventId, liked } = req.liked;
      orInvalidArgument(() => {
        checkUserid(userid, "liked.userid");
        checkPageId(eventId, "liked.eventId", false);
      });
      // Ingest accepts likes of pages it has not seen (batch producers may send them first);
      // a user of the public edge can only like a page that exists.
      const found = await backends.profile.eventsById({ ids: [eventId] }, call);
      if (!found.items.some((e) => e.id === eventId)) {
        logger.info({ eventId }, "like of an unknown page refused");
        throw new ConnectError(`liked.eventId: no page with id ${eventId}`, Code.NotFound);
      }
      const res = await backends.ingest.publishLikes({ likes: [{ userid, pageId: eventId, liked }] }, call);
      const accepted = acceptedOrRefused(res.results[0]?.outcome, "like", logger, (f) => (f === "page_id" ? "liked.eventId" : `liked.${f}`));
      return create(LikesResponseSchema, { sourceTime: accepted.sourceTime, userid, eventId, liked, likeId: accepted.eventId, duplicate: accepted.duplicate });
    },
    async addInterest(req) {
      if (!req.interest) throw new ConnectError("interest: is required", Code.InvalidArgument);
      const { userid, text } = req.interest;
      const res = await backends.ingest.publishInterests({ interests: [{ userid, text }] }, call);
      const accepted = acceptedOrRefused(res.results[0]?.outcome, "interest", logger, (f) => `interest.${f}`);
      return create(AddInterestResponseSchema, { sourceTime: accepted.sourceTime, userid, interestId: accepted.eventId, duplicate: accepted.duplicate });
    },
    async events(req) {
      // Unlike the other lists, Events has no default limit (as in the reference).
      const [limit, offset] = orInvalidArgument(() => [checkLimit(req.limit), checkOffset(req.offset)]);
      // profile checks the cursor (and that it comes without an offset).
      const res = await backends.profile.events({ limit, offset, cursor: req.cursor }, call);
      return create(EventsResponseSchema, { items: res.items.map(toEvent), nextCursor: res.nextCursor });
    },
    async eventsLiked(req) {
      // Every liked page unless asked for fewer, as in the reference, within the most a page holds.
      const [limit, offset] = orInvalidArgument(() => [checkLimit(req.limit ?? MAX_LIMIT), checkOffset(req.offset)]);
      // profile validates the userid (and query) and the cursor itself, here and below.
      const res = await backends.profile.eventsLiked({ userid: req.userid, limit, offset, cursor: req.cursor }, call);
      return create(EventsLikedResponseSchema, { items: res.items.map(toEvent), nextCursor: res.nextCursor });
    },
    async recommendedEvents(req) {
      const limit = orInvalidArgument(() => checkLimit(req.limit));
      const res = await backends.profile.recommendedEvents({ userid: req.userid, limit, includeSeen: req.includeSeen }, call);
      return create(RecommendedEventsResponseSchema, { items: res.items.map(toEvent) });
    },
    async clickMetrics(req) {
      const { userid, url, event, from, to } = req;
      const res = await backends.analytics.clickMetrics({ userid, url, event, from, to, limit: req.limit ?? 0, cursor: req.cursor }, call);
      return create(ClickMetricsResponseSchema, { rows: res.rows, nextCursor: res.nextCursor });
    },
    async eventMix(req) {
      const res = await backends.analytics.eventMix({ from: req.from, to: req.to }, call);
      return create(EventMixResponseSchema, { events: res.events, complete: res.complete });
    },
    async trending(req) {
      const res = await backends.analytics.trending({ window: req.window || DEFAULT_TRENDING_WINDOW, event: req.event, limit: req.limit ?? 0 }, call);
      return create(TrendingResponseSchema, { urls: res.urls, from: res.from, to: res.to });
    },
    async deleteUser(req) {
      const userid = orInvalidArgument(() => checkUserid(req.userid));
      // Known if profile holds anything of the user, or covisit holds recent clicks (of event types that move no interest too).
      const [profile, covisit] = await Promise.all([backends.profile.exists({ userid }, call), backends.covisit.recentPages({ userid }, call)]);
      if (!profile.user && covisit.urls.length === 0) {
        logger.info({ userid }, "erasure of an unknown user refused");
        throw new ConnectError(`userid: nothing is known of user ${userid}`, Code.NotFound);
      }
      const res = await backends.ingest.deleteUser({ userid }, adminCall);
      return create(DeleteUserResponseSchema, { pending: res.pending });
    },
    async hidePage(req) {
      const url = orInvalidArgument(() => checkUrl(req.url));
      if (!(await backends.profile.exists({ url }, call)).page) {
        logger.info({ url }, "visibility of an unknown page refused");
        throw new ConnectError(`url: no page stored at ${url}`, Code.NotFound);
      }
      const res = await backends.ingest.setPageVisibility({ url, hidden: req.hidden }, adminCall);
      return create(HidePageResponseSchema, { pending: res.pending });
    },
    async personalizedEventSearch(req) {
      const limit = orInvalidArgument(() => checkLimit(req.limit));
      const res = await backends.profile.personalizedEventSearch({ query: req.query, userid: req.userid, limit }, call);
      return create(PersonalizedEventSearchResponseSchema, { items: res.items.map(toEvent) });
    },
  };
}

/**
 * Reads made while the caller's rate limit is checked rather than after, once the caller is authenticated and authorized: a
 * refused call's answer is dropped, and it is refused as it would have been. Recommendation only, and only without `fallback`:
 * its read is one Redis script, so a caller over its limit costs one more script a refused call, never a backend's work. With
 * `fallback` the answer may ask profile, covisit and analytics, so it waits for the limit, as every other call does.
 */
const readsWithLimit = (method: Rpc, req: unknown) => method === "recommendation" && !(req as { fallback?: boolean }).fallback;

/**
 * The API as its callers may use it, at either door: `access` checks every call first, for the caller `callerOf` names from the
 * call's context (Connect's handler context; GraphQL's request, fixed per document).
 */
export function guardedApi<C>(api: GatewayApi, access: Access, callerOf: (context: C) => Caller) {
  return Object.fromEntries(
    (Object.keys(api) as Rpc[]).map((method) => [
      method,
      async (req: never, context: C) => {
        const answer = () => (api[method] as (r: never) => Promise<unknown>)(req);
        const limit = await access.authorize(method, callerOf(context), req);
        if (!readsWithLimit(method, req)) {
          await limit();
          return answer();
        }
        // One round trip for both: the rate limit's script and the read go to Redis back to back, without waiting for each other.
        const [limited, answered] = await Promise.allSettled([limit(), answer()]);
        if (limited.status === "rejected") throw limited.reason;
        if (answered.status === "rejected") throw answered.reason;
        return answered.value;
      },
    ]),
  ) as { [M in Rpc]: (req: Parameters<GatewayApi[M]>[0], context: C) => ReturnType<GatewayApi[M]> };
}

/** The Connect front door of the API; `access` sees every call first. */
export function gatewayRoutes(api: GatewayApi, access: Access) {
  const guarded = guardedApi(api, access, (ctx: HandlerContext) => callerOf(ctx.requestHeader));
  return (router: ConnectRouter) => router.service(GatewayService, guarded);
}

/**
 * The hot calls, also served on startRpcServer's plain path for their plainest calls (Connect JSON, no deadline): the two hot
 * queries, and Clickstream, the sites' one write (a lone click cost the gateway 3.1-4.1 ms of CPU through connect-es, 3.2-3.4 ms
 * on the plain path: three alternating rounds of 300 calls on a cold gateway).
 */
export function gatewayPlainJson(api: GatewayApi, access: Access): PlainJsonRoute[] {
  const guarded = guardedApi(api, access, (ctx: HandlerContext) => callerOf(ctx.requestHeader));
  return [
    { method: GatewayService.method.recommendation, impl: guarded.recommendation },
    { method: GatewayService.method.similarContent, impl: guarded.similarContent },
    { method: GatewayService.method.clickstream, impl: guarded.clickstream },
  ];
}
