import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { encodeClickBatch, type Bus } from "@recsys/bus";
import { ClickSchema, ContentEmbeddingSchema, InterestEmbeddingSchema, LikeSchema } from "@recsys/contracts/events/v1/events";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { applyClickMessage, applyClickMessages, applyEmbeddingMessage, applyInterestMessage, applyLikeMessage } from "./consumers.js";
import { profileRoutes } from "./handlers.js";
import { ProfileStore } from "./pg-store.js";
import { DIM, testDatabase } from "./testing.js";

const { pool, store } = testDatabase("rpc", { maxConnections: 4 });
// SimilarContent needs no bus; Progress is covered by the integration tests.
const client = createClient(ProfileService, createRouterTransport(profileRoutes(store, {} as Bus)));

const unit = (k: number) => Array.from({ length: DIM }, (_, i) => (i === k ? 1 : 0));
const embeddingMessage = (url: string, embedding: number[], version = 1n) =>
  toBinary(ContentEmbeddingSchema, create(ContentEmbeddingSchema, { url, id: "1", title: `t ${url}`, text: "x", embedding, version, model: "m" }));
const click = (eventId: string, userid: string, url: string) => create(ClickSchema, { eventId, userid, url, eventTimeMs: 1n });
/** CLICKS stream sequences, in the order the messages are made. */
let nextSeq = 1;
/** A CLICKS message holding one Click, as a producer other than ingest may publish it. */
const clickMessage = (eventId: string, userid: string, url: string) => ({ data: toBinary(ClickSchema, click(eventId, userid, url)), seq: nextSeq++ });
const undecodable = (...bytes: number[]) => ({ data: Uint8Array.of(...bytes), seq: nextSeq++ });

async function refusal(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => "ok",
    (e: unknown) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
  );
}

describe("messages", () => {
  it("store pages and clicks and ack them", async () => {
    expect(await applyEmbeddingMessage(embeddingMessage("https://e.org/a", unit(0)), store, DIM)).toEqual({ kind: "ack" });
    expect(await applyEmbeddingMessage(embeddingMessage("https://e.org/b", unit(1)), store, DIM)).toEqual({ kind: "ack" });
    expect(await applyClickMessage(clickMessage("c1", "u", "https://e.org/a"), store)).toEqual({ kind: "ack" });
    expect(await applyClickMessage(clickMessage("c1", "u", "https://e.org/a"), store)).toEqual({ kind: "ack" });
    expect(await store.interest("u")).toEqual({ sum: unit(0), terms: 1 });
  });

  it("dead-letter what can never be stored", async () => {
    expect(await applyEmbeddingMessage(new Uint8Array([0xff, 0xff, 0xff]), store, DIM)).toMatchObject({ kind: "dead-letter" });
    expect(await applyEmbeddingMessage(embeddingMessage("https://e.org/short", [1, 0, 0]), store, DIM)).toEqual({
      kind: "dead-letter",
      cause: "undecodable",
      reason: "undecodable: embedding has 3 dimensions, expected 384",
    });
    expect(await applyEmbeddingMessage(embeddingMessage("", unit(2)), store, DIM)).toMatchObject({ kind: "dead-letter" });
    expect(await applyClickMessage(clickMessage("", "u", "https://e.org/a"), store)).toMatchObject({ kind: "dead-letter" });
    // PostgreSQL text cannot hold NUL: retrying would loop forever.
    const nul = toBinary(
      ContentEmbeddingSchema,
      create(ContentEmbeddingSchema, { url: "https://e.org/nul", title: "a\u0000b", embedding: unit(3), version: 1n }),
    );
    expect(await applyEmbeddingMessage(nul, store, DIM)).toMatchObject({ kind: "dead-letter", reason: expect.stringMatching(/^refused by PostgreSQL/) });
    // A url past what PostgreSQL indexes (2,720 bytes; validation now refuses it, a message from before may still bring one).
    const wide = `https://e.org/${Array.from({ length: 902 }, (_, i) => String.fromCodePoint(0x4e00 + ((i * 7919) % 20000))).join("")}`;
    expect(await applyEmbeddingMessage(embeddingMessage(wide, unit(4)), store, DIM)).toMatchObject({
      kind: "dead-letter",
      reason: expect.stringMatching(/^refused by PostgreSQL: .*index row size/),
    });
    expect(await store.counts()).toEqual({ pages: 2n, parkedClicks: 0n });
  });

  it("leave everything for redelivery while PostgreSQL is unreachable", async () => {
    const down = new pg.Pool({ connectionString: "postgresql://postgres@127.0.0.1:1/test", connectionTimeoutMillis: 1_000 });
    try {
      const offline = new ProfileStore(down);
      expect(await applyEmbeddingMessage(embeddingMessage("https://e.org/c", unit(2)), offline, DIM)).toMatchObject({ kind: "retry" });
      expect(await applyClickMessage(clickMessage("c9", "u", "https://e.org/c"), offline)).toMatchObject({ kind: "retry" });
    } finally {
      await down.end();
    }
  });
});

describe("SimilarContent", () => {
  it("answers with the user's nearest pages, 10 by default, without the ones the user clicked unless asked", async () => {
    const res = await client.similarContent({ userid: "u", includeSeen: true });
    expect(res.items.map((i) => [i.url, i.title, i.similarity])).toEqual([
      ["https://e.org/a", "t https://e.org/a", 1],
      ["https://e.org/b", "t https://e.org/b", 0],
    ]);
    expect((await client.similarContent({ userid: "u" })).items.map((i) => [i.url, i.similarity])).toEqual([["https://e.org/b", 0]]);
  });

  it("refuses a bad limit or userid naming the field, and writes nothing", async () => {
    const before = await pool.query("SELECT (SELECT count(*) FROM interests) AS i, (SELECT count(*) FROM applied_events) AS e");
    expect(await refusal(client.similarContent({ userid: "u", limit: 1001 }))).toBe("InvalidArgument: limit: must be between 1 and 1000");
    expect(await refusal(client.similarContent({ userid: "u", limit: -1 }))).toMatch(/^InvalidArgument: limit: /);
    expect(await refusal(client.similarContent({ userid: "" }))).toBe("InvalidArgument: userid: must not be empty");
    expect(await refusal(client.similarContent({ userid: "x".repeat(257) }))).toMatch(/^InvalidArgument: userid: /);
    expect(await refusal(client.similarContent({ userid: "a\u0001b" }))).toMatch(/^InvalidArgument: userid: /);
    expect(await refusal(client.similarContent({ userid: "new-user", limit: 1000 }))).toBe("ok");
    const after = await pool.query("SELECT (SELECT count(*) FROM interests) AS i, (SELECT count(*) FROM applied_events) AS e");
    expect(after.rows).toEqual(before.rows);
    expect(await store.counts()).toEqual({ pages: 2n, parkedClicks: 0n });
  });

  it("answers a batch as each call alone would, a refused one with its own code and message", async () => {
    const requests = [{ userid: "u" }, { userid: "" }, { userid: "new-user", limit: 1 }, { userid: "u", limit: 1001 }];
    const res = await client.batchSimilarContent({ requests });
    expect(res.results).toHaveLength(4);
    for (const [i, req] of requests.entries()) {
      const alone = await client.similarContent(req).then(
        (r) => ({ case: "response", items: r.items.map((x) => [x.url, x.similarity]) }),
        (e: unknown) => ({ case: "refused", code: ConnectError.from(e).code, message: ConnectError.from(e).rawMessage }),
      );
      const o = res.results[i]!.outcome;
      const got =
        o.case === "response"
          ? { case: "response", items: o.value.items.map((x) => [x.url, x.similarity]) }
          : { case: o.case, code: o.value?.code, message: o.value?.message };
      expect(got, `request ${i}`).toEqual(alone);
    }
    expect(res.results.map((r) => r.outcome.case)).toEqual(["response", "refused", "response", "refused"]);
  });
});

const likeMessage = (eventId: string, userid: string, pageId: string, liked: boolean, time: bigint) =>
  toBinary(LikeSchema, create(LikeSchema, { eventId, userid, pageId, liked, sourceTimeMs: time }));
const interestMessage = (eventId: string, userid: string, embedding: number[]) =>
  toBinary(InterestEmbeddingSchema, create(InterestEmbeddingSchema, { eventId, userid, embedding }));

describe("engagement messages", () => {
  it("apply likes and stated interests, and dead-letter what cannot be one", async () => {
    // Pages a and b both carry id "1" (embeddingMessage): a like of "1" is a like of the first by url.
    expect(await applyLikeMessage(likeMessage("l1", "fan", "1", true, 5n), store)).toEqual({ kind: "ack" });
    expect(await applyInterestMessage(interestMessage("i1", "fan", unit(1)), store, DIM)).toEqual({ kind: "ack" });
    expect(await store.interest("fan")).toEqual({ sum: unit(0).map((x, k) => x + unit(1)[k]!), terms: 2 });
    expect(await applyLikeMessage(Uint8Array.of(0xff, 0xff), store)).toMatchObject({ kind: "dead-letter" });
    expect(await applyLikeMessage(likeMessage("l2", "fan", "", true, 6n), store)).toMatchObject({ kind: "dead-letter" });
    expect(await applyInterestMessage(interestMessage("i2", "fan", [1, 0]), store, DIM)).toMatchObject({ kind: "dead-letter" });
    expect(await store.interest("fan")).toMatchObject({ terms: 2 });
  });
});

describe("event RPCs", () => {
  it("map pages, like counts and scores to the wire", async () => {
    const all = await client.events({ limit: 10 });
    expect(all.items.map((e) => [e.id, e.url, e.title, e.abstract, e.likeCount])).toEqual([
      ["1", "https://e.org/a", "t https://e.org/a", "x", 1n],
      ["1", "https://e.org/b", "t https://e.org/b", "x", 1n],
    ]);
    expect((await client.eventsLiked({ userid: "fan" })).items.map((e) => e.url)).toEqual(["https://e.org/a", "https://e.org/b"]);
    // Page by page with the cursors, the same pages in the same order; the last page has none.
    const first = await client.eventsLiked({ userid: "fan", limit: 1 });
    const second = await client.eventsLiked({ userid: "fan", limit: 1, cursor: first.nextCursor });
    expect([...first.items, ...second.items].map((e) => e.url)).toEqual(["https://e.org/a", "https://e.org/b"]);
    expect(second.nextCursor).toBe("");
    const page1 = await client.events({ limit: 1 });
    expect((await client.events({ limit: 5, cursor: page1.nextCursor })).items.map((e) => e.url)).toEqual(["https://e.org/b"]);
    const recommended = await client.recommendedEvents({ userid: "fan", limit: 1, includeSeen: true });
    expect(recommended.items.map((e) => [e.url, e.score])).toEqual([["https://e.org/a", expect.closeTo(Math.SQRT1_2, 6)]]);
    // The fan liked page id "1", which both pages carry: nothing left unless asked for.
    expect((await client.recommendedEvents({ userid: "fan" })).items).toEqual([]);
    expect((await client.recommendedEvents({ userid: "nobody" })).items).toEqual([]);
    expect((await client.eventsById({ ids: ["1", "404"] })).items).toHaveLength(2);
    expect((await client.personalizedEventSearch({ query: "x", userid: "fan" })).items.map((e) => e.url)).toEqual(["https://e.org/a", "https://e.org/b"]);
  });

  it("RelatedContent ranks pages by similarity to a page, never the page itself, and without a user's seen pages", async () => {
    const related = await client.relatedContent({ url: "https://e.org/a" });
    expect(related.items.map((i) => [i.url, i.title, i.similarity])).toEqual([["https://e.org/b", "t https://e.org/b", 0]]);
    // u clicked a.
    expect((await client.relatedContent({ url: "https://e.org/b", userid: "u" })).items).toEqual([]);
    expect((await client.relatedContent({ url: "https://e.org/b" })).items.map((i) => i.url)).toEqual(["https://e.org/a"]);
    expect(await refusal(client.relatedContent({ url: "https://e.org/none" }))).toBe("NotFound: url: no page stored at https://e.org/none");
    expect(await refusal(client.relatedContent({ url: "not a url" }))).toMatch(/^InvalidArgument: url: /);
    expect(await refusal(client.relatedContent({ url: "https://e.org/a", limit: 1001 }))).toBe("InvalidArgument: limit: must be between 1 and 1000");
    expect(await refusal(client.relatedContent({ url: "https://e.org/a", userid: "a\u0001b" }))).toMatch(/^InvalidArgument: userid: /);
  });

  it("refuse bad arguments naming the field", async () => {
    expect(await refusal(client.events({ limit: 0 }))).toBe("InvalidArgument: limit: must be between 1 and 1000");
    expect(await refusal(client.events({ limit: 5, offset: -1 }))).toBe("InvalidArgument: offset: must be between 0 and 1000000");
    expect(await refusal(client.eventsLiked({ userid: "" }))).toBe("InvalidArgument: userid: must not be empty");
    expect(await refusal(client.recommendedEvents({ userid: "u", limit: 1001 }))).toBe("InvalidArgument: limit: must be between 1 and 1000");
    expect(await refusal(client.personalizedEventSearch({ query: " ", userid: "u" }))).toBe("InvalidArgument: query: must not be empty");
    expect(await refusal(client.personalizedEventSearch({ query: "kafka", userid: "" }))).toBe("InvalidArgument: userid: must not be empty");
    expect(await refusal(client.eventsById({ ids: ["a b"] }))).toMatch(/^InvalidArgument: ids\[0\]: /);
    const { nextCursor } = await client.events({ limit: 1 });
    expect(await refusal(client.events({ limit: 1, offset: 1, cursor: nextCursor }))).toBe("InvalidArgument: cursor: give a cursor or an offset, not both");
    expect(await refusal(client.events({ limit: 1, cursor: "not-a-cursor" }))).toMatch(/^InvalidArgument: cursor: is not a cursor of Events/);
    expect(await refusal(client.eventsLiked({ userid: "fan", cursor: nextCursor }))).toMatch(/^InvalidArgument: cursor: is not a cursor of EventsLiked/);
    expect(await refusal(client.eventsLiked({ userid: "fan", limit: 1001 }))).toBe("InvalidArgument: limit: must be between 1 and 1000");
  });
});

describe("click message batches", () => {
  it("go to PostgreSQL together, each acked or dead-lettered as it would be alone", async () => {
    const [a, b] = ["https://e.org/a", "https://e.org/b"];
    const ack = { kind: "ack" };
    const batch = [
      clickMessage("m1", "w", a),
      undecodable(0xff, 0xff),
      clickMessage("m2", "w", b),
      clickMessage("m1", "w", a),
      clickMessage("m3", "w", "https://e.org/not-yet"),
    ];
    expect(await applyClickMessages(batch, store)).toEqual([
      ack,
      { kind: "dead-letter", cause: "undecodable", reason: expect.stringMatching(/^undecodable: /) },
      ack,
      ack,
      ack,
    ]);
    expect(await store.interest("w")).toEqual({ sum: unit(0).map((x, k) => x + unit(1)[k]!), terms: 2 });
    // PostgreSQL refuses a NUL: which message has it is unknown in a batch, so the batch throws
    // (the consumer then applies each message alone) and changes nothing; alone, it is dead-lettered.
    const nul = clickMessage("m5", "w\u0000x", a);
    await expect(applyClickMessages([clickMessage("m4", "w", a), nul], store)).rejects.toThrow();
    expect(await store.interest("w")).toMatchObject({ terms: 2 });
    expect(await applyClickMessages([nul], store)).toEqual([
      { kind: "dead-letter", cause: "refused", reason: expect.stringMatching(/^refused by PostgreSQL/) },
    ]);
    expect(await applyClickMessages([clickMessage("m4", "w", a)], store)).toEqual([ack]);
    expect(await store.interest("w")).toMatchObject({ terms: 3 });
  });

  it("of a ClickBatch go in together; a click that cannot be stored is dead-lettered alone, the rest applied", async () => {
    const [a, b] = ["https://e.org/a", "https://e.org/b"];
    const m = {
      seq: nextSeq++,
      ...encodeClickBatch([
        click("k1", "batched", a),
        click("", "batched", b),
        click("k2", "batched", b),
        click("k3", "bat\u0000ched", a),
        click("k1", "batched", a),
      ]),
    };
    const [d] = await applyClickMessages([m], store);
    expect(d).toEqual({
      kind: "ack",
      deadLetters: [
        expect.objectContaining({ index: 1, reason: "undecodable: missing event_id, userid or url" }),
        expect.objectContaining({ index: 3, reason: "refused by PostgreSQL" }),
      ],
    });
    // The good clicks counted once each (k1 twice in the message is one click).
    expect(await store.interest("batched")).toEqual({ sum: unit(0).map((x, k) => x + unit(1)[k]!), terms: 2 });
    // Sent again (a redelivery): nothing changes.
    await applyClickMessages([m], store);
    expect(await store.interest("batched")).toMatchObject({ terms: 2 });
  });

  it("are left for redelivery while PostgreSQL is unreachable", async () => {
    const down = new pg.Pool({ connectionString: "postgresql://postgres@127.0.0.1:1/test", connectionTimeoutMillis: 1_000 });
    try {
      const offline = new ProfileStore(down);
      expect(
        await applyClickMessages([clickMessage("r1", "u", "https://e.org/a"), undecodable(0xff), clickMessage("r2", "u", "https://e.org/b")], offline),
      ).toEqual([
        { kind: "retry", reason: expect.stringMatching(/^PostgreSQL: /) },
        { kind: "dead-letter", cause: "undecodable", reason: expect.stringMatching(/^undecodable: /) },
        { kind: "retry", reason: expect.stringMatching(/^PostgreSQL: /) },
      ]);
    } finally {
      await down.end();
    }
  });
});
