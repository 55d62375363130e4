import http2 from "node:http2";
import { toJson, type DescService, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import { IngestService } from "@recsys/contracts/ingest/v1/ingest";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { createLogger } from "@recsys/logging";
import { answerEach, startRpcServer, type RpcServer } from "@recsys/server";
import { getIntrospectionQuery } from "graphql";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Access, parseApiKeys } from "./access.js";
import { serveGraphql } from "./graphql-http.js";
import { createGraphql } from "./graphql.js";
import { createGatewayApi, gatewayRoutes, type GatewayApi } from "./handlers.js";

// The reference documents, sent as they are written.
const DOC = {
  recommendation: `query { Recommendation(url: "https://en.wikipedia.org/wiki/Generosity%3A%20An%20Enhancement") { recommendation frequency } }`,
  similarContent: `query { SimilarContent(userid: "f5e9c688-408d-b54f-94aa-493df43dac8c") { url similarity } }`,
  addInterest: `mutation AddInterest($interest: AddInterest!) { AddInterest(interest: $interest) { _source_time } }`,
  addLike: `mutation AddLike($liked: LikedInput!) { Likes(liked: $liked) { _source_time } }`,
  recommendedEvents: `{ RecommendedEvents(userid: "1234") { id title abstract } }`,
  search: `{ PersonalizedEventSearch(query: "kafka", userid: "1234") { id title abstract } }`,
  events: `{ Events(limit: 20) { id title abstract } }`,
  content: `mutation { Content(event: {url: "https://en.wikipedia.org/wiki/Zoop", title: "Zoop", text: "Zoop is a puzzle video game …"}) { title } }`,
  clickstream: `mutation { Clickstream(event: {url: "https://en.wikipedia.org/wiki/Zoop", userid: "1"}) { userid } }`,
};
const INTEREST = { userid: "1234", text: "I want to learn more about Apache Flink and how to use it for real-time stream processing." };

const SAMZA = { id: "42672986", url: "https://en.wikipedia.org/wiki/Apache_Samza", title: "Apache Samza", abstract: "Samza is a stream processing framework.", likeCount: 2n, score: 0.75 };
const KAFKA = { id: "9", url: "https://en.wikipedia.org/wiki/Apache_Kafka", title: "Apache Kafka", abstract: "Kafka is a distributed event store.", likeCount: 0n, score: 0.5 };
const ACCEPTED = { eventId: "e-1", sourceTime: "2024-05-01T10:00:00.000Z", streamSequence: 7n, duplicate: false };
const CLICK_TIME = "2024-05-01T09:00:00.000Z";

/** Every call the fake backends got: `service.method` and the request as JSON (defaults left out). */
let asked: Array<{ rpc: string; req: JsonValue }> = [];
/** When set, the fake ingest refuses the next event with this, as ingest would. */
let ingestRefuses: { field: string; reason: string } | undefined;
const rpcsAsked = () => asked.map((a) => a.rpc);

function recorded<T extends DescService>(service: T, name: string, impl: Partial<ServiceImpl<T>>) {
  return (router: ConnectRouter) => {
    const wrapped: Record<string, unknown> = {};
    for (const m of service.methods) {
      const f = (impl as Record<string, ((req: never) => unknown) | undefined>)[m.localName];
      if (!f) continue;
      wrapped[m.localName] = (req: never) => {
        asked.push({ rpc: `${name}.${m.localName}`, req: toJson(m.input, req) });
        return f(req);
      };
    }
    router.service(service, wrapped as Partial<ServiceImpl<T>>);
  };
}

/** Ingest's answer to one event: refused like ingest refuses an empty field, else accepted. */
function outcome(emptyField?: string) {
  const refusal = ingestRefuses ?? (emptyField ? { field: emptyField, reason: "must not be empty" } : undefined);
  ingestRefuses = undefined;
  return { results: [{ outcome: refusal ? { case: "rejected" as const, value: refusal } : { case: "accepted" as const, value: ACCEPTED } }] };
}

/** profile checks the userid itself; the gateway must pass its refusal on unchanged. */
function checkedUserid(userid: string) {
  if (userid === "") throw new ConnectError("userid: must not be empty", Code.InvalidArgument);
}

const backendTransport = createRouterTransport((router) => {
  recorded(IngestService, "ingest", {
    publishLikes: (req) => outcome(req.likes[0]!.userid === "" ? "userid" : undefined),
    publishInterests: (req) => outcome(req.interests[0]!.text.trim() === "" ? "text" : undefined),
    publishContent: () => outcome(),
    publishClicks: () => {
      const o = outcome();
      const v = o.results[0]!.outcome;
      return { results: [{ outcome: v.case === "accepted" ? { case: "accepted" as const, value: { ...ACCEPTED, eventTime: CLICK_TIME } } : v }] };
    },
  })(router);
  recorded(CovisitService, "covisit", {
    batchRecommendation: async (req) => ({ results: await answerEach(req.requests, async () => ({ items: [{ recommendation: "https://en.wikipedia.org/wiki/Kindness", frequency: 3n }] })) }),
  })(router);
  recorded(ProfileService, "profile", {
    batchSimilarContent: async (req) => ({
      results: await answerEach(req.requests, async (one) => {
        checkedUserid(one.userid);
        return { items: [{ url: SAMZA.url, title: SAMZA.title, similarity: 0.25 }] };
      }),
    }),
    events: () => ({ items: [SAMZA, KAFKA] }),
    eventsById: (req) => ({ items: [SAMZA, KAFKA].filter((p) => req.ids.includes(p.id)) }),
    eventsLiked: (req) => (checkedUserid(req.userid), { items: [SAMZA] }),
    recommendedEvents: (req) => (checkedUserid(req.userid), { items: [SAMZA, KAFKA] }),
    personalizedEventSearch: (req) => (checkedUserid(req.userid), { items: [KAFKA] }),
  })(router);
});

const logger = createLogger("gateway").child({}, { level: "silent" });
const api = createGatewayApi(
  {
    ingest: createClient(IngestService, backendTransport),
    covisit: createClient(CovisitService, backendTransport),
    profile: createClient(ProfileService, backendTransport),
  },
  logger,
  5_000,
);
/** Both front doors on a free port, as main.ts wires them. */
const startGateway = (access: Access) =>
  startRpcServer({
    name: "gateway",
    host: "127.0.0.1",
    port: 0,
    routes: gatewayRoutes(api, access),
    http: serveGraphql(createGraphql(api, logger, access), logger),
    healthy: () => true,
    logger,
  });

// No keys, and more mutations a minute than any test sends.
const open = new Access(new Map(), 1_000_000, logger);
let server: RpcServer;
let base: string;
let gateway: ReturnType<typeof createClient<typeof GatewayService>>;

beforeAll(async () => {
  server = await startGateway(open);
  base = `http://127.0.0.1:${server.port}`;
  gateway = createClient(GatewayService, createConnectTransport({ baseUrl: base, httpVersion: "1.1" }));
});
afterAll(async () => server?.close());
beforeEach(() => {
  asked = [];
  ingestRefuses = undefined;
});

interface Answer {
  status: number;
  data?: Record<string, any> | null;
  errors?: Array<{ message: string; extensions?: { code?: string } }>;
}

async function gql(query: string, variables?: Record<string, unknown>): Promise<Answer> {
  const res = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, ...((await res.json()) as object) };
}

/** The data of an answer that must have succeeded. */
async function data(query: string, variables?: Record<string, unknown>) {
  const answer = await gql(query, variables);
  expect(answer.errors).toBeUndefined();
  expect(answer.status).toBe(200);
  return answer.data!;
}

describe("the reference documents, verbatim", () => {
  it("Recommendation asks covisit for the url with the default limit", async () => {
    expect(await data(DOC.recommendation)).toEqual({ Recommendation: [{ recommendation: "https://en.wikipedia.org/wiki/Kindness", frequency: 3 }] });
    expect(asked).toEqual([{ rpc: "covisit.batchRecommendation", req: { requests: [{ url: "https://en.wikipedia.org/wiki/Generosity%3A%20An%20Enhancement", limit: 10 }] } }]);
  });

  it("SimilarContent asks profile for the user", async () => {
    expect(await data(DOC.similarContent)).toEqual({ SimilarContent: [{ url: SAMZA.url, similarity: 0.25 }] });
    expect(asked).toEqual([{ rpc: "profile.batchSimilarContent", req: { requests: [{ userid: "f5e9c688-408d-b54f-94aa-493df43dac8c", limit: 10 }] } }]);
  });

  it("AddInterest publishes the interest", async () => {
    expect(await data(DOC.addInterest, { interest: INTEREST })).toEqual({ AddInterest: { _source_time: ACCEPTED.sourceTime } });
    expect(asked).toEqual([{ rpc: "ingest.publishInterests", req: { interests: [INTEREST] } }]);
  });

  it("AddLike with the page id as a JSON number checks the page, then publishes the like with the id as a string", async () => {
    expect(await data(DOC.addLike, { liked: { userid: "1234", eventId: 42672986, liked: true } })).toEqual({ Likes: { _source_time: ACCEPTED.sourceTime } });
    expect(asked).toEqual([
      { rpc: "profile.eventsById", req: { ids: ["42672986"] } },
      { rpc: "ingest.publishLikes", req: { likes: [{ userid: "1234", pageId: "42672986", liked: true }] } },
    ]);
  });

  it("AddLike with the page id as a string and liked false publishes an unlike", async () => {
    await data(DOC.addLike, { liked: { userid: "1234", eventId: "42672986", liked: false } });
    // JSON leaves out false: the like reached ingest with liked unset, i.e. false.
    expect(asked[1]).toEqual({ rpc: "ingest.publishLikes", req: { likes: [{ userid: "1234", pageId: "42672986" }] } });
  });

  it("RecommendedEvents asks profile with the default limit", async () => {
    expect(await data(DOC.recommendedEvents)).toEqual({
      RecommendedEvents: [SAMZA, KAFKA].map((p) => ({ id: p.id, title: p.title, abstract: p.abstract })),
    });
    expect(asked).toEqual([{ rpc: "profile.recommendedEvents", req: { userid: "1234", limit: 10 } }]);
  });

  it("PersonalizedEventSearch passes the query", async () => {
    expect(await data(DOC.search)).toEqual({ PersonalizedEventSearch: [{ id: KAFKA.id, title: KAFKA.title, abstract: KAFKA.abstract }] });
    expect(asked).toEqual([{ rpc: "profile.personalizedEventSearch", req: { query: "kafka", userid: "1234", limit: 10 } }]);
  });

  it("Events asks for the limit from offset 0", async () => {
    expect(await data(DOC.events)).toEqual({ Events: [SAMZA, KAFKA].map((p) => ({ id: p.id, title: p.title, abstract: p.abstract })) });
    // offset 0 is the JSON default, left out.
    expect(asked).toEqual([{ rpc: "profile.events", req: { limit: 20 } }]);
  });

  it("Content publishes the page", async () => {
    expect(await data(DOC.content)).toEqual({ Content: { title: "Zoop" } });
    expect(asked).toEqual([
      { rpc: "ingest.publishContent", req: { pages: [{ url: "https://en.wikipedia.org/wiki/Zoop", title: "Zoop", text: "Zoop is a puzzle video game …" }] } },
    ]);
  });

  it("Clickstream publishes the click given as event", async () => {
    expect(await data(DOC.clickstream)).toEqual({ Clickstream: { userid: "1" } });
    expect(asked).toEqual([{ rpc: "ingest.publishClicks", req: { clicks: [{ userid: "1", url: "https://en.wikipedia.org/wiki/Zoop" }] } }]);
  });
});

describe("GraphQL results", () => {
  it("Clickstream takes the click as click too, and answers every field", async () => {
    const doc = `mutation { Clickstream(click: {url: "https://e.org/a", userid: "u", event_time: "${CLICK_TIME}", event_id: "c-1"}) { _source_time userid url event_time event_id duplicate } }`;
    expect(await data(doc)).toEqual({
      Clickstream: { _source_time: CLICK_TIME, userid: "u", url: "https://e.org/a", event_time: CLICK_TIME, event_id: ACCEPTED.eventId, duplicate: false },
    });
    expect(asked).toEqual([{ rpc: "ingest.publishClicks", req: { clicks: [{ userid: "u", url: "https://e.org/a", eventTime: CLICK_TIME, eventId: "c-1" }] } }]);
  });

  it("Likes, AddInterest and Content answer every field", async () => {
    const liked = await data(`mutation { Likes(liked: {userid: "1234", eventId: 42672986, liked: true}) { _source_time userid eventId liked event_id duplicate } }`);
    expect(liked.Likes).toEqual({ _source_time: ACCEPTED.sourceTime, userid: "1234", eventId: "42672986", liked: true, event_id: ACCEPTED.eventId, duplicate: false });
    const interest = await data(DOC.addInterest.replace("_source_time", "_source_time userid event_id duplicate"), { interest: INTEREST });
    expect(interest.AddInterest).toEqual({ _source_time: ACCEPTED.sourceTime, userid: "1234", event_id: ACCEPTED.eventId, duplicate: false });
    const content = await data(
      `mutation { Content(event: {url: "https://e.org/z", title: "Z", text: "z", id: "77", source_time: "2024-01-01T00:00:00Z"}) { _source_time url title event_id duplicate } }`,
    );
    expect(content.Content).toEqual({ _source_time: ACCEPTED.sourceTime, url: "https://e.org/z", title: "Z", event_id: ACCEPTED.eventId, duplicate: false });
    expect(asked.at(-1)).toEqual({
      rpc: "ingest.publishContent",
      req: { pages: [{ url: "https://e.org/z", id: "77", title: "Z", text: "z", sourceTime: "2024-01-01T00:00:00Z" }] },
    });
  });

  it("the event lists answer every field, and pass limit and offset on", async () => {
    const fields = "id url title abstract likeCount";
    const got = await data(`{
      Events(limit: 5, offset: 10) { ${fields} }
      EventsLiked(userid: "1234") { ${fields} }
      RecommendedEvents(userid: "1234", limit: 3) { ${fields} score }
      PersonalizedEventSearch(query: "kafka", userid: "1234", limit: null) { ${fields} score }
    }`);
    const page = ({ score: _, ...p }: typeof SAMZA) => ({ ...p, likeCount: Number(p.likeCount) });
    expect(got).toEqual({
      Events: [page(SAMZA), page(KAFKA)],
      EventsLiked: [page(SAMZA)],
      RecommendedEvents: [SAMZA, KAFKA].map((p) => ({ ...page(p), score: p.score })),
      PersonalizedEventSearch: [{ ...page(KAFKA), score: KAFKA.score }],
    });
    expect(asked.map((a) => a.req)).toEqual([{ limit: 5, offset: 10 }, { userid: "1234" }, { userid: "1234", limit: 3 }, { query: "kafka", userid: "1234", limit: 10 }]);
  });

  it("introspection answers with the schema", async () => {
    const got = await data(getIntrospectionQuery());
    const types = (got.__schema.types as Array<{ name: string }>).map((t) => t.name);
    expect(types).toEqual(expect.arrayContaining(["LikedInput", "AddInterest", "ContentEvent", "ClickEvent", "LikeAdded", "PersonalizedEventSearch"]));
    const fieldsOf = (name: string) => (got.__schema.types as Array<{ name: string; fields: Array<{ name: string }> }>).find((t) => t.name === name)!.fields.map((f) => f.name);
    expect(fieldsOf("Query")).toEqual(["Recommendation", "SimilarContent", "Events", "EventsLiked", "RecommendedEvents", "PersonalizedEventSearch"]);
    expect(fieldsOf("Mutation")).toEqual(["Likes", "AddInterest", "Content", "Clickstream"]);
  });
});

describe("GraphQL refusals", () => {
  it("a like of an unknown page is NOT_FOUND and publishes nothing", async () => {
    const answer = await gql(DOC.addLike, { liked: { userid: "1234", eventId: "404", liked: true } });
    expect(answer.status).toBe(200);
    expect(answer.data).toEqual({ Likes: null });
    expect(answer.errors).toMatchObject([{ message: "liked.eventId: no page with id 404", extensions: { code: "NOT_FOUND" } }]);
    expect(rpcsAsked()).toEqual(["profile.eventsById"]);
  });

  it("a bad limit or offset names the argument and reaches no backend", async () => {
    for (const [doc, message] of [
      [`{ Events(limit: 0) { id } }`, "limit: must be between 1 and 1000"],
      [`{ Events(limit: 1001) { id } }`, "limit: must be between 1 and 1000"],
      [`{ Events(limit: 1, offset: -1) { id } }`, "offset: must be between 0 and 1000000"],
      [`{ RecommendedEvents(userid: "1234", limit: 0) { id } }`, "limit: must be between 1 and 1000"],
      [`{ Recommendation(url: "https://e.org/a", limit: 5000) { frequency } }`, "limit: must be between 1 and 1000"],
    ]) {
      const answer = await gql(doc!);
      expect(answer.errors, doc).toMatchObject([{ message, extensions: { code: "INVALID_ARGUMENT" } }]);
    }
    expect(asked).toEqual([]);
  });

  it("refusals by ingest name the field as the client sent it", async () => {
    const noUser = await gql(DOC.addLike, { liked: { userid: "", eventId: "42672986", liked: true } });
    expect(noUser.errors).toMatchObject([{ message: "liked.userid: must not be empty", extensions: { code: "INVALID_ARGUMENT" } }]);

    ingestRefuses = { field: "page_id", reason: "must not contain whitespace or control characters" };
    const badPage = await gql(DOC.addLike, { liked: { userid: "1234", eventId: "42672986", liked: true } });
    expect(badPage.errors).toMatchObject([{ message: "liked.eventId: must not contain whitespace or control characters" }]);

    const noText = await gql(DOC.addInterest, { interest: { userid: "1234", text: " " } });
    expect(noText.errors).toMatchObject([{ message: "interest.text: must not be empty", extensions: { code: "INVALID_ARGUMENT" } }]);

    ingestRefuses = { field: "url", reason: "must be an absolute http(s) URL" };
    const badUrl = await gql(DOC.clickstream);
    expect(badUrl.errors).toMatchObject([{ message: "event.url: must be an absolute http(s) URL", extensions: { code: "INVALID_ARGUMENT" } }]);
  });

  it("an empty page id is refused before any backend is asked", async () => {
    const answer = await gql(DOC.addLike, { liked: { userid: "1234", eventId: "", liked: true } });
    expect(answer.errors).toMatchObject([{ message: "liked.eventId: must not be empty", extensions: { code: "INVALID_ARGUMENT" } }]);
    expect(asked).toEqual([]);
  });

  it("profile's own refusal reaches the client unchanged", async () => {
    const answer = await gql(`{ EventsLiked(userid: "") { id } }`);
    expect(answer.errors).toMatchObject([{ message: "userid: must not be empty", extensions: { code: "INVALID_ARGUMENT" } }]);
  });

  it("Clickstream wants exactly one of event and click", async () => {
    const click = `{url: "https://e.org/a", userid: "u"}`;
    for (const args of [`event: ${click}, click: ${click}`, ""]) {
      const answer = await gql(`mutation { Clickstream${args ? `(${args})` : ""} { userid } }`);
      expect(answer.errors).toMatchObject([{ message: "event or click: exactly one is required", extensions: { code: "INVALID_ARGUMENT" } }]);
    }
    expect(asked).toEqual([]);
  });

  it("an unknown field and a bad variable are GraphQL errors, not a 500, and reach no backend", async () => {
    const unknownField = await gql(`{ Events(limit: 1) { id nope } }`);
    expect(unknownField.status).not.toBe(500);
    expect(unknownField.errors?.[0]?.message).toMatch(/Cannot query field "nope"/);

    const badVariable = await gql(DOC.addLike, { liked: { userid: "1234", eventId: 4.5, liked: true } });
    expect(badVariable.status).not.toBe(500);
    expect(badVariable.errors?.[0]?.message).toMatch(/eventId/);

    const missingVariable = await gql(DOC.addInterest, {});
    expect(missingVariable.status).not.toBe(500);
    expect(missingVariable.errors?.[0]?.message).toMatch(/\$interest/);

    const notGraphql = await gql(`{ Events(limit: 1) { id `);
    expect(notGraphql.status).not.toBe(500);
    expect(notGraphql.errors?.[0]?.message).toMatch(/Syntax Error/);
    expect(asked).toEqual([]);
  });

  it("an error that is no refusal is masked", async () => {
    const failing = { events: async () => Promise.reject(new Error("connection to 10.0.0.7 refused, password=hunter2")) } as unknown as GatewayApi;
    const res = await createGraphql(failing, logger).fetch("http://gateway/graphql", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: DOC.events }),
    });
    const body = await res.text();
    expect(JSON.parse(body).errors).toMatchObject([{ message: "Unexpected error.", extensions: { code: "INTERNAL_SERVER_ERROR" } }]);
    expect(body).not.toMatch(/hunter2|10\.0\.0\.7/);
  });
});

describe("GraphQL limits", () => {
  const nested = (depth: number, leaf: string) => "ofType { ".repeat(depth) + leaf + " }".repeat(depth);

  it("a query deeper than 8 is refused, introspection included", async () => {
    // __type(1) fields(2) type(3) ofType(4..) name
    const deep = await gql(`{ __type(name: "Query") { fields { type { ${nested(6, "name")} } } } }`);
    expect(deep.status).not.toBe(500);
    expect(deep.errors?.[0]?.message).toMatch(/depth limit of 8 exceeded, found 10/);
    const ok = await data(`{ __type(name: "Query") { fields { type { ${nested(4, "name")} } } } }`);
    expect(ok.__type.fields.length).toBe(6);
  });

  it("__schema may go as deep as GraphQL's own introspection query, no deeper", async () => {
    const deep = await gql(`{ __schema { types { fields { type { ${nested(30, "name")} } } } } }`);
    expect(deep.errors?.[0]?.message).toMatch(/depth limit of 21 exceeded/);
  });

  it("more than 15 aliases are refused", async () => {
    const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: Events(limit: 1) { id }`).join(" ")} }`;
    expect(Object.keys(await data(aliases(15)))).toHaveLength(15);
    asked = [];
    expect((await gql(aliases(16))).errors?.[0]?.message).toMatch(/Aliases limit of 15 exceeded/);
    expect(asked).toEqual([]);
  });

  it("a document costing more than 5000 is refused", async () => {
    // Shallow and short, but each spread is the whole list again.
    const doc = `{ ${"...F1 ".repeat(20)}} fragment F1 on Query { ${"...F0 ".repeat(8)}} fragment F0 on Query { Events(limit: 1000) { id url title abstract likeCount } }`;
    const answer = await gql(doc);
    expect(answer.errors?.[0]?.message).toMatch(/Cost limit of 5000 exceeded/);
    expect(asked).toEqual([]);
  });

  it("a document of more than 1000 tokens is refused", async () => {
    const answer = await gql(`{ Events(limit: 1) { ${"id ".repeat(1000)}} }`);
    expect(answer.errors?.[0]?.message).toMatch(/Token limit of 1000 exceeded/);
    expect(asked).toEqual([]);
  });

  it("a body over 64 KiB gets 413 with a GraphQL error; one just under is answered", async () => {
    const post = (variables: object) =>
      fetch(`${base}/graphql`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query: DOC.events, variables }) });
    const big = await post({ pad: "x".repeat(64 * 1024) });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ errors: [{ message: "request body: must be at most 65536 bytes", extensions: { code: "PAYLOAD_TOO_LARGE" } }] });
    expect(asked).toEqual([]);
    const under = await post({ pad: "x".repeat(60 * 1024) });
    expect(under.status).toBe(200);
    expect(((await under.json()) as Answer).data?.Events).toHaveLength(2);
  });
});

describe("HTTP", () => {
  it("GET /graphiql is the GraphiQL page for /graphql", async () => {
    const res = await fetch(`${base}/graphiql`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const html = await res.text();
    expect(html).toMatch(/graphiql/i);
    expect(html).toContain(`"endpoint":"/graphql"`);
  });

  it("GET /graphql answers queries but not mutations", async () => {
    const query = await fetch(`${base}/graphql?query=${encodeURIComponent(DOC.events)}`, { headers: { accept: "application/json" } });
    expect(((await query.json()) as Answer).data?.Events).toHaveLength(2);
    asked = [];
    const mutation = await fetch(`${base}/graphql?query=${encodeURIComponent(DOC.clickstream)}`, { headers: { accept: "application/json" } });
    expect(mutation.status).toBe(405);
    expect(asked).toEqual([]);
  });

  it("GraphQL answers over HTTP/2 (h2c) too", async () => {
    const session = http2.connect(base);
    try {
      const stream = session.request({ ":method": "POST", ":path": "/graphql", "content-type": "application/json", accept: "application/json" });
      stream.end(JSON.stringify({ query: DOC.events }));
      const [status, body] = await new Promise<[number, string]>((resolve, reject) => {
        let status = 0;
        let body = "";
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("data", (c: Buffer) => (body += c.toString()));
        stream.on("end", () => resolve([status, body]));
        stream.on("error", reject);
      });
      expect(status).toBe(200);
      expect(JSON.parse(body).data.Events).toHaveLength(2);
    } finally {
      session.close();
    }
  });

  it("/healthz, Connect and gRPC answer beside GraphQL", async () => {
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: "SERVING", service: "gateway" });
    const grpc = createClient(GatewayService, createGrpcTransport({ baseUrl: base }));
    expect((await grpc.recommendation({ url: "https://e.org/a" })).items).toHaveLength(1);
  });
});

describe("Connect", () => {
  it("Likes and AddInterest answer as their GraphQL fields do", async () => {
    const like = await gateway.likes({ liked: { userid: "1234", eventId: "42672986", liked: true } });
    const graphqlLike = (await data(`mutation { Likes(liked: {userid: "1234", eventId: "42672986", liked: true}) { _source_time userid eventId liked event_id duplicate } }`)).Likes;
    expect({ _source_time: like.sourceTime, userid: like.userid, eventId: like.eventId, liked: like.liked, event_id: like.likeId, duplicate: like.duplicate }).toEqual(graphqlLike);
    expect(like.likeId).toBe(ACCEPTED.eventId);

    const interest = await gateway.addInterest({ interest: INTEREST });
    const graphqlInterest = (await data(DOC.addInterest.replace("_source_time", "_source_time userid event_id duplicate"), { interest: INTEREST })).AddInterest;
    expect({ _source_time: interest.sourceTime, userid: interest.userid, event_id: interest.interestId, duplicate: interest.duplicate }).toEqual(graphqlInterest);
    expect(interest.interestId).toBe(ACCEPTED.eventId);
  });

  it("the event lists answer as their GraphQL fields do", async () => {
    const fields = "id url title abstract likeCount score";
    const graphql = await data(`{
      Events(limit: 5) { id url title abstract likeCount }
      EventsLiked(userid: "1234") { id url title abstract likeCount }
      RecommendedEvents(userid: "1234") { ${fields} }
      PersonalizedEventSearch(query: "kafka", userid: "1234") { ${fields} }
    }`);
    const plain = (items: Array<{ id: string; url: string; title: string; abstract: string; likeCount: bigint; score: number }>, score = true) =>
      items.map((e) => ({ id: e.id, url: e.url, title: e.title, abstract: e.abstract, likeCount: Number(e.likeCount), ...(score ? { score: e.score } : {}) }));
    expect(plain((await gateway.events({ limit: 5 })).items, false)).toEqual(graphql.Events);
    expect(plain((await gateway.eventsLiked({ userid: "1234" })).items, false)).toEqual(graphql.EventsLiked);
    expect(plain((await gateway.recommendedEvents({ userid: "1234" })).items)).toEqual(graphql.RecommendedEvents);
    expect(plain((await gateway.personalizedEventSearch({ query: "kafka", userid: "1234" })).items)).toEqual(graphql.PersonalizedEventSearch);
    expect(graphql.RecommendedEvents).toEqual([SAMZA, KAFKA].map((p) => ({ ...p, likeCount: Number(p.likeCount) })));
  });

  it("refuses as GraphQL does", async () => {
    const refusal = (p: Promise<unknown>) =>
      p.then(
        () => "ok",
        (e: unknown) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
      );
    expect(await refusal(gateway.events({}))).toBe("InvalidArgument: limit: must be between 1 and 1000");
    expect(await refusal(gateway.events({ limit: 1, offset: 1_000_001 }))).toBe("InvalidArgument: offset: must be between 0 and 1000000");
    expect(await refusal(gateway.likes({}))).toBe("InvalidArgument: liked: is required");
    expect(await refusal(gateway.addInterest({}))).toBe("InvalidArgument: interest: is required");
    expect(await refusal(gateway.likes({ liked: { userid: "1234", eventId: "404", liked: true } }))).toBe("NotFound: liked.eventId: no page with id 404");
    expect(rpcsAsked()).toEqual(["profile.eventsById"]);
  });

  it("the first four RPCs still work", async () => {
    expect((await gateway.recommendation({ url: "https://e.org/a", limit: 2 })).items).toEqual([
      expect.objectContaining({ recommendation: "https://en.wikipedia.org/wiki/Kindness", frequency: 3n }),
    ]);
    expect((await gateway.similarContent({ userid: "u" })).items).toEqual([expect.objectContaining({ url: SAMZA.url, similarity: 0.25 })]);
    expect(await gateway.clickstream({ event: { userid: "u", url: "https://e.org/a" } })).toMatchObject({ eventId: ACCEPTED.eventId, eventTime: CLICK_TIME, userid: "u" });
    expect(await gateway.content({ event: { url: "https://e.org/a", title: "A", text: "a" } })).toMatchObject({ eventId: ACCEPTED.eventId, sourceTime: ACCEPTED.sourceTime });
    expect(rpcsAsked()).toEqual(["covisit.batchRecommendation", "profile.batchSimilarContent", "ingest.publishClicks", "ingest.publishContent"]);
  });
});

describe("API keys and rate limits", () => {
  const READ_KEY = "read-key-0123456789";
  const WRITE_KEY = "write-key-0123456789";
  let guardedServer: RpcServer;
  let guardedBase: string;

  beforeAll(async () => {
    const access = new Access(parseApiKeys(`${READ_KEY}:read, ${WRITE_KEY}:write`), 3, logger);
    guardedServer = await startGateway(access);
    guardedBase = `http://127.0.0.1:${guardedServer.port}`;
  });
  afterAll(async () => guardedServer?.close());

  const connectCall = async (method: string, body: object, key?: string) => {
    const res = await fetch(`${guardedBase}/recsys.gateway.v1.GatewayService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { "x-api-key": key } : {}) },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as { code?: string; message?: string } };
  };
  const graphqlCall = async (query: string, key?: string) => {
    const res = await fetch(`${guardedBase}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { "x-api-key": key } : {}) },
      body: JSON.stringify({ query }),
    });
    return (await res.json()) as Answer;
  };
  const click = { event: { userid: "1", url: "https://en.wikipedia.org/wiki/Zoop" } };

  it("refuse a call without a valid key at both doors, and reach no backend", async () => {
    expect((await connectCall("Recommendation", { url: "https://e.org/a" })).body).toMatchObject({ code: "unauthenticated", message: "x-api-key: a valid API key is required" });
    expect((await connectCall("Recommendation", { url: "https://e.org/a" }, "not-a-configured-key")).body).toMatchObject({ code: "unauthenticated" });
    expect((await graphqlCall(DOC.events)).errors).toMatchObject([{ message: "x-api-key: a valid API key is required", extensions: { code: "UNAUTHENTICATED" } }]);
    expect(asked).toEqual([]);
  });

  it("let a read key query but not write, and a write key do both", async () => {
    expect((await connectCall("Recommendation", { url: "https://e.org/a" }, READ_KEY)).status).toBe(200);
    expect((await graphqlCall(DOC.events, READ_KEY)).data?.Events).toHaveLength(2);
    asked = [];
    expect((await connectCall("Clickstream", click, READ_KEY)).body).toMatchObject({ code: "permission_denied" });
    expect((await graphqlCall(DOC.clickstream, READ_KEY)).errors).toMatchObject([{ extensions: { code: "PERMISSION_DENIED" } }]);
    expect(asked).toEqual([]);
    expect((await graphqlCall(DOC.clickstream, WRITE_KEY)).data).toEqual({ Clickstream: { userid: "1" } });
  });

  it("limit mutations per client, across both doors, and never queries", async () => {
    // The write key used one of its 3 mutations above; two more pass, the next is refused.
    expect((await connectCall("Clickstream", click, WRITE_KEY)).status).toBe(200);
    expect((await graphqlCall(DOC.clickstream, WRITE_KEY)).errors).toBeUndefined();
    asked = [];
    expect((await connectCall("Clickstream", click, WRITE_KEY)).body).toMatchObject({ code: "resource_exhausted", message: expect.stringMatching(/^rate limit: at most 3 mutations a minute per client/) });
    expect((await graphqlCall(DOC.clickstream, WRITE_KEY)).errors).toMatchObject([{ extensions: { code: "RESOURCE_EXHAUSTED" } }]);
    expect(asked).toEqual([]);
    for (let i = 0; i < 5; i++) expect((await connectCall("Recommendation", { url: "https://e.org/a" }, WRITE_KEY)).status).toBe(200);
  });

  it("refuse a malformed key list at start", () => {
    expect(() => parseApiKeys("short:write")).toThrow(/GATEWAY_API_KEYS/);
    expect(() => parseApiKeys("a-long-enough-key-123:admin")).toThrow(/GATEWAY_API_KEYS/);
    expect(parseApiKeys("")).toEqual(new Map());
  });
});
