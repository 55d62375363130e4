import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { encodeClickBatch, encodeUserDeleted, type Bus } from "@recsys/bus";
import { ClickSchema, InterestEmbeddingSchema, LikeSchema } from "@recsys/contracts/events/v1/events";
import { ProfileService } from "@recsys/contracts/profile/v1/profile";
import { describe, expect, it } from "vitest";
import { applyClickMessages, applyInterestMessage, applyLikeMessage, type ClickMessage } from "./consumers.js";
import { profileRoutes } from "./handlers.js";
import { DIM, expectInterest, page, randomVectors, testDatabase } from "./testing.js";

// Erasures (UserDeleted on CLICKS) through the consumers' effects, against the real PostgreSQL; answers through the RPCs.
const { pool, store } = testDatabase("erasure", { emptyEachTest: true });
const client = createClient(ProfileService, createRouterTransport(profileRoutes(store, {} as Bus)));
const { unitVector } = randomVectors(4242);

const urls = Array.from({ length: 6 }, (_, i) => `https://e.org/p${i}`);
/** Pages p0..p5, each with its url as its id; their vectors by url. */
async function storePages(): Promise<Map<string, number[]>> {
  const vectors = new Map(urls.map((url) => [url, unitVector()] as const));
  for (const [url, v] of vectors) await store.applyEmbedding(page(url, v));
  return vectors;
}

let nextEvent = 0;
/** A CLICKS message at stream sequence `seq` with one click of each url, for `userid`. */
const clicks = (seq: number, userid: string, ...clicked: string[]): ClickMessage => ({
  seq,
  ...encodeClickBatch(clicked.map((url) => create(ClickSchema, { eventId: `c${nextEvent++}`, userid, url, eventTimeMs: 1_000n }))),
});
const erasure = (seq: number, userid: string, ingestTimeMs: number): ClickMessage => ({
  seq,
  ...encodeUserDeleted({ eventId: `d${seq}`, userid, ingestTimeMs }),
});
const likeMessage = (userid: string, pageId: string, ingestTimeMs: bigint, eventId = `l${nextEvent++}`) =>
  toBinary(LikeSchema, create(LikeSchema, { eventId, userid, pageId, liked: true, sourceTimeMs: 500n, ingestTimeMs }));
const interestMessage = (userid: string, embedding: number[], ingestTimeMs: bigint, eventId = `i${nextEvent++}`) =>
  toBinary(InterestEmbeddingSchema, create(InterestEmbeddingSchema, { eventId, userid, embedding, sourceTimeMs: 500n, ingestTimeMs }));
const ack = { kind: "ack" };

/** Rows of the user in every per-user table (erased_users aside). */
async function rowsOf(userid: string): Promise<Record<string, number>> {
  const tables = ["interests", "user_page_terms", "parked_clicks", "likes", "applied_events", "event_watermarks"];
  const out: Record<string, number> = {};
  for (const t of tables) out[t] = (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t} WHERE userid = $1`, [userid])).rows[0]!.n;
  return out;
}
const NONE = { interests: 0, user_page_terms: 0, parked_clicks: 0, likes: 0, applied_events: 0, event_watermarks: 0 };
const similar = async (userid: string, limit = 4) => (await client.similarContent({ userid, limit })).items.map((i) => [i.url, i.similarity]);

describe("an erasure", () => {
  it("deletes the user's interest, clicked pages, parked clicks, likes and stated interests: answers are a new user's", async () => {
    const vectors = await storePages();
    const late = "https://e.org/late";
    expect(await applyClickMessages([clicks(1, "u", urls[0]!, urls[1]!, late), clicks(2, "v", urls[0]!)], store)).toEqual([ack, ack]);
    expect(await applyLikeMessage(likeMessage("u", urls[2]!, 100n), store)).toEqual(ack);
    expect(await applyInterestMessage(interestMessage("u", unitVector(), 100n), store, DIM)).toEqual(ack);
    expect(await store.interest("u")).toMatchObject({ terms: 4 });
    expect((await client.eventsLiked({ userid: "u" })).items.map((e) => e.url)).toEqual([urls[2]]);
    expect(await client.exists({ userid: "u" })).toMatchObject({ user: true });

    expect(await applyClickMessages([erasure(3, "u", 1_000)], store)).toEqual([ack]);

    expect(await rowsOf("u")).toEqual(NONE);
    expect(await store.interest("u")).toBeUndefined();
    expect(await similar("u")).toEqual(await similar("never-seen"));
    expect(await similar("u")).toEqual(urls.slice(0, 4).map((url) => [url, 0]));
    expect((await client.recommendedEvents({ userid: "u" })).items).toEqual([]);
    expect((await client.eventsLiked({ userid: "u" })).items).toEqual([]);
    expect((await client.events({ limit: 10 })).items.find((e) => e.url === urls[2])?.likeCount).toBe(0n);
    expect(await client.exists({ userid: "u" })).toMatchObject({ user: false });
    // The page the parked click waited for arrives: nothing of u is folded in.
    expect(await store.applyEmbedding(page(late, unitVector()))).toEqual({ status: "inserted", foldedClicks: 0 });
    expect(await store.interest("u")).toBeUndefined();
    // Another user keeps everything.
    await expectInterest(store, "v", [vectors.get(urls[0]!)!]);
  });

  it("is applied in order with the clicks around it in a batch; a pre-erasure message redelivered after it changes nothing", async () => {
    const vectors = await storePages();
    const before = clicks(10, "u", urls[0]!, urls[1]!);
    const after = clicks(13, "u", urls[2]!);
    // One batch: clicks of u, of v, u's erasure, a later click of u.
    expect(await applyClickMessages([before, clicks(11, "v", urls[3]!), erasure(12, "u", 1_000), after], store)).toEqual([ack, ack, ack, ack]);
    await expectInterest(store, "u", [vectors.get(urls[2]!)!]);
    await expectInterest(store, "v", [vectors.get(urls[3]!)!]);
    // The first message comes again (a redelivery after a crash): its clicks belong to the user erased.
    expect(await applyClickMessages([before], store)).toEqual([ack]);
    await expectInterest(store, "u", [vectors.get(urls[2]!)!]);
    expect((await client.similarContent({ userid: "u", limit: 10 })).items.map((i) => i.url)).not.toContain(urls[2]);
    expect((await client.similarContent({ userid: "u", limit: 10 })).items.map((i) => i.url)).toContain(urls[0]);
  });

  it("drops a like or stated interest accepted before it, however late it arrives; later ones count", async () => {
    const vectors = await storePages();
    expect(await applyClickMessages([erasure(5, "u", 1_000)], store)).toEqual([ack]);
    // Accepted at 900 and 1,000, applied after the erasure: acked, nothing changes.
    expect(await applyLikeMessage(likeMessage("u", urls[0]!, 900n), store)).toEqual(ack);
    expect(await applyLikeMessage(likeMessage("u", urls[1]!, 1_000n), store)).toEqual(ack);
    expect(await applyInterestMessage(interestMessage("u", unitVector(), 900n), store, DIM)).toEqual(ack);
    expect(await rowsOf("u")).toEqual(NONE);
    expect((await client.eventsLiked({ userid: "u" })).items).toEqual([]);
    expect(await client.exists({ userid: "u" })).toMatchObject({ user: false });
    // Accepted after it: the new user's.
    const stated = unitVector();
    expect(await applyLikeMessage(likeMessage("u", urls[3]!, 1_001n), store)).toEqual(ack);
    expect(await applyInterestMessage(interestMessage("u", stated, 1_001n), store, DIM)).toEqual(ack);
    await expectInterest(store, "u", [vectors.get(urls[3]!)!, stated]);
    expect((await client.eventsLiked({ userid: "u" })).items.map((e) => e.url)).toEqual([urls[3]]);
  });

  it("leaves a post-erasure click to the new user, and redelivered changes nothing; a later erasure erases again", async () => {
    const vectors = await storePages();
    const gone = erasure(20, "u", 1_000);
    expect(await applyClickMessages([clicks(19, "u", urls[0]!)], store)).toEqual([ack]);
    expect(await applyClickMessages([gone], store)).toEqual([ack]);
    const newClick = clicks(21, "u", urls[1]!);
    expect(await applyClickMessages([newClick], store)).toEqual([ack]);
    expect(await applyLikeMessage(likeMessage("u", urls[4]!, 1_500n), store)).toEqual(ack);
    const mine = [vectors.get(urls[1]!)!, vectors.get(urls[4]!)!];
    await expectInterest(store, "u", mine);
    // The erasure again (a redelivery), alone and in a batch with the click after it: nothing changes.
    expect(await applyClickMessages([gone], store)).toEqual([ack]);
    expect(await applyClickMessages([gone, newClick], store)).toEqual([ack, ack]);
    await expectInterest(store, "u", mine);
    expect((await client.similarContent({ userid: "u", limit: 10 })).items.map((i) => i.url)).not.toContain(urls[1]);
    expect(await client.exists({ userid: "u" })).toMatchObject({ user: true });
    expect((await pool.query("SELECT clicks_seq::int AS seq, ingest_time_ms::int AS t FROM erased_users WHERE userid = 'u'")).rows).toEqual([
      { seq: 20, t: 1_000 },
    ]);
    // A second erasure of the same user, later on CLICKS.
    expect(await applyClickMessages([erasure(22, "u", 2_000)], store)).toEqual([ack]);
    expect(await rowsOf("u")).toEqual(NONE);
    expect(await applyClickMessages([newClick], store)).toEqual([ack]);
    expect(await store.interest("u")).toBeUndefined();
  });

  it("cuts every earlier click, whatever click batches run beside it", async () => {
    // Click batches at sequences 1-16 race the erasure at 17, as the consumer's concurrent batches may: none of them may survive it.
    // Their pages are not embedded (parked clicks), on urls of their own: no row or url lock of theirs orders them with the erasure.
    for (let round = 0; round < 5; round++) {
      const racer = `racer${round}`;
      const before = Array.from({ length: 16 }, (_, i) =>
        clicks(i + 1, racer, ...Array.from({ length: 100 }, (_, k) => `https://e.org/parked-${round}-${i}-${k}`)),
      );
      const settled = await Promise.all([
        ...before.slice(0, 8).map((m) => applyClickMessages([m], store)),
        applyClickMessages([erasure(17, racer, 1_000)], store),
        ...before.slice(8).map((m) => applyClickMessages([m], store)),
      ]);
      expect(settled.flat().every((d) => d.kind === "ack")).toBe(true);
      expect(await rowsOf(racer), racer).toEqual(NONE);
    }
  });

  it("of a userid that cannot be stored is dead-lettered alone; undecodable, too", async () => {
    expect(await applyClickMessages([erasure(1, "bad\u0000user", 1)], store)).toEqual([
      { kind: "dead-letter", cause: "refused", reason: expect.stringMatching(/^refused by PostgreSQL/) },
    ]);
    expect(await applyClickMessages([{ ...erasure(2, "", 1) }], store)).toEqual([
      { kind: "dead-letter", cause: "undecodable", reason: "undecodable: UserDeleted without userid" },
    ]);
  });
});

describe("Exists", () => {
  it("says whether profile holds anything of a user and whether it stores a page", async () => {
    await storePages();
    expect(await applyClickMessages([clicks(1, "clicker", urls[0]!), clicks(2, "parker", "https://e.org/not-yet")], store)).toEqual([ack, ack]);
    expect(await applyLikeMessage(likeMessage("liker", "no-such-page", 1n), store)).toEqual(ack);
    expect(await applyInterestMessage(interestMessage("stater", unitVector(), 1n), store, DIM)).toEqual(ack);
    for (const userid of ["clicker", "parker", "liker", "stater"])
      expect(await client.exists({ userid }), userid).toEqual(expect.objectContaining({ user: true, page: false }));
    expect(await client.exists({ userid: "nobody" })).toMatchObject({ user: false, page: false });
    expect(await client.exists({ url: urls[0]! })).toMatchObject({ user: false, page: true });
    expect(await client.exists({ url: "https://e.org/not-yet" })).toMatchObject({ page: false });
    expect(await client.exists({ userid: "clicker", url: urls[1]! })).toMatchObject({ user: true, page: true });
  });

  it("refuses a request with neither field, or a bad one, naming the field", async () => {
    const refusal = (p: Promise<unknown>) =>
      p.then(
        () => "ok",
        (e: unknown) => `${Code[ConnectError.from(e).code]}: ${ConnectError.from(e).rawMessage}`,
      );
    expect(await refusal(client.exists({}))).toBe("InvalidArgument: userid: give a userid, a url or both");
    expect(await refusal(client.exists({ url: "not a url" }))).toMatch(/^InvalidArgument: url: /);
    expect(await refusal(client.exists({ userid: "a\u0001b" }))).toMatch(/^InvalidArgument: userid: /);
  });
});
