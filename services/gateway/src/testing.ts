// Shared by the gateway's test files: fake ingest, covisit and profile that say what they were
// asked, the gateway over them on a free port, and the reference documents sent to it.
import { toJson, type DescService, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AnalyticsService } from "@recsys/contracts/analytics/v1/analytics";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import { IngestService } from "@recsys/contracts/ingest/v1/ingest";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { createLogger } from "@recsys/logging";
import { answerEach, startRpcServer, type RpcServer } from "@recsys/server";
import { afterAll, beforeAll, expect } from "vitest";
import { Access } from "./access.js";
import { corsFor } from "./cors.js";
import { serveGraphql } from "./graphql-http.js";
import { createGraphql } from "./graphql.js";
import { createGatewayApi, gatewayPlainJson, gatewayRoutes } from "./handlers.js";
import { DOC } from "./reference-documents.js";

export { DOC };

export const INTEREST = { userid: "1234", text: "I want to learn more about Apache Flink and how to use it for real-time stream processing." };

export const SAMZA = {
  id: "42672986",
  url: "https://en.wikipedia.org/wiki/Apache_Samza",
  title: "Apache Samza",
  abstract: "Samza is a stream processing framework.",
  likeCount: 2n,
  score: 0.75,
};
export const KAFKA = {
  id: "9",
  url: "https://en.wikipedia.org/wiki/Apache_Kafka",
  title: "Apache Kafka",
  abstract: "Kafka is a distributed event store.",
  likeCount: 0n,
  score: 0.5,
};
export const METRIC = {
  windowStart: "2024-05-01T09:00:00.000Z",
  windowEnd: "2024-05-01T09:05:00.000Z",
  userid: "1",
  event: "view",
  url: "https://e.org/a",
  eventCount: 2n,
};
/** What the fake analytics says trends: the covisit fake's one recommendation among them. */
/** profile's RelatedContent of https://e.org/a (the only page it has): the co-visited page first. */
export const RELATED = [
  { url: "https://en.wikipedia.org/wiki/Kindness", title: "Kindness", similarity: 0.95 },
  { url: "https://e.org/r1", title: "R1", similarity: 0.9124 },
];
export const TRENDING = [
  { url: "https://en.wikipedia.org/wiki/Kindness", clicks: 9n },
  { url: "https://e.org/a", clicks: 8n },
  { url: "https://e.org/t1", clicks: 5n },
  { url: "https://e.org/t2", clicks: 4n },
];
export const ACCEPTED = { eventId: "e-1", sourceTime: "2024-05-01T10:00:00.000Z", streamSequence: 7n, duplicate: false };
export const CLICK_TIME = "2024-05-01T09:00:00.000Z";

/** A call one of the fake backends got: `service.method` and the request as JSON (defaults left out). */
export interface BackendCall {
  rpc: string;
  req: JsonValue;
}
/** A refusal of one field of an event, as ingest gives it. */
export interface IngestRefusal {
  field: string;
  reason: string;
}
/** How a test file hears what the fake backends were asked, and makes ingest refuse. */
export interface BackendLog {
  record(call: BackendCall): void;
  /** Asked once for each event ingest gets; a refusal given is ingest's answer instead of accepting it. */
  takeRefusal?(): IngestRefusal | undefined;
}

function recorded<T extends DescService>(log: BackendLog, service: T, name: string, impl: Partial<ServiceImpl<T>>) {
  return (router: ConnectRouter) => {
    const wrapped: Record<string, unknown> = {};
    for (const m of service.methods) {
      const f = (impl as Record<string, ((req: never) => unknown) | undefined>)[m.localName];
      if (!f) continue;
      wrapped[m.localName] = (req: never) => {
        log.record({ rpc: `${name}.${m.localName}`, req: toJson(m.input, req) });
        return f(req);
      };
    }
    router.service(service, wrapped as Partial<ServiceImpl<T>>);
  };
}

/** profile checks the userid itself; the gateway must pass its refusal on unchanged. */
function checkedUserid(userid: string) {
  if (userid === "") throw new ConnectError("userid: must not be empty", Code.InvalidArgument);
}

function fakeBackends(log: BackendLog) {
  /** Ingest's answer to one event: refused like ingest refuses an empty field, else accepted. */
  function outcome(emptyField?: string) {
    const refusal = log.takeRefusal?.() ?? (emptyField ? { field: emptyField, reason: "must not be empty" } : undefined);
    return { results: [{ outcome: refusal ? { case: "rejected" as const, value: refusal } : { case: "accepted" as const, value: ACCEPTED } }] };
  }

  return createRouterTransport((router) => {
    recorded(log, IngestService, "ingest", {
      publishLikes: (req) => outcome(req.likes[0]!.userid === "" ? "userid" : undefined),
      publishInterests: (req) => outcome(req.interests[0]!.text.trim() === "" ? "text" : undefined),
      publishContent: () => outcome(),
      publishClicks: () => {
        const o = outcome();
        const v = o.results[0]!.outcome;
        return { results: [{ outcome: v.case === "accepted" ? { case: "accepted" as const, value: { ...ACCEPTED, eventTime: CLICK_TIME } } : v }] };
      },
      deleteUser: () => ({ eventId: "d-1", streamSequence: 8n, pending: [] }),
      // The analytics consumers lag behind.
      setPageVisibility: () => ({ eventId: "v-1", streamSequence: 9n, pending: ["analytics-visibility"] }),
    })(router);
    recorded(log, CovisitService, "covisit", {
      // The reader clicked t1 lately.
      recentPages: (req) => {
        const recent = req.userid === "reader" ? ["https://e.org/t1"] : [];
        return { urls: req.urls.length > 0 ? req.urls.filter((u) => recent.includes(u)) : recent };
      },
      batchRecommendation: async (req) => ({
        results: await answerEach(req.requests, async () => ({ items: [{ recommendation: "https://en.wikipedia.org/wiki/Kindness", frequency: 3n }] })),
      }),
    })(router);
    recorded(log, ProfileService, "profile", {
      batchSimilarContent: async (req) => ({
        results: await answerEach(req.requests, async (one) => {
          checkedUserid(one.userid);
          return { items: [{ url: SAMZA.url, title: SAMZA.title, similarity: 0.25 }] };
        }),
      }),
      // Two pages of one page each: the first answers a cursor.
      events: (req) =>
        req.cursor === "" && req.limit === 1 ? { items: [SAMZA], nextCursor: "c1" } : { items: req.cursor === "c1" ? [KAFKA] : [SAMZA, KAFKA] },
      eventsById: (req) => ({ items: [SAMZA, KAFKA].filter((p) => req.ids.includes(p.id)) }),
      eventsLiked: (req) => (checkedUserid(req.userid), { items: [SAMZA] }),
      recommendedEvents: (req) => (checkedUserid(req.userid), { items: [SAMZA, KAFKA] }),
      personalizedEventSearch: (req) => (checkedUserid(req.userid), { items: [KAFKA] }),
      // profile knows user 1234 and the page https://e.org/a.
      exists: (req) => ({ user: req.userid === "1234", page: req.url === "https://e.org/a" }),
      relatedContent: (req) => {
        if (req.url !== "https://e.org/a") throw new ConnectError(`url: no page stored at ${req.url}`, Code.NotFound);
        return { items: RELATED };
      },
    })(router);
    recorded(log, AnalyticsService, "analytics", {
      clickMetrics: () => ({ rows: [METRIC] }),
      eventMix: () => ({ events: [{ event: "view", clicks: 7n }], complete: true }),
      trending: () => ({ urls: TRENDING, from: "2024-05-01T08:00:00.000Z", to: "2024-05-01T09:00:00.000Z" }),
    })(router);
  });
}

export const logger = createLogger("gateway").child({}, { level: "silent" });

/** Starts both front doors of a gateway over the fake backends on a free port, as main.ts wires them. */
export function gatewayOverFakeBackends(log: BackendLog) {
  const backendTransport = fakeBackends(log);
  const api = createGatewayApi(
    {
      analytics: createClient(AnalyticsService, backendTransport),
      ingest: createClient(IngestService, backendTransport),
      covisit: createClient(CovisitService, backendTransport),
      profile: createClient(ProfileService, backendTransport),
    },
    logger,
    5_000,
  );
  return (access: Access, options: { corsOrigins?: string[]; graphiql?: boolean } = {}) => {
    const cors = corsFor(options.corsOrigins ?? []);
    const graphql = serveGraphql(createGraphql(api, logger, access), logger, { graphiql: options.graphiql ?? true });
    return startRpcServer({
      name: "gateway",
      host: "127.0.0.1",
      port: 0,
      routes: gatewayRoutes(api, access),
      plainJson: gatewayPlainJson(api, access),
      http: (req, res) => cors(req, res) || graphql(req, res),
      healthy: () => true,
      logger,
    });
  };
}

/** The address of the test file's open gateway, once `serveOpenGateway` has started it. */
export let base: string;
/** A Connect client of the test file's open gateway. */
export let gateway: ReturnType<typeof createClient<typeof GatewayService>>;

/** Starts a gateway that needs no key before the test file's tests, and closes it after them. */
export function serveOpenGateway(startGateway: (access: Access) => Promise<RpcServer>) {
  // No credentials, and more calls a minute than any test sends.
  const open = Access.open(logger);
  let server: RpcServer;
  beforeAll(async () => {
    server = await startGateway(open);
    base = `http://127.0.0.1:${server.port}`;
    gateway = createClient(GatewayService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
  });
  afterAll(async () => server?.close());
}

export interface Answer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read the data of an answer field by field
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: { code?: string } }>;
}

export async function gql(query: string, variables?: Record<string, unknown>): Promise<Answer> {
  const res = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, ...((await res.json()) as object) };
}

/** The data of an answer that must have succeeded. */
export async function data(query: string, variables?: Record<string, unknown>) {
  const answer = await gql(query, variables);
  expect(answer.errors).toBeUndefined();
  expect(answer.status).toBe(200);
  return answer.data!;
}
