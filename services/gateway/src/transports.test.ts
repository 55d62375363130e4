// The same API at every door: GraphiQL, GET and HTTP/2 for GraphQL, and Connect and gRPC
// answering and refusing as GraphQL does.
import http2 from "node:http2";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { GatewayService } from "@recsys/contracts/gateway/v1/gateway";
import { beforeEach, describe, expect, it } from "vitest";
import { CSRF_HEADER } from "./graphql.js";
import {
  ACCEPTED,
  base,
  CLICK_TIME,
  DOC,
  data,
  gateway,
  gatewayOverFakeBackends,
  INTEREST,
  KAFKA,
  SAMZA,
  serveOpenGateway,
  type Answer,
  type BackendCall,
} from "./testing.js";

/** Every call the fake backends got. */
let asked: BackendCall[] = [];
const rpcsAsked = () => asked.map((a) => a.rpc);

serveOpenGateway(gatewayOverFakeBackends({ record: (call) => asked.push(call) }));
beforeEach(() => {
  asked = [];
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

  it("GET /graphql answers queries (with the CSRF header) but not mutations", async () => {
    const headers = { accept: "application/json", [CSRF_HEADER]: "1" };
    const query = await fetch(`${base}/graphql?query=${encodeURIComponent(DOC.events)}`, { headers });
    expect(((await query.json()) as Answer).data?.Events).toHaveLength(2);
    asked = [];
    const mutation = await fetch(`${base}/graphql?query=${encodeURIComponent(DOC.clickstream)}`, { headers });
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
    const graphqlLike = (
      await data(`mutation { Likes(liked: {userid: "1234", eventId: "42672986", liked: true}) { _source_time userid eventId liked event_id duplicate } }`)
    ).Likes;
    expect({
      _source_time: like.sourceTime,
      userid: like.userid,
      eventId: like.eventId,
      liked: like.liked,
      event_id: like.likeId,
      duplicate: like.duplicate,
    }).toEqual(graphqlLike);
    expect(like.likeId).toBe(ACCEPTED.eventId);

    const interest = await gateway.addInterest({ interest: INTEREST });
    const graphqlInterest = (await data(DOC.addInterest.replace("_source_time", "_source_time userid event_id duplicate"), { interest: INTEREST })).AddInterest;
    expect({ _source_time: interest.sourceTime, userid: interest.userid, event_id: interest.interestId, duplicate: interest.duplicate }).toEqual(
      graphqlInterest,
    );
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
    expect(await gateway.clickstream({ event: { userid: "u", url: "https://e.org/a" } })).toMatchObject({
      eventId: ACCEPTED.eventId,
      eventTime: CLICK_TIME,
      userid: "u",
    });
    expect(await gateway.content({ event: { url: "https://e.org/a", title: "A", text: "a" } })).toMatchObject({
      eventId: ACCEPTED.eventId,
      sourceTime: ACCEPTED.sourceTime,
    });
    expect(rpcsAsked()).toEqual(["covisit.batchRecommendation", "profile.batchSimilarContent", "ingest.publishClicks", "ingest.publishContent"]);
  });
});
