import { create, toBinary } from "@bufbuild/protobuf";
import { connectBus, ensureStreams, typedHeaders, urlKey, type Bus } from "@recsys/bus";
import { PageVisibilitySchema } from "@recsys/contracts/events/v1/events";
import { createLogger } from "@recsys/logging";
import { DependencyHealth } from "@recsys/metrics";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { prepareRebuild } from "./rebuild.js";
import { CovisitStore } from "./redis-store.js";
import { applyVisibilityMessage, runVisibilityConsumer, visibilityCaughtUp, visibilityConsumerExists } from "./visibility-consumer.js";

// Against the real Redis and NATS, in a namespace of their own.
const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const namespace = `unit${process.pid}visibility`;
const store = new CovisitStore(redis, namespace, 300_000);
const logger = createLogger("visibility-test");
const T0 = Date.parse("2024-01-02T00:00:00Z");
const [a, b, c, d] = ["a", "b", "c", "d"].map((p) => `https://e.org/${p}`) as [string, string, string, string];
let bus: Bus;

const payload = (url: string, hidden: boolean) => toBinary(PageVisibilitySchema, create(PageVisibilitySchema, { eventId: `${url}-${hidden}`, url, hidden }));

async function clearNamespace() {
  const keys = await redis.keys(`${namespace}:*`);
  if (keys.length) await redis.del(...keys);
}
beforeAll(async () => {
  bus = await connectBus({ url: process.env.NATS_URL ?? "nats://127.0.0.1:4222", name: "visibility-test", namespace, logger });
});
beforeEach(async () => {
  await clearNamespace();
  await store.markFirstClick();
  // a, then b, c or d after it, each by users of their own: b 3, c 2, d 1.
  for (const [i, to] of [b, b, b, c, c, d].entries()) {
    await store.applyClicks([
      { eventId: `${i}a`, userid: `v${i}`, url: a, eventTimeMs: T0, event: "view" },
      { eventId: `${i}b`, userid: `v${i}`, url: to, eventTimeMs: T0 + 1_000, event: "view" },
    ]);
  }
});
afterAll(async () => {
  for (const s of bus.topology.streamConfigs()) await bus.jsm.streams.delete(s.name).catch(() => false);
  await bus.close();
  await clearNamespace();
  redis.disconnect();
});

const listed = async () => (await store.coVisitsAfter(a, 10)).map((x) => x.recommendation);

it("applies a VISIBILITY message by its sequence, whatever the delivery order, and dead-letters one that does not decode", async () => {
  expect(await applyVisibilityMessage({ seq: 8, data: payload(b, true) }, store)).toEqual({ kind: "ack" });
  // The older state, delivered after (another replica, a redelivery): acked, and nothing changes.
  expect(await applyVisibilityMessage({ seq: 5, data: payload(b, false) }, store)).toEqual({ kind: "ack" });
  expect(await listed()).toEqual([c, d]);
  expect(await applyVisibilityMessage({ seq: 9, data: payload(b, false) }, store)).toEqual({ kind: "ack" });
  expect(await listed()).toEqual([b, c, d]);
  expect(await applyVisibilityMessage({ seq: 10, data: Uint8Array.of(0xff, 0xff, 0xff, 0x07) }, store)).toMatchObject({
    kind: "dead-letter",
    cause: "undecodable",
  });
  expect(await applyVisibilityMessage({ seq: 11, data: payload("", true) }, store)).toMatchObject({ kind: "dead-letter", reason: "undecodable: missing url" });
});

it("reads every hidden page again from the compacted stream after the rebuild emptied Redis", async () => {
  await ensureStreams(bus.jsm, bus.topology);
  const publish = (url: string, hidden: boolean) =>
    bus.js.publish(bus.topology.visibilitySubject(urlKey(url)), payload(url, hidden), { headers: typedHeaders(PageVisibilitySchema.typeName) });
  // c hidden then shown (the stream keeps only the latest), b and d hidden.
  await publish(c, true);
  await publish(b, true);
  await publish(c, false);
  await publish(d, true);

  const consume = async () => {
    const stop = new AbortController();
    const running = runVisibilityConsumer({ bus, store, redis: new DependencyHealth("redis"), logger, concurrency: 2, signal: stop.signal });
    await visibilityCaughtUp(bus, logger, stop.signal);
    stop.abort();
    await running;
  };
  expect(await visibilityConsumerExists(bus)).toBe(false);
  await consume();
  expect(await listed()).toEqual([c]);

  // Redis loses its data; the rebuild deletes what is left and the durable, and covisit's start reads the stream from its first message.
  const { keysDeleted } = await prepareRebuild({ bus, redis, namespace, waitMs: 0 });
  expect(keysDeleted).toBeGreaterThan(0);
  expect(await visibilityConsumerExists(bus)).toBe(false);
  await store.markFirstClick();
  await store.applyClicks([
    { eventId: "r1", userid: "r", url: a, eventTimeMs: T0, event: "view" },
    { eventId: "r2", userid: "r", url: b, eventTimeMs: T0 + 1, event: "view" },
    { eventId: "r3", userid: "r", url: c, eventTimeMs: T0 + 2, event: "view" },
    { eventId: "r4", userid: "r", url: d, eventTimeMs: T0 + 3, event: "view" },
  ]);
  expect(await listed()).toEqual([b, c, d]);
  await consume();
  expect(await listed()).toEqual([c]);
}, 30_000);
