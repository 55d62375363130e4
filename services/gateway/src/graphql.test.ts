// The GraphQL door: the reference documents as they are written, every field of each result, what
// is refused and how, and the limits on what one document may ask.
import { getIntrospectionQuery } from "graphql";
import { beforeEach, describe, expect, it } from "vitest";
import { Access } from "./access.js";
import { createGraphql } from "./graphql.js";
import type { GatewayApi } from "./handlers.js";
import {
  ACCEPTED,
  base,
  CLICK_TIME,
  DOC,
  data,
  gatewayOverFakeBackends,
  gql,
  INTEREST,
  KAFKA,
  logger,
  SAMZA,
  serveOpenGateway,
  type Answer,
  type BackendCall,
  type IngestRefusal,
} from "./testing.js";

/** Every call the fake backends got. */
let asked: BackendCall[] = [];
/** When set, the fake ingest refuses the next event with this, as ingest would. */
let ingestRefuses: IngestRefusal | undefined;
const rpcsAsked = () => asked.map((a) => a.rpc);

serveOpenGateway(
  gatewayOverFakeBackends({
    record: (call) => asked.push(call),
    takeRefusal: () => {
      const refusal = ingestRefuses;
      ingestRefuses = undefined;
      return refusal;
    },
  }),
);
beforeEach(() => {
  asked = [];
  ingestRefuses = undefined;
});

describe("the reference documents, verbatim", () => {
  it("Recommendation asks covisit for the url with the default limit", async () => {
    expect(await data(DOC.recommendation)).toEqual({ Recommendation: [{ recommendation: "https://en.wikipedia.org/wiki/Kindness", frequency: 3 }] });
    expect(asked).toEqual([
      { rpc: "covisit.batchRecommendation", req: { requests: [{ url: "https://en.wikipedia.org/wiki/Generosity%3A%20An%20Enhancement", limit: 10 }] } },
    ]);
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
    const liked = await data(
      `mutation { Likes(liked: {userid: "1234", eventId: 42672986, liked: true}) { _source_time userid eventId liked event_id duplicate } }`,
    );
    expect(liked.Likes).toEqual({
      _source_time: ACCEPTED.sourceTime,
      userid: "1234",
      eventId: "42672986",
      liked: true,
      event_id: ACCEPTED.eventId,
      duplicate: false,
    });
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
    expect(asked.map((a) => a.req)).toEqual([
      { limit: 5, offset: 10 },
      // EventsLiked: every liked page, within the most a page holds.
      { userid: "1234", limit: 1000 },
      { userid: "1234", limit: 3 },
      { query: "kafka", userid: "1234", limit: 10 },
    ]);
  });

  it("the page fields answer a page and the cursor of the next, null after the last, and pass the cursor on", async () => {
    expect(await data(`{ EventsPage(limit: 1) { items { id } nextCursor } }`)).toEqual({ EventsPage: { items: [{ id: SAMZA.id }], nextCursor: "c1" } });
    expect(await data(`{ EventsPage(limit: 1, cursor: "c1") { items { id } nextCursor } }`)).toEqual({
      EventsPage: { items: [{ id: KAFKA.id }], nextCursor: null },
    });
    expect((await data(`{ ClickMetricsPage(userid: "1", cursor: "k") { rows { userid } nextCursor } }`)).ClickMetricsPage).toEqual({
      rows: [{ userid: "1" }],
      nextCursor: null,
    });
    expect(asked.map((a) => a.req)).toEqual([{ limit: 1 }, { limit: 1, cursor: "c1" }, { userid: "1", limit: 100, cursor: "k" }]);
  });

  it("introspection answers with the schema", async () => {
    const got = await data(getIntrospectionQuery());
    const types = (got.__schema.types as Array<{ name: string }>).map((t) => t.name);
    expect(types).toEqual(expect.arrayContaining(["LikedInput", "AddInterest", "ContentEvent", "ClickEvent", "LikeAdded", "PersonalizedEventSearch"]));
    const fieldsOf = (name: string) =>
      (got.__schema.types as Array<{ name: string; fields: Array<{ name: string }> }>).find((t) => t.name === name)!.fields.map((f) => f.name);
    expect(fieldsOf("Query")).toEqual([
      "Recommendation",
      "SimilarContent",
      "RelatedContent",
      "Events",
      "EventsPage",
      "EventsLiked",
      "EventsLikedPage",
      "RecommendedEvents",
      "PersonalizedEventSearch",
      "ClickMetrics",
      "ClickMetricsPage",
      "EventMix",
      "Trending",
    ]);
    expect(fieldsOf("Mutation")).toEqual(["Likes", "AddInterest", "Content", "Clickstream", "DeleteUser", "HidePage"]);
  });
});

describe("event types and properties", () => {
  it("Clickstream passes the event type and properties on, inline or as variables, and answers the type", async () => {
    const inline = await data(
      `mutation { Clickstream(event: {url: "https://e.org/a", userid: "1", event: "add_to_cart", properties: {site_id: "s-1", price: 9.5}}) { event } }`,
    );
    expect(inline.Clickstream.event).toBe("add_to_cart");
    const sent = asked.find((a) => a.rpc === "ingest.publishClicks")!.req as { clicks: Array<Record<string, unknown>> };
    expect(sent.clicks[0]).toMatchObject({ event: "add_to_cart", properties: { site_id: { text: "s-1" }, price: { number: 9.5 } } });
    asked = [];
    const byVariables = await data(`mutation ($click: ClickEvent!) { Clickstream(event: $click) { event } }`, {
      click: { url: "https://e.org/a", userid: "1", properties: { viewed_percent: 40 } },
    });
    expect(byVariables.Clickstream.event).toBe("view");
    expect((asked[0]!.req as { clicks: Array<Record<string, unknown>> }).clicks[0]).toMatchObject({ properties: { viewed_percent: { number: 40 } } });
  });

  it("refuses a property that is neither a text nor a number, naming it, and reaches no backend", async () => {
    const answer = await gql(`mutation { Clickstream(event: {url: "https://e.org/a", userid: "1", properties: {tags: ["a"]}}) { event } }`);
    expect(answer.errors?.[0]?.message).toMatch(/properties\.tags: must be a text or a number/);
    expect(asked).toEqual([]);
  });
});

describe("erasure and hiding", () => {
  it("DeleteUser checks that the user is known, then has ingest erase them, and answers what is pending", async () => {
    expect(await data(`mutation { DeleteUser(userid: "1234") { pending } }`)).toEqual({ DeleteUser: { pending: [] } });
    expect(asked.map((a) => a.rpc).sort()).toEqual(["covisit.recentPages", "ingest.deleteUser", "profile.exists"]);
    expect(asked.find((a) => a.rpc === "ingest.deleteUser")!.req).toEqual({ userid: "1234" });
  });

  it("DeleteUser of a user only covisit knows (recent clicks of any type) goes through", async () => {
    await data(`mutation { DeleteUser(userid: "reader") { pending } }`);
    expect(rpcsAsked()).toContain("ingest.deleteUser");
  });

  it("DeleteUser of an unknown user is NOT_FOUND naming userid and erases nothing", async () => {
    const answer = await gql(`mutation { DeleteUser(userid: "nobody") { pending } }`);
    expect(answer.errors).toMatchObject([{ message: "userid: nothing is known of user nobody", extensions: { code: "NOT_FOUND" } }]);
    expect(rpcsAsked()).not.toContain("ingest.deleteUser");
  });

  it("DeleteUser of a bad userid is INVALID_ARGUMENT and reaches no backend", async () => {
    const answer = await gql(`mutation { DeleteUser(userid: "") { pending } }`);
    expect(answer.errors).toMatchObject([{ message: expect.stringMatching(/^userid: /), extensions: { code: "INVALID_ARGUMENT" } }]);
    expect(asked).toEqual([]);
  });

  it("HidePage hides by default, shows with hidden: false, and answers the consumers still pending", async () => {
    expect(await data(`mutation { HidePage(url: "https://e.org/a") { pending } }`)).toEqual({ HidePage: { pending: ["analytics-visibility"] } });
    await data(`mutation { HidePage(url: "https://e.org/a", hidden: false) { pending } }`);
    expect(asked.filter((a) => a.rpc === "ingest.setPageVisibility").map((a) => a.req)).toEqual([
      { url: "https://e.org/a", hidden: true },
      { url: "https://e.org/a" },
    ]);
  });

  it("HidePage of a url without a stored page is NOT_FOUND naming url, of a bad url INVALID_ARGUMENT, and hides nothing", async () => {
    const unknown = await gql(`mutation { HidePage(url: "https://e.org/nope") { pending } }`);
    expect(unknown.errors).toMatchObject([{ message: "url: no page stored at https://e.org/nope", extensions: { code: "NOT_FOUND" } }]);
    const bad = await gql(`mutation { HidePage(url: "ftp://e.org/a") { pending } }`);
    expect(bad.errors).toMatchObject([{ message: expect.stringMatching(/^url: /), extensions: { code: "INVALID_ARGUMENT" } }]);
    expect(rpcsAsked()).toEqual(["profile.exists"]);
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
    const res = await createGraphql(failing, logger, Access.open(logger)).fetch("http://gateway/graphql", {
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
    expect(ok.__type.fields.length).toBe(13);
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

  it("items add up across aliases: 15 of Events(limit: 1000) are refused, 5 are answered", async () => {
    const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: Events(limit: 1000) { abstract }`).join(" ")} }`;
    const flood = await gql(aliases(15));
    expect(flood.errors?.[0]?.message).toMatch(/^Items limit of 5000 exceeded, found 15000/);
    expect(asked).toEqual([]);
    expect(Object.keys(await data(aliases(5)))).toHaveLength(5);
    // A page counts its limit, whatever the list inside it is called.
    asked = [];
    const pages = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: EventsPage(limit: 1000) { items { abstract } nextCursor }`).join(" ")} }`;
    expect((await gql(pages(15))).errors?.[0]?.message).toMatch(/^Items limit of 5000 exceeded, found 15000/);
    expect(asked).toEqual([]);
    expect(Object.keys(await data(pages(5)))).toHaveLength(5);
    asked = [];
    // A list without a limit argument counts as the 1,000 items the gateway asks for; a default limit counts as given.
    const liked = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: EventsLiked(userid: "u") { id }`).join(" ")} }`;
    expect((await gql(liked(15))).errors?.[0]?.message).toMatch(/^Items limit of 5000 exceeded, found 15000/);
    expect(asked).toEqual([]);
    expect(Object.keys(await data(liked(5)))).toHaveLength(5);
    asked = [];
    expect(
      (
        await gql(
          `query ($n: Int!) { a: Events(limit: $n) { id } b: Events(limit: $n) { id } c: Events(limit: $n) { id } d: Events(limit: $n) { id } e: Events(limit: $n) { id } f: Events(limit: $n) { id } }`,
          { n: 1000 },
        )
      ).errors?.[0]?.message,
    ).toMatch(/found 6000/);
    expect(asked).toEqual([]);
    // A field with a limit below 1 counts as the most a list gives, not as a negative number that takes the others' items
    // off the total: before, these 15,000 items were asked for and answered, with only that field refused.
    const withNegative = `{ ${Array.from({ length: 14 }, (_, i) => `a${i}: Events(limit: 1000) { abstract }`).join(" ")} Recommendation(url: "https://e.org/", limit: -2147483648) { recommendation } }`;
    expect((await gql(withNegative)).errors?.[0]?.message).toMatch(/^Items limit of 5000 exceeded, found 15000/);
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
