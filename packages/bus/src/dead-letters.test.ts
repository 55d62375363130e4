import { create } from "@bufbuild/protobuf";
import type { JsMsg } from "@nats-io/jetstream";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { createLogger } from "@recsys/logging";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clickDeadLetter } from "./clicks.js";
import { connectBus, type Bus } from "./connection.js";
import { deadLetter, deadLettered, deadLetterItem } from "./dead-letters.js";
import { ensureStreams, Topology, type StreamLimits } from "./topology.js";

// Against the real NATS of this machine, in a namespace of its own. DEAD_LETTERS drops its oldest letters past its size: one user
// sending back-dated clicks (each a late letter) must not push everyone else's letters out before an operator reads them.

const namespace = `unit${process.pid}dlq`;
const MiB = 1024 * 1024;
const limits: StreamLimits = {
  clicksMaxBytes: 64 * MiB,
  clicksMaxAgeMs: 7 * 24 * 3600_000,
  contentMaxBytes: 64 * MiB,
  contentMaxAgeMs: 7 * 24 * 3600_000,
  embeddingsMaxBytes: 64 * MiB,
  engagementMaxBytes: 64 * MiB,
  engagementMaxAgeMs: 7 * 24 * 3600_000,
  interestEmbeddingsMaxBytes: 64 * MiB,
  interestEmbeddingsMaxAgeMs: 7 * 24 * 3600_000,
  // Small enough that the flood below overflows it: 5 MiB instead of 256, the letters kept per user (1,000) as deployed.
  deadLettersMaxBytes: 5 * MiB,
  deadLettersMaxAgeMs: 30 * 24 * 3600_000,
  deadLettersPerUser: 1_000,
  clickMetricsMaxBytes: 64 * MiB,
  visibilityMaxBytes: 64 * MiB,
  replicas: 1,
};
let bus: Bus;

beforeAll(async () => {
  bus = await connectBus({ url: process.env.NATS_URL ?? "nats://127.0.0.1:4222", name: "dlq-test", namespace, logger: createLogger("bus-test"), limits });
});
afterAll(async () => {
  for (const s of bus.topology.streamConfigs()) await bus.jsm.streams.delete(s.name).catch(() => false);
  await bus.close();
});

/** A CLICKS message as a consumer holds it: only what a letter records of it. */
const source = (seq: number) => ({ seq, subject: bus.topology.clicksSubject(0), headers: undefined }) as unknown as JsMsg;
// About 2 KB a letter, as a click with a long url.
const click = (userid: string, n: number) => create(ClickSchema, { eventId: `e${n}`, userid, url: `https://e.org/${"p".repeat(2_000)}${n}`, event: "view" });
const late = { cause: "late", reason: "late: before the watermark" } as const;

describe("DEAD_LETTERS", () => {
  it("keeps every other user's letters while one user floods it with late clicks: that user's oldest go", async () => {
    const stream = bus.topology.deadLetterStream;
    await deadLetterItem(bus, source(1), bus.topology.clicksStream, "clicks", clickDeadLetter([click("alice", 1)], 0, late));
    await deadLetter(bus, source(2), bus.topology.clicksStream, "clicks", { cause: "undecodable", reason: "undecodable: truncated" });
    // 2,600 late clicks of one user, about 5.3 MB: more than the stream's size.
    for (let i = 0; i < 2_600; i += 100)
      await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          deadLetterItem(bus, source(10 + i + j), bus.topology.clicksStream, "clicks", clickDeadLetter([click("mallory", i + j)], 0, late)),
        ),
      );

    const alice = await bus.jsm.streams.getMessage(stream, { last_by_subj: bus.topology.deadLetterSubject("clicks", { userid: "alice" }) });
    expect(alice?.header.get("recsys-source-sequence")).toBe("1");
    const undecodable = await bus.jsm.streams.getMessage(stream, { last_by_subj: bus.topology.deadLetterSubject("clicks", { sequence: 2 }) });
    expect(undecodable?.header.get("recsys-cause")).toBe("undecodable");
    // Mallory's newest 1,000 are kept, the oldest gone.
    const mallory = bus.topology.deadLetterSubject("clicks", { userid: "mallory" });
    const info = await bus.jsm.streams.info(stream, { subjects_filter: mallory });
    expect(info.state.subjects?.[mallory]).toBe(1_000);
    const first = await bus.jsm.streams.getMessage(stream, { seq: info.state.first_seq });
    expect(first?.subject).toBe(bus.topology.deadLetterSubject("clicks", { userid: "alice" }));
    expect(await deadLettered(bus, "clicks")).toBe(1_002n);
  });

  it("keeps the letters filed before under their source alone when they outnumber the new limit, applies it once they are purged, and lowers it", async () => {
    const ns = `${namespace}old`;
    const old = await connectBus({
      url: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
      name: "dlq-test-old",
      namespace: ns,
      logger: createLogger("bus-test"),
    });
    try {
      const stream = old.topology.deadLetterStream;
      const legacy = old.topology.deadLetterSubject("clicks");
      for (let i = 0; i < 1_200; i += 100)
        await Promise.all(Array.from({ length: 100 }, (_, j) => old.js.publish(legacy, new TextEncoder().encode(`letter ${i + j}`))));
      const limited = new Topology(ns, limits);
      await ensureStreams(old.jsm, limited);
      let info = await old.jsm.streams.info(stream);
      expect(info.state.messages).toBe(1_200);
      expect(await deadLettered(old, "clicks")).toBe(1_200n);
      expect(info.config.max_msgs_per_subject).toBeLessThanOrEqual(0);
      await old.jsm.streams.purge(stream, { filter: legacy });
      await ensureStreams(old.jsm, limited);
      info = await old.jsm.streams.info(stream);
      expect(info.config.max_msgs_per_subject).toBe(1_000);
      // A lower limit configured later applies to the users' letters: their oldest past it go, as configured.
      const user = limited.deadLetterSubject("clicks", { userid: "bob" });
      for (let i = 0; i < 600; i += 100)
        await Promise.all(Array.from({ length: 100 }, (_, j) => old.js.publish(user, new TextEncoder().encode(`letter ${i + j}`))));
      await ensureStreams(old.jsm, new Topology(ns, { ...limits, deadLettersPerUser: 500 }));
      info = await old.jsm.streams.info(stream, { subjects_filter: user });
      expect({ limit: info.config.max_msgs_per_subject, kept: info.state.subjects?.[user] }).toEqual({ limit: 500, kept: 500 });
      // Counted with letters filed before under the source alone, and without another source's.
      await old.js.publish(legacy, new TextEncoder().encode("a letter of before"));
      await old.js.publish(limited.deadLetterSubject("clicks-visibility", { sequence: 1 }), new TextEncoder().encode("another source's"));
      expect(await deadLettered(old, "clicks")).toBe(501n);
    } finally {
      for (const s of old.topology.streamConfigs()) await old.jsm.streams.delete(s.name).catch(() => false);
      await old.close();
    }
  });
});
