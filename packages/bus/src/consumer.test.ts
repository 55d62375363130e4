import { createLogger } from "@recsys/logging";
import { DependencyHealth, registry } from "@recsys/metrics";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectBus, deadLettered, runDurableConsumer, type Bus } from "./index.js";

// Against the real NATS of this machine, in a namespace of its own.
const namespace = `unit${process.pid}bus`;
let bus: Bus;

beforeAll(async () => {
  bus = await connectBus({ url: process.env.NATS_URL ?? "nats://127.0.0.1:4222", name: "bus-test", namespace, logger: createLogger("bus-test") });
});
afterAll(async () => {
  for (const s of bus.topology.streamConfigs()) await bus.jsm.streams.delete(s.name).catch(() => false);
  await bus.close();
});

/** The newest letter a source filed, whatever it was filed under (a message, a user). */
async function lastLetter(source: string) {
  const stream = bus.topology.deadLetterStream;
  const { state } = await bus.jsm.streams.info(stream, { subjects_filter: `${bus.topology.deadLetterSubject(source)}.>` });
  const letters = await Promise.all(Object.keys(state.subjects ?? {}).map((s) => bus.jsm.streams.getMessage(stream, { last_by_subj: s })));
  return letters.sort((a, b) => (b?.seq ?? 0) - (a?.seq ?? 0))[0] ?? null;
}

describe("runDurableConsumer", () => {
  it("in order per partition: a message retried (or redelivered) comes before anything newer of its partition, while other partitions go on", async () => {
    const stop = new AbortController();
    const handled: string[] = [];
    const health = new DependencyHealth("ordered-test-store");
    let failures = 0;
    const consuming = runDurableConsumer({
      bus,
      stream: bus.topology.engagementStream,
      durable: "ordered-test",
      filterSubject: bus.topology.likesSubjects,
      inOrder: { partitions: 2, subject: (p) => bus.topology.likesSubject(p) },
      dependency: health,
      concurrency: 2,
      maxBatch: 8,
      deadLetterSource: "ordered-test",
      logger: createLogger("bus-test"),
      signal: stop.signal,
      async handleBatch(messages) {
        return messages.map((m) => {
          const body = new TextDecoder().decode(m.data);
          // The first message of partition 0 finds its store down twice.
          if (body === "p0 first" && failures < 2) {
            failures++;
            return { kind: "retry", reason: "store down" };
          }
          handled.push(body);
          return { kind: "ack" };
        });
      },
    });
    for (let i = 0; i < 5; i++) {
      await bus.js.publish(bus.topology.likesSubject(0), new TextEncoder().encode(i === 0 ? "p0 first" : `p0 ${i}`));
      await bus.js.publish(bus.topology.likesSubject(1), new TextEncoder().encode(`p1 ${i}`));
    }
    await expect.poll(() => handled.filter((h) => h.startsWith("p1")).length, { timeout: 10_000, interval: 20 }).toBe(5);
    // Partition 1 went on while partition 0 waited for its first message's redelivery.
    expect(handled.filter((h) => h.startsWith("p0"))).toEqual([]);
    await expect.poll(() => handled.filter((h) => h.startsWith("p0")), { timeout: 10_000, interval: 50 }).toEqual(["p0 first", "p0 1", "p0 2", "p0 3", "p0 4"]);
    expect(failures).toBe(2);
    // The store was reported failing at each retry, and working again once a write went through.
    expect(await registry.metrics()).toMatch(/recsys_dependency_failures_total\{dependency="ordered-test-store"\} 2\n/);
    expect(health.failing).toBe(false);
    stop.abort();
    await consuming;
  });

  it("dead-letters a message whose effect keeps throwing after maxDeliveries, and goes on with the next", async () => {
    const stop = new AbortController();
    const attempts = new Map<string, number>();
    const applied: string[] = [];
    const consuming = runDurableConsumer({
      bus,
      stream: bus.topology.clicksStream,
      durable: "poison-test",
      filterSubject: bus.topology.clicksSubjects,
      concurrency: 1,
      deadLetterSource: "poison-test",
      logger: createLogger("bus-test"),
      signal: stop.signal,
      maxDeliveries: 3,
      async handle(m) {
        const body = new TextDecoder().decode(m.data);
        attempts.set(body, (attempts.get(body) ?? 0) + 1);
        if (body === "poison") throw new Error("cannot apply this one");
        if (body === "database down" && attempts.get(body)! < 5) return { kind: "retry", delayMs: 50, reason: "database down" };
        applied.push(body);
        return { kind: "ack" };
      },
    });
    for (const body of ["poison", "database down", "fine"]) await bus.js.publish(bus.topology.clicksSubject(0), new TextEncoder().encode(body));
    await expect.poll(() => applied.length, { timeout: 20_000, interval: 50 }).toBe(2);
    await expect.poll(() => deadLettered(bus, "poison-test"), { timeout: 20_000, interval: 100 }).toBe(1n);
    stop.abort();
    await consuming;
    // The poison message was tried exactly maxDeliveries times, then kept with its reason.
    expect(attempts.get("poison")).toBe(3);
    const dead = await lastLetter("poison-test");
    expect(new TextDecoder().decode(dead!.data)).toBe("poison");
    expect(dead!.header.get("recsys-reason")).toMatch(/^failed 3 deliveries, last: Error: cannot apply this one/);
    // An explicit retry (a dependency down) is never given up: it was applied on its 5th delivery.
    expect(applied.sort()).toEqual(["database down", "fine"]);
    expect(attempts.get("database down")).toBe(5);
  });

  it("hands a backlog over in batches of at most maxBatch, each message once, and isolates a poison message in a batch", async () => {
    const stop = new AbortController();
    const subject = bus.topology.clicksSubject(1);
    const bodies = Array.from({ length: 300 }, (_, i) => (i === 137 ? "poison" : `click ${i}`));
    // A backlog first, so that the consumer finds more than one batch waiting.
    for (const body of bodies) await bus.js.publish(subject, new TextEncoder().encode(body));
    const batchSizes: number[] = [];
    const applied: string[] = [];
    const consuming = runDurableConsumer({
      bus,
      stream: bus.topology.clicksStream,
      durable: "batch-test",
      filterSubject: subject,
      concurrency: 2,
      maxBatch: 64,
      deadLetterSource: "batch-test",
      logger: createLogger("bus-test"),
      signal: stop.signal,
      maxDeliveries: 2,
      async handleBatch(messages) {
        batchSizes.push(messages.length);
        const texts = messages.map((m) => new TextDecoder().decode(m.data));
        if (texts.includes("poison")) throw new Error("cannot apply this one");
        applied.push(...texts);
        return messages.map(() => ({ kind: "ack" as const }));
      },
    });
    await expect.poll(() => applied.length, { timeout: 20_000, interval: 50 }).toBe(299);
    await expect.poll(() => deadLettered(bus, "batch-test"), { timeout: 20_000, interval: 100 }).toBe(1n);
    stop.abort();
    await consuming;
    expect(new Set(applied).size).toBe(299);
    expect(applied).not.toContain("poison");
    expect(Math.max(...batchSizes)).toBeLessThanOrEqual(64);
    // The backlog went in batches, not one message at a time.
    expect(Math.max(...batchSizes)).toBeGreaterThan(1);
    expect(batchSizes.length).toBeLessThan(150);
    const dead = await lastLetter("batch-test");
    expect(new TextDecoder().decode(dead!.data)).toBe("poison");
    expect(dead!.header.get("recsys-reason")).toMatch(/^failed 2 deliveries, last: Error: cannot apply this one/);
  });

  it("with a linger, a message that finds the consumer caught up waits, and what arrives meanwhile goes in its batch", async () => {
    const stop = new AbortController();
    const subject = bus.topology.clicksSubject(2);
    const batches: string[][] = [];
    const consuming = runDurableConsumer({
      bus,
      stream: bus.topology.clicksStream,
      durable: "linger-test",
      filterSubject: subject,
      concurrency: 2,
      maxBatch: 64,
      lingerMs: 1_500,
      deadLetterSource: "linger-test",
      logger: createLogger("bus-test"),
      signal: stop.signal,
      async handleBatch(messages) {
        batches.push(messages.map((m) => new TextDecoder().decode(m.data)));
        return messages.map(() => ({ kind: "ack" as const }));
      },
    });
    // The consumer is waiting for messages before the first one comes.
    await expect
      .poll(async () => (await bus.jsm.consumers.info(bus.topology.clicksStream, "linger-test").catch(() => undefined))?.num_waiting ?? 0)
      .toBeGreaterThan(0);
    await bus.js.publish(subject, new TextEncoder().encode("first"));
    await new Promise((r) => setTimeout(r, 100));
    for (const body of ["second", "third"]) await bus.js.publish(subject, new TextEncoder().encode(body));
    await expect.poll(() => batches.flat().length, { timeout: 10_000, interval: 20 }).toBe(3);
    // Without the linger, "first" went alone as soon as it came.
    expect(batches).toEqual([["first", "second", "third"]]);
    stop.abort();
    await consuming;
  });

  it("with a linger, a backlog goes at once: only a message with nothing behind it waits", async () => {
    const stop = new AbortController();
    const subject = bus.topology.clicksSubject(3);
    for (let i = 0; i < 200; i++) await bus.js.publish(subject, new TextEncoder().encode(`click ${i}`));
    const sizes: number[] = [];
    const t0 = performance.now();
    const consuming = runDurableConsumer({
      bus,
      stream: bus.topology.clicksStream,
      durable: "linger-backlog-test",
      filterSubject: subject,
      concurrency: 1,
      maxBatch: 10,
      lingerMs: 5_000,
      deadLetterSource: "linger-backlog-test",
      logger: createLogger("bus-test"),
      signal: stop.signal,
      async handleBatch(messages) {
        sizes.push(messages.length);
        return messages.map(() => ({ kind: "ack" as const }));
      },
    });
    await expect.poll(() => sizes.reduce((a, b) => a + b, 0), { timeout: 30_000, interval: 20 }).toBe(200);
    // At least 20 batches, which one linger each would have spread over 100 s: at most the last message waited.
    expect(sizes.length).toBeGreaterThanOrEqual(20);
    expect(performance.now() - t0).toBeLessThan(2 * 5_000);
    stop.abort();
    await consuming;
  });

  it("keeps the items a message's effect could not apply in DEAD_LETTERS, one each, and acks the message", async () => {
    const stop = new AbortController();
    const subject = bus.topology.clicksSubject(2);
    await bus.js.publish(subject, new TextEncoder().encode("a,LATE,c,LATE"));
    const consuming = runDurableConsumer({
      bus,
      stream: bus.topology.clicksStream,
      durable: "items-test",
      filterSubject: subject,
      concurrency: 1,
      maxBatch: 8,
      deadLetterSource: "items-test",
      logger: createLogger("bus-test"),
      signal: stop.signal,
      async handleBatch(messages) {
        return messages.map((m) => {
          const items = new TextDecoder().decode(m.data).split(",");
          const deadLetters = items.flatMap((item, index) =>
            item === "LATE"
              ? [{ index, data: new TextEncoder().encode(`item ${index}`), contentType: "text/plain", cause: "late" as const, reason: "late: watermark x" }]
              : [],
          );
          return { kind: "ack" as const, deadLetters };
        });
      },
    });
    await expect.poll(() => deadLettered(bus, "items-test"), { timeout: 20_000, interval: 100 }).toBe(2n);
    await expect.poll(async () => (await bus.jsm.consumers.info(bus.topology.clicksStream, "items-test")).num_ack_pending, { timeout: 10_000 }).toBe(0);
    stop.abort();
    await consuming;
    const last = await lastLetter("items-test");
    expect(new TextDecoder().decode(last!.data)).toBe("item 3");
    expect(last!.header.get("recsys-source-item")).toBe("3");
    expect(last!.header.get("recsys-reason")).toBe("late: watermark x");
    expect(last!.header.get("content-type")).toBe("text/plain");
  });
});
