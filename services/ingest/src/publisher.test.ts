import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { clicksOf, connectBus, ensureDurableConsumer, publishInterestEmbedding, readClicks, subjectMatches, urlKey, waitApplied, type Bus } from "@recsys/bus";
import { ClickSchema, InterestEmbeddingSchema, PageVisibilitySchema } from "@recsys/contracts/events/v1/events";
import { createLogger } from "@recsys/logging";
import { afterAll, beforeAll, expect, it } from "vitest";
import { LIMITS } from "@recsys/validation";
import { maxEngagementCost } from "./engagement-budget.js";
import { INTERESTS, LIKES, type EventKind, type TimedEvent } from "./event-kinds.js";
import { partitionOf } from "./hashing.js";
import { CLICKS_PER_MESSAGE, clickBytesBound, EventPublisher } from "./publisher.js";

// Against the real NATS of this machine, in a namespace of its own.
const namespace = `unit${process.pid}ingest`;
const PARTITIONS = 4;
let bus: Bus;
let publisher: EventPublisher;

beforeAll(async () => {
  bus = await connectBus({ url: process.env.NATS_URL ?? "nats://127.0.0.1:4222", name: "ingest-test", namespace, logger: createLogger("ingest-test") });
  publisher = new EventPublisher(bus, PARTITIONS);
});
afterAll(async () => {
  for (const s of bus.topology.streamConfigs()) await bus.jsm.streams.delete(s.name).catch(() => false);
  await bus.close();
});

/** Every CLICKS message from `first` on: its subject and the clicks it carries. */
async function messagesFrom(first: number) {
  const last = (await bus.jsm.streams.info(bus.topology.clicksStream)).state.last_seq;
  const out = [];
  for (let seq = first; seq <= last; seq++) {
    const m = (await bus.jsm.streams.getMessage(bus.topology.clicksStream, { seq }))!;
    out.push({ seq, subject: m.subject, clicks: clicksOf({ data: m.data, headers: m.header }) });
  }
  return out;
}

const clicksOfUsers = (users: string[], n: number, tag: string) =>
  Array.from({ length: n }, (_, i) => ({
    eventId: `${tag}-${i}`,
    userid: users[i % users.length]!,
    url: `https://e.org/${i}`,
    eventTimeMs: 1_700_000_000_000 + i,
    event: "view",
    properties: {},
  }));

it("publishes one ClickBatch per partition, each user's clicks in order on the user's subject, every click once", async () => {
  const users = Array.from({ length: 9 }, (_, i) => `user-${i}`);
  const clicks = clicksOfUsers(users, 40, "a");
  const before = (await bus.jsm.streams.info(bus.topology.clicksStream)).state.last_seq;
  const results = await publisher.publishClicks(clicks, 1);
  const messages = await messagesFrom(before + 1);
  expect(messages.length).toBe(new Set(users.map((u) => partitionOf(u, PARTITIONS))).size);
  expect(messages.flatMap((m) => m.clicks.map((c) => c.eventId)).sort()).toEqual(clicks.map((c) => c.eventId).sort());
  for (const m of messages) {
    for (const c of m.clicks) expect(m.subject).toBe(bus.topology.clicksSubject(partitionOf(c.userid, PARTITIONS)));
    // Within a message, file order.
    const indexes = m.clicks.map((c) => Number(c.eventId.slice(2)));
    expect(indexes).toEqual([...indexes].sort((a, b) => a - b));
  }
  // Each click's result names the message that carries it.
  results.forEach((r, i) => {
    const carrier = messages.find((m) => m.clicks.some((c) => c.eventId === clicks[i]!.eventId))!;
    expect(r).toEqual({ streamSequence: BigInt(carrier.seq), duplicate: false });
  });
});

it("splits a partition's clicks over messages of at most CLICKS_PER_MESSAGE, in order", async () => {
  const clicks = clicksOfUsers(["one-user"], CLICKS_PER_MESSAGE * 2 + 3, "b");
  const before = (await bus.jsm.streams.info(bus.topology.clicksStream)).state.last_seq;
  await publisher.publishClicks(clicks, 1);
  const messages = await messagesFrom(before + 1);
  expect(messages.map((m) => m.clicks.length)).toEqual([CLICKS_PER_MESSAGE, CLICKS_PER_MESSAGE, 3]);
  expect(messages.flatMap((m) => m.clicks.map((c) => c.eventId))).toEqual(clicks.map((c) => c.eventId));
});

it("splits a partition's clicks over messages that fit the server's max_payload, in order, every click stored", async () => {
  // 256 clicks of 16 properties of 256 characters each (7.5 KB a click): more than 1 MiB in one message.
  const properties = Object.fromEntries(Array.from({ length: 16 }, (_, k) => [`p${k}`, "é".repeat(200) + "x".repeat(56)]));
  const clicks = clicksOfUsers(["heavy"], CLICKS_PER_MESSAGE, "h").map((c) => ({ ...c, properties }));
  const before = (await bus.jsm.streams.info(bus.topology.clicksStream)).state.last_seq;
  const results = await publisher.publishClicks(clicks, 1);
  const messages = await messagesFrom(before + 1);
  expect(messages.length).toBeGreaterThan(1);
  expect(messages.flatMap((m) => m.clicks.map((c) => c.eventId))).toEqual(clicks.map((c) => c.eventId));
  expect(new Set(results.map((r) => r.streamSequence)).size).toBe(messages.length);
  for (const m of messages) {
    const stored = (await bus.jsm.streams.getMessage(bus.topology.clicksStream, { seq: m.seq }))!;
    expect(stored.data.length).toBeLessThanOrEqual(bus.nc.info!.max_payload);
  }
});

it("bounds a click's bytes in a batch from above, whatever its fields hold", () => {
  const click = clicksOfUsers(["ü".repeat(256)], 1, "😀".repeat(30))[0]!;
  for (const properties of [
    {},
    { n: 1.5, t: "ü".repeat(256) },
    Object.fromEntries(Array.from({ length: 16 }, (_, k) => [`p${k}`.repeat(8), "€".repeat(256)])),
  ]) {
    const c = { ...click, url: `https://e.org/${"ä".repeat(2000)}`, event: "add_to_cart", properties };
    const encoded = toBinary(
      ClickSchema,
      create(ClickSchema, {
        eventId: c.eventId,
        userid: c.userid,
        url: c.url,
        eventTimeMs: BigInt(c.eventTimeMs),
        ingestTimeMs: BigInt(Date.now()),
        event: c.event,
        properties: Object.fromEntries(
          Object.entries(c.properties).map(([k, v]) => [
            k,
            { kind: typeof v === "number" ? { case: "number" as const, value: v } : { case: "text" as const, value: v } },
          ]),
        ),
      }),
    ).length;
    // In a batch a click also takes its field's tag and length.
    expect(clickBytesBound(c)).toBeGreaterThanOrEqual(encoded + 4);
  }
});

it("the same clicks sent again are the same messages to the broker: reported duplicate, nothing stored twice", async () => {
  const clicks = clicksOfUsers(["x", "y", "z"], 12, "c");
  const first = await publisher.publishClicks(clicks, 1);
  const lastSeq = (await bus.jsm.streams.info(bus.topology.clicksStream)).state.last_seq;
  const again = await publisher.publishClicks(clicks, 2);
  expect(again.map((r) => r.duplicate)).toEqual(clicks.map(() => true));
  expect(again.map((r) => r.streamSequence)).toEqual(first.map((r) => r.streamSequence));
  expect((await bus.jsm.streams.info(bus.topology.clicksStream)).state.last_seq).toBe(lastSeq);
  // A lone click is its own message, under its user's event id.
  const [lone] = await publisher.publishClicks([clicks[0]!], 3);
  expect(lone).toEqual({ streamSequence: expect.any(BigInt), duplicate: false });
  const [loneAgain] = await publisher.publishClicks([clicks[0]!], 4);
  expect(loneAgain).toEqual({ streamSequence: lone!.streamSequence, duplicate: true });
});

it("two users' events with the same id are different messages, lone or in a batch, clicks, likes and interests alike", async () => {
  const click = (userid: string, eventId: string) => ({
    eventId,
    userid,
    url: "https://e.org/same",
    eventTimeMs: 1_700_000_000_000,
    event: "view",
    properties: {},
  });
  const lone = [await publisher.publishClicks([click("p", "1")], 1), await publisher.publishClicks([click("q", "1")], 1)].flat();
  expect(lone.map((r) => r.duplicate)).toEqual([false, false]);
  expect(lone[1]!.streamSequence).toBeGreaterThan(lone[0]!.streamSequence);
  // The same ids in two batches of one partition, each of another user.
  const [r, s] = ["batch-r", "batch-s"];
  const batches = [await publisher.publishClicks([click(r, "1"), click(r, "2")], 1), await publisher.publishClicks([click(s, "1"), click(s, "2")], 1)];
  expect(batches.flat().map((b) => b.duplicate)).toEqual([false, false, false, false]);
  const like = (userid: string) => ({ eventId: "1", userid, pageId: "42", liked: true, sourceTimeMs: 1 });
  expect((await publisher.publishEvents(LIKES, [like("p"), like("q")], 1)).map((l) => l.duplicate)).toEqual([false, false]);
  const interest = (userid: string) => ({ eventId: "1", userid, text: "bicycles", sourceTimeMs: 1 });
  expect((await publisher.publishEvents(INTERESTS, [interest("p"), interest("q")], 1)).map((i) => i.duplicate)).toEqual([false, false]);
});

it("counts a like's and an interest's bytes as ENGAGEMENT stores them, the longest interest with its embedding within maxEngagementCost", async () => {
  const stream = bus.topology.engagementStream;
  const bytesOf = async () => (await bus.jsm.streams.info(stream)).state.bytes;
  // The longest of each field, in characters of 4 bytes (🎲) where the field allows them.
  const longest = {
    eventId: "🎲".repeat(LIMITS.eventIdChars),
    userid: "🎲".repeat(LIMITS.useridBytes / 4),
    text: "🎲".repeat(LIMITS.textBytes / 4),
    sourceTimeMs: Date.now(),
  };
  /** What the stream stored for the event, and what `sizeOf` said it would. */
  async function storedAndCounted<I, V extends TimedEvent, S extends DescMessage>(kind: EventKind<I, V, S>, event: V) {
    const before = await bytesOf();
    await publisher.publishEvents(kind, [event], Date.now());
    return [(await bytesOf()) - before, publisher.sizeOf(kind, event, Date.now())];
  }
  const counts = [
    await storedAndCounted(LIKES, { eventId: "size-1", userid: "size-u", pageId: "42", liked: true, sourceTimeMs: 1 }),
    await storedAndCounted(INTERESTS, { eventId: "size-2", userid: "size-u", text: "bicycles and the sea", sourceTimeMs: 1 }),
    await storedAndCounted(INTERESTS, longest),
  ];
  for (const [stored, counted] of counts) expect(counted).toBe(stored);
  expect(publisher.sizeOf(INTERESTS, longest, Date.now()) + publisher.interestEmbeddingSizeOf(longest, 384, Date.now())).toBeLessThanOrEqual(
    maxEngagementCost(384),
  );
});

it("counts a stated interest's embedding as INTEREST_EMBEDDINGS stores the embedder's message, over by the model name's room alone", async () => {
  const stream = bus.topology.interestEmbeddingsStream;
  const bytesOf = async () => (await bus.jsm.streams.info(stream)).state.bytes;
  const model = "recsys-default-lsa-v1";
  const interests = [
    { eventId: "size-3", userid: "size-u", text: "bicycles and the sea", sourceTimeMs: 1 },
    { eventId: "🎲".repeat(LIMITS.eventIdChars), userid: "🎲".repeat(LIMITS.useridBytes / 4), text: "sea", sourceTimeMs: Date.now() },
  ];
  for (const interest of interests) {
    const ingestTimeMs = Date.now();
    const counted = publisher.interestEmbeddingSizeOf(interest, 384, ingestTimeMs);
    // Published as the embedder publishes it (services/embedder/src/interests.ts), on the partition ingest gave the interest.
    const embedding = create(InterestEmbeddingSchema, {
      eventId: interest.eventId,
      userid: interest.userid,
      embedding: Array.from({ length: 384 }, (_, k) => Math.sin(k)),
      sourceTimeMs: BigInt(interest.sourceTimeMs),
      model,
      ingestTimeMs: BigInt(ingestTimeMs),
    });
    const before = await bytesOf();
    await publishInterestEmbedding(bus, partitionOf(interest.userid, PARTITIONS), embedding);
    const stored = (await bytesOf()) - before;
    // The room for a model name of 64 bytes is all the count holds beyond what was stored.
    expect(counted - stored).toBe(64 - model.length);
  }
});

it("publishes an erasure on the user's CLICKS subject after the user's clicks, read by consumers as the erasure, not as clicks", async () => {
  const before = (await bus.jsm.streams.info(bus.topology.clicksStream)).state.last_seq;
  await publisher.publishClicks(clicksOfUsers(["erased"], 2, "e"), 1);
  const erased = await publisher.publishUserDeleted("erased", 1_700_000_000_123);
  const last = (await bus.jsm.streams.info(bus.topology.clicksStream)).state.last_seq;
  expect(Number(erased.streamSequence)).toBe(last);
  const m = (await bus.jsm.streams.getMessage(bus.topology.clicksStream, { seq: last }))!;
  expect(m.subject).toBe(bus.topology.clicksSubject(partitionOf("erased", PARTITIONS)));
  expect(readClicks({ data: m.data, headers: m.header })).toEqual({
    clicks: [],
    checked: [],
    deletion: { eventId: erased.eventId, userid: "erased", ingestTimeMs: 1_700_000_000_123 },
  });
  expect(last).toBe(before + 2);
});

it("keeps one visibility message per url, the latest", async () => {
  await publisher.publishVisibility("https://e.org/hide-me", true, 1);
  await publisher.publishVisibility("https://e.org/other", true, 2);
  const shown = await publisher.publishVisibility("https://e.org/hide-me", false, 3);
  const info = await bus.jsm.streams.info(bus.topology.visibilityStream);
  expect(info.state.messages).toBe(2);
  const m = (await bus.jsm.streams.getMessage(bus.topology.visibilityStream, {
    last_by_subj: bus.topology.visibilitySubject(urlKey("https://e.org/hide-me")),
  }))!;
  expect(m.seq).toBe(Number(shown.streamSequence));
  expect(fromBinary(PageVisibilitySchema, m.data)).toMatchObject({ url: "https://e.org/hide-me", hidden: false, ingestTimeMs: 3n });
});

it("waits for the consumers of an admin event until each applied it, and names those that had not when the wait ends", async () => {
  const stream = bus.topology.visibilityStream;
  await ensureDurableConsumer(bus.jsm, stream, { durable_name: "wait-test", filter_subject: bus.topology.visibilitySubjects });
  // A consumer of other subjects is not waited for.
  await ensureDurableConsumer(bus.jsm, stream, { durable_name: "wait-test-p1", filter_subject: bus.topology.visibilitySubject("elsewhere") });
  const hidden = Number((await publisher.publishVisibility("https://e.org/wait", true, 4)).streamSequence);
  const subject = bus.topology.visibilitySubject(urlKey("https://e.org/wait"));
  // A durable that does not exist (a service not deployed) is not waited for; one that has not acked is.
  expect(await waitApplied(bus, stream, hidden, subject, ["wait-test", "not-deployed"], 200)).toEqual(["wait-test"]);
  const consumer = await bus.js.consumers.get(stream, "wait-test");
  const acking = (async () => {
    for (;;) {
      const m = await consumer.next({ expires: 1_000 });
      if (!m) continue;
      await m.ackAck();
      if (m.seq >= hidden) return;
    }
  })();
  expect(await waitApplied(bus, stream, hidden, subject, ["wait-test"], 10_000)).toEqual([]);
  await acking;
});

it("matches subjects as NATS does", () => {
  expect(subjectMatches("clicks.>", "clicks.3")).toBe(true);
  expect(subjectMatches("clicks.3", "clicks.3")).toBe(true);
  expect(subjectMatches("clicks.3", "clicks.4")).toBe(false);
  expect(subjectMatches("clicks.*", "clicks.4")).toBe(true);
  expect(subjectMatches("clicks.*", "clicks.4.x")).toBe(false);
  expect(subjectMatches("clicks.>", "clicks")).toBe(false);
});
