import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { consumedMessages, embedBatchSize, metricSamples, registry, setServiceName, timeCalls, watchConsumerLag } from "./index.js";

describe("metrics", () => {
  it("exposes counters and the lag read at scrape time in Prometheus text, labelled with the service", async () => {
    setServiceName("unit");
    consumedMessages.inc({ stream: "CLICKS", consumer: "covisit", outcome: "ack" }, 3);
    let pending = 5n;
    watchConsumerLag(async () => ({ stream: "CLICKS", consumer: "covisit", pending, ackPending: 2n }));
    const first = await registry.metrics();
    expect(first).toContain('recsys_consumed_messages_total{stream="CLICKS",consumer="covisit",outcome="ack",service="unit"} 3');
    expect(first).toContain('recsys_consumer_lag_messages{stream="CLICKS",consumer="covisit",service="unit"} 7');
    pending = 0n;
    expect(await registry.metrics()).toContain('recsys_consumer_lag_messages{stream="CLICKS",consumer="covisit",service="unit"} 2');
    expect(first).toMatch(/^process_resident_memory_bytes\{service="unit"\} \d+/m);
  });

  it("gives the same series as samples for /metrics.json: histogram parts by name, every label a string", async () => {
    setServiceName("unit");
    embedBatchSize.observe(3);
    const samples = await metricSamples();
    const text = await registry.metrics();
    const of = (name: string) => samples.filter((s) => s.name === name);
    expect(of("recsys_embed_batch_size_bucket").find((s) => s.labels.le === "4")).toEqual({
      name: "recsys_embed_batch_size_bucket",
      labels: { le: "4", service: "unit" },
      value: 1,
    });
    expect(of("recsys_embed_batch_size_bucket").find((s) => s.labels.le === "+Inf")?.value).toBe(1);
    expect(of("recsys_embed_batch_size_sum")).toEqual([{ name: "recsys_embed_batch_size_sum", labels: { service: "unit" }, value: 3 }]);
    // Every series of the text format is there.
    const names = new Set(
      text
        .split("\n")
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => l.split(/[{ ]/)[0]),
    );
    expect(new Set(samples.map((s) => s.name))).toEqual(names);
  });

  it("times every async method call of a store under its name, and leaves the object working as before", async () => {
    class Store {
      calls = 0;
      async find(x: number) {
        this.calls++;
        await sleep(5);
        return x * 2;
      }
      name() {
        return "plain";
      }
    }
    const inner = new Store();
    const store = timeCalls(inner, "unitdb");
    expect(await store.find(21)).toBe(42);
    await expect(Promise.all([store.find(1), store.find(2)])).resolves.toEqual([2, 4]);
    expect(store.name()).toBe("plain");
    expect(inner.calls).toBe(3);
    const text = await registry.metrics();
    expect(text).toMatch(/^recsys_dependency_duration_seconds_count\{(?=[^}]*dependency="unitdb")(?=[^}]*operation="find")[^}]*\} 3$/m);
    expect(text).not.toMatch(/operation="name"/);
  });
});
