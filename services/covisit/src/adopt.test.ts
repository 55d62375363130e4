import { AckPolicy, connectBus, consumerNames, DeliverPolicy, type Bus } from "@recsys/bus";
import { createLogger } from "@recsys/logging";
import { afterAll, beforeAll, expect, it } from "vitest";
import { adoptSingleDurable, clickDurables, consumerNeverDelivered } from "./consumer.js";

// The single durable of earlier versions.
const DURABLE = consumerNames("covisit", "clicks").durable;

// Against the real NATS, in a namespace of its own.
const namespace = `unit${process.pid}adopt`;
const PARTITIONS = 2;
let bus: Bus;

beforeAll(async () => {
  bus = await connectBus({ url: process.env.NATS_URL ?? "nats://127.0.0.1:4222", name: "adopt-test", namespace, logger: createLogger("adopt-test") });
});
afterAll(async () => {
  for (const s of bus.topology.streamConfigs()) await bus.jsm.streams.delete(s.name).catch(() => false);
  await bus.close();
});

/** The durable covisit consumed CLICKS with before it had one per partition. */
async function singleDurableOfEarlierVersions() {
  const stream = bus.topology.clicksStream;
  await bus.jsm.consumers.add(stream, {
    durable_name: DURABLE,
    filter_subject: bus.topology.clicksSubjects,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
  });
  return bus.js.consumers.get(stream, DURABLE);
}

it("replaces the single durable of earlier versions by partition durables that start after its ack floor", async () => {
  const stream = bus.topology.clicksStream;
  // Ten messages, alternating partitions; the earlier version's durable acked the first four.
  for (let i = 1; i <= 10; i++) await bus.js.publish(bus.topology.clicksSubject(i % PARTITIONS), new TextEncoder().encode(`m${i}`));
  const old = await singleDurableOfEarlierVersions();
  const fetched = await old.fetch({ max_messages: 4, expires: 2_000 });
  for await (const m of fetched) await m.ackAck();
  expect(await consumerNeverDelivered(bus, PARTITIONS)).toBe(false);

  await adoptSingleDurable(bus, PARTITIONS, createLogger("adopt-test"));

  const names = (await bus.jsm.consumers.list(stream).next()).map((c) => c.name).sort();
  expect(names).toEqual(
    clickDurables(bus, PARTITIONS)
      .map((d) => d.durable)
      .sort(),
  );
  // Each partition durable delivers its partition's messages after the floor, in order, nothing before.
  const seen: string[] = [];
  for (const { durable } of clickDurables(bus, PARTITIONS)) {
    const consumer = await bus.js.consumers.get(stream, durable);
    const batch = await consumer.fetch({ max_messages: 10, expires: 1_000 });
    for await (const m of batch) {
      seen.push(new TextDecoder().decode(m.data));
      m.ack();
    }
  }
  expect(seen.sort()).toEqual(["m10", "m5", "m6", "m7", "m8", "m9"]);
  // A second start finds nothing to adopt.
  await adoptSingleDurable(bus, PARTITIONS, createLogger("adopt-test"));
  expect((await bus.jsm.consumers.list(stream).next()).length).toBe(PARTITIONS);
});

it("refuses to adopt while a covisit of the earlier version still pulls from the single durable", async () => {
  const stream = bus.topology.clicksStream;
  const old = await singleDurableOfEarlierVersions();
  // A pull waiting for messages, as a running covisit always has.
  const waiting = await old.fetch({ max_messages: 100, expires: 5_000 });
  const drained = (async () => {
    for await (const m of waiting) m.ack();
  })();
  await expect(adoptSingleDurable(bus, PARTITIONS, createLogger("adopt-test"), 500)).rejects.toThrow(/earlier version is consuming/);
  await drained;
  await bus.jsm.consumers.delete(stream, DURABLE);
}, 15_000);
