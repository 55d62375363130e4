import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import { costLimitPlugin } from "@escape.tech/graphql-armor-cost-limit";
import { maxAliasesPlugin } from "@escape.tech/graphql-armor-max-aliases";
import { maxDepthPlugin } from "@escape.tech/graphql-armor-max-depth";
import { maxTokensPlugin } from "@escape.tech/graphql-armor-max-tokens";
import {
  AddInterestRequestSchema,
  ClickMetricsRequestSchema,
  ClickstreamRequestSchema,
  ContentRequestSchema,
  DeleteUserRequestSchema,
  EventMixRequestSchema,
  EventsLikedRequestSchema,
  EventsRequestSchema,
  HidePageRequestSchema,
  LikesRequestSchema,
  PersonalizedEventSearchRequestSchema,
  RecommendationRequestSchema,
  RecommendedEventsRequestSchema,
  RelatedContentRequestSchema,
  SimilarContentRequestSchema,
  TrendingRequestSchema,
  type Event,
} from "@recsys/contracts/gateway/v1/gateway";
import type { Logger } from "@recsys/logging";
import { createGraphQLError, createSchema, createYoga } from "graphql-yoga";
import { useCSRFPrevention } from "@graphql-yoga/plugin-csrf-prevention";
import { maxItemsPlugin, jsonBodiesOnlyPlugin } from "./graphql-guards.js";
import { PROPERTIES, type PropertyValueInit } from "./graphql-properties.js";
import { typeDefs } from "./graphql-schema.js";
import { callerOf, type Access, type Caller, type Rpc } from "./access.js";
import { guardedApi, type GatewayApi } from "./handlers.js";

/** What a GET /graphql must carry, as any request a browser sends without asking the server first. */
export const CSRF_HEADER = "x-graphql-csrf";

/** Limits on what one document may ask for; the body size is limited in graphql-http.ts. */
export const GRAPHQL_LIMITS = {
  depth: 8,
  // GraphQL's own introspection query (what GraphiQL and schema tools send) is 21 deep: __schema is exempt from
  // `depth` so that tools can load the schema, but a deeper __schema query is still refused.
  introspectionDepth: 21,
  cost: 5000,
  // Items of all lists together: 15 aliases of Events(limit: 1000) are 15,000.
  items: 5000,
  aliases: 15,
  tokens: 1000,
} as const;

interface ClickEventInput {
  userid: string;
  url: string;
  event_time?: string | null;
  event_id?: string | null;
  event?: string | null;
  properties?: Record<string, PropertyValueInit> | null;
}

interface ClickMetricsArgs {
  userid?: string | null;
  url?: string | null;
  event?: string | null;
  from?: string | null;
  to?: string | null;
  limit?: number | null;
  cursor?: string | null;
}

/** A page of ClickMetrics rows with the reference's column names, and the next page's cursor (null after the last). */
async function clickMetricsPage(api: GatewayApi, a: ClickMetricsArgs) {
  const req = {
    userid: a.userid ?? "",
    url: a.url ?? "",
    event: a.event ?? "",
    from: a.from ?? "",
    to: a.to ?? "",
    limit: a.limit ?? undefined,
    cursor: a.cursor ?? "",
  };
  const res = await api.clickMetrics(create(ClickMetricsRequestSchema, req));
  const rows = res.rows.map((r) => ({
    window_start: r.windowStart,
    window_end: r.windowEnd,
    userid: r.userid,
    event: r.event,
    url: r.url,
    event_count: Number(r.eventCount),
  }));
  return { rows, nextCursor: res.nextCursor || null };
}

const eventOut = (e: Event) => ({ id: e.id, url: e.url, title: e.title, abstract: e.abstract, likeCount: Number(e.likeCount), score: e.score });

/** The API as one document's caller may use it: every call checked by `access` first. */
const guarded = (api: GatewayApi, access: Access, caller: Caller): GatewayApi => guardedApi<void>(api, access, () => caller);

type Resolve = (api: GatewayApi, args: never) => Promise<unknown>;

/**
 * Resolvers named after the RPCs, each given the API as the request's caller may use it. A refusal
 * (a ConnectError) reads as it does over Connect: the same message, its code. As a GraphQLError it
 * also passes yoga's masking unlogged; anything else is masked and logged.
 */
function resolversOf<R extends { [F in keyof R]: F extends Capitalize<Rpc> | `${Capitalize<Rpc>}Page` ? Resolve : never }>(
  resolvers: R,
  api: GatewayApi,
  access: Access,
) {
  const wrapped: Record<string, unknown> = {};
  for (const [name, resolve] of Object.entries<Resolve>(resolvers)) {
    wrapped[name] = (_: unknown, args: never, context: { request: Request }) =>
      resolve(guarded(api, access, callerOf(context.request.headers)), args).catch((err: unknown) => {
        if (!(err instanceof ConnectError)) throw err;
        // The code as gRPC spells it: INVALID_ARGUMENT.
        throw createGraphQLError(err.rawMessage, { extensions: { code: codeToString(err.code).toUpperCase(), http: { status: 200 } } });
      });
  }
  return wrapped;
}

/** The GraphQL front door of the API: a yoga server to mount at /graphql. */
export function createGraphql(api: GatewayApi, logger: Logger, access: Access) {
  // GraphQL sends null for an optional argument given as null; the API's "unset" is undefined.
  const opt = <T>(v: T | null | undefined) => v ?? undefined;
  const resolvers = {
    Properties: PROPERTIES,
    Query: resolversOf(
      {
        async Recommendation(api: GatewayApi, a: { url: string; limit: number; fallback?: boolean | null; userid?: string | null }) {
          const res = await api.recommendation(
            create(RecommendationRequestSchema, { url: a.url, limit: a.limit, fallback: a.fallback ?? false, userid: a.userid ?? "" }),
          );
          return res.items.map((i) => ({ recommendation: i.recommendation, frequency: Number(i.frequency), source: i.source || null }));
        },
        async ClickMetrics(api: GatewayApi, a: ClickMetricsArgs) {
          return (await clickMetricsPage(api, a)).rows;
        },
        async ClickMetricsPage(api: GatewayApi, a: ClickMetricsArgs & { cursor?: string | null }) {
          return clickMetricsPage(api, a);
        },
        async EventMix(api: GatewayApi, a: { from: string; to: string }) {
          const res = await api.eventMix(create(EventMixRequestSchema, { from: a.from, to: a.to }));
          return { events: res.events.map((e) => ({ event: e.event, clicks: Number(e.clicks) })), complete: res.complete };
        },
        async Trending(api: GatewayApi, a: { window?: string | null; event?: string | null; limit?: number | null }) {
          const res = await api.trending(create(TrendingRequestSchema, { window: a.window ?? "", event: a.event ?? "", limit: opt(a.limit) }));
          return res.urls.map((u) => ({ url: u.url, clicks: Number(u.clicks) }));
        },
        async SimilarContent(api: GatewayApi, a: { userid: string; limit?: number | null; includeSeen?: boolean | null }) {
          const res = await api.similarContent(
            create(SimilarContentRequestSchema, { userid: a.userid, limit: opt(a.limit), includeSeen: a.includeSeen ?? false }),
          );
          return res.items.map((i) => ({ url: i.url, title: i.title, similarity: i.similarity }));
        },
        async RelatedContent(api: GatewayApi, a: { url: string; limit?: number | null; userid?: string | null }) {
          const res = await api.relatedContent(create(RelatedContentRequestSchema, { url: a.url, limit: opt(a.limit), userid: a.userid ?? "" }));
          return res.items.map((i) => ({ url: i.url, title: i.title, similarity: i.similarity }));
        },
        async Events(api: GatewayApi, a: { limit: number; offset?: number | null }) {
          const res = await api.events(create(EventsRequestSchema, { limit: a.limit, offset: opt(a.offset) }));
          return res.items.map(eventOut);
        },
        async EventsLiked(api: GatewayApi, a: { userid: string }) {
          const res = await api.eventsLiked(create(EventsLikedRequestSchema, { userid: a.userid }));
          return res.items.map(eventOut);
        },
        async EventsPage(api: GatewayApi, a: { limit: number; cursor?: string | null }) {
          const res = await api.events(create(EventsRequestSchema, { limit: a.limit, cursor: a.cursor ?? "" }));
          return { items: res.items.map(eventOut), nextCursor: res.nextCursor || null };
        },
        async EventsLikedPage(api: GatewayApi, a: { userid: string; limit?: number | null; cursor?: string | null }) {
          const res = await api.eventsLiked(create(EventsLikedRequestSchema, { userid: a.userid, limit: opt(a.limit), cursor: a.cursor ?? "" }));
          return { items: res.items.map(eventOut), nextCursor: res.nextCursor || null };
        },
        async RecommendedEvents(api: GatewayApi, a: { userid: string; limit?: number | null; includeSeen?: boolean | null }) {
          const res = await api.recommendedEvents(
            create(RecommendedEventsRequestSchema, { userid: a.userid, limit: opt(a.limit), includeSeen: a.includeSeen ?? false }),
          );
          return res.items.map(eventOut);
        },
        async PersonalizedEventSearch(api: GatewayApi, a: { query: string; userid: string; limit?: number | null }) {
          const res = await api.personalizedEventSearch(
            create(PersonalizedEventSearchRequestSchema, { query: a.query, userid: a.userid, limit: opt(a.limit) }),
          );
          return res.items.map(eventOut);
        },
      },
      api,
      access,
    ),
    Mutation: resolversOf(
      {
        async Likes(api: GatewayApi, { liked }: { liked: { userid: string; eventId: string; liked: boolean } }) {
          const res = await api.likes(create(LikesRequestSchema, { liked }));
          return { _source_time: res.sourceTime, userid: res.userid, eventId: res.eventId, liked: res.liked, event_id: res.likeId, duplicate: res.duplicate };
        },
        async AddInterest(api: GatewayApi, { interest }: { interest: { userid: string; text: string } }) {
          const res = await api.addInterest(create(AddInterestRequestSchema, { interest }));
          return { _source_time: res.sourceTime, userid: res.userid, event_id: res.interestId, duplicate: res.duplicate };
        },
        async Content(api: GatewayApi, { event: e }: { event: { url: string; title: string; text: string; id?: string | null; source_time?: string | null } }) {
          const event = { url: e.url, title: e.title, text: e.text, id: opt(e.id), sourceTime: opt(e.source_time) };
          const res = await api.content(create(ContentRequestSchema, { event }));
          return { _source_time: res.sourceTime, url: res.url, title: res.title, event_id: res.eventId, duplicate: res.duplicate };
        },
        async DeleteUser(api: GatewayApi, a: { userid: string }) {
          return { pending: (await api.deleteUser(create(DeleteUserRequestSchema, { userid: a.userid }))).pending };
        },
        async HidePage(api: GatewayApi, a: { url: string; hidden: boolean }) {
          return { pending: (await api.hidePage(create(HidePageRequestSchema, { url: a.url, hidden: a.hidden }))).pending };
        },
        async Clickstream(api: GatewayApi, a: { event?: ClickEventInput | null; click?: ClickEventInput | null }) {
          const c = a.event ?? a.click;
          if (!c || (a.event && a.click)) throw new ConnectError("event or click: exactly one is required", Code.InvalidArgument);
          const event = {
            userid: c.userid,
            url: c.url,
            eventTime: opt(c.event_time),
            eventId: opt(c.event_id),
            event: opt(c.event),
            properties: c.properties ?? {},
          };
          const res = await api.clickstream(create(ClickstreamRequestSchema, { event }));
          return {
            _source_time: res.eventTime,
            userid: res.userid,
            url: res.url,
            event_time: res.eventTime,
            event_id: res.eventId,
            duplicate: res.duplicate,
            event: res.event,
          };
        },
      },
      api,
      access,
    ),
  };

  return createYoga({
    schema: createSchema({ typeDefs, resolvers }),
    graphqlEndpoint: "/graphql",
    // GraphiQL is served at /graphiql (graphql-http.ts).
    graphiql: false,
    landingPage: false,
    logging: logger,
    // Cross-origin calls are allowed (or not) for every route alike, before yoga (cors.ts).
    cors: false,
    plugins: [
      jsonBodiesOnlyPlugin(),
      // A request a browser would send cross-site without a preflight (a form, a plain GET) needs this header.
      useCSRFPrevention({ requestHeaders: [CSRF_HEADER] }),
      maxItemsPlugin(GRAPHQL_LIMITS.items),
      maxTokensPlugin({ n: GRAPHQL_LIMITS.tokens }),
      maxDepthPlugin({ n: GRAPHQL_LIMITS.depth }),
      maxDepthPlugin({ n: GRAPHQL_LIMITS.introspectionDepth, ignoreIntrospection: false }),
      costLimitPlugin({ maxCost: GRAPHQL_LIMITS.cost }),
      maxAliasesPlugin({ n: GRAPHQL_LIMITS.aliases }),
    ],
  });
}

export type GraphqlServer = ReturnType<typeof createGraphql>;
