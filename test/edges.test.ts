import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { connect, headers } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { startStack, type TestStack } from "./harness/stack.js";

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;
const T = "2024-01-02T00:00:00Z";
const at = (minutes: number) => new Date(Date.parse(T) + minutes * 60_000).toISOString();

beforeAll(async () => {
  stack = await startStack("edges");
  c = clientsOf(stack);
});
afterAll(async () => stack?.stop());

async function clicksStored(): Promise<number> {
  const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
  try {
    const jsm = await jetstreamManager(nc);
    return (await jsm.streams.info(`${stack.namespace.toUpperCase()}_CLICKS`)).state.messages;
  } finally {
    await nc.close();
  }
}

async function codeAndMessage(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await p;
  } catch (err) {
    const ce = ConnectError.from(err);
    return { code: ce.code, message: ce.rawMessage };
  }
  throw new Error("the call succeeded");
}

async function waitApplied() {
  const target = BigInt(await clicksStored());
  for (let i = 0; i < 200; i++) {
    if ((await c.covisit.progress({})).ackFloorStreamSequence >= target) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("covisit did not catch up");
}

describe("bad input is refused, names the field, and writes nothing", () => {
  const good = { userid: "u-bad", url: "https://en.wikipedia.org/wiki/Apache_Flink", eventTime: T, eventId: "" };
  const cases: Array<[string, () => Promise<unknown>, string]> = [];
  beforeAll(() => {
    cases.push(
      ["empty userid", () => c.gateway.clickstream({ event: { ...good, userid: "" } }), "event.userid"],
      ["userid over 256 chars", () => c.gateway.clickstream({ event: { ...good, userid: "u".repeat(257) } }), "event.userid"],
      ["relative url", () => c.gateway.clickstream({ event: { ...good, url: "/wiki/Apache_Flink" } }), "event.url"],
      ["ftp url", () => c.gateway.clickstream({ event: { ...good, url: "ftp://example.org/x" } }), "event.url"],
      ["url over 2048 chars", () => c.gateway.clickstream({ event: { ...good, url: `https://e.org/${"x".repeat(2048)}` } }), "event.url"],
      ["time not RFC 3339", () => c.gateway.clickstream({ event: { ...good, eventTime: "02/01/2024 00:00" } }), "event.event_time"],
      ["time two days ahead", () => c.gateway.clickstream({ event: { ...good, eventTime: new Date(Date.now() + 2 * 86_400_000).toISOString() } }), "event.event_time"],
      ["missing event", () => c.gateway.clickstream({}), "event"],
      ["limit 0", () => c.gateway.recommendation({ url: good.url, limit: 0 }), "limit"],
      ["limit 1001", () => c.gateway.recommendation({ url: good.url, limit: 1001 }), "limit"],
      ["recommendation of a non-url", () => c.gateway.recommendation({ url: "Apache Flink" }), "url"],
      ["empty batch at ingest", () => c.ingest.publishClicks({ clicks: [] }), "clicks"],
    );
  });

  it("answers InvalidArgument naming the field for each", async () => {
    const before = await clicksStored();
    for (const [name, call, field] of cases) {
      const { code, message } = await codeAndMessage(call());
      expect({ name, code: Code[code], field: message.split(":")[0] }).toEqual({ name, code: "InvalidArgument", field });
    }
    expect(await clicksStored()).toBe(before);
  });

  it("reports rejected clicks of a batch one by one and still publishes the valid ones", async () => {
    const before = await clicksStored();
    const res = await c.ingest.publishClicks({
      clicks: [
        { userid: "mix", url: "https://e.org/1", eventTime: T },
        { userid: "", url: "https://e.org/2", eventTime: T },
        { userid: "mix", url: "https://e.org/3", eventTime: "not a time" },
        { userid: "mix", url: "https://e.org/4", eventTime: at(1) },
      ],
    });
    expect(res.results.map((r) => (r.outcome.case === "rejected" ? r.outcome.value.field : r.outcome.case))).toEqual([
      "accepted",
      "userid",
      "event_time",
      "accepted",
    ]);
    expect(await clicksStored()).toBe(before + 2);
  });

  it("refuses a request body over 1 MiB", async () => {
    const before = await clicksStored();
    const res = await fetch(`${stack.url.gateway}/recsys.gateway.v1.GatewayService/Clickstream`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ event: { userid: "big", url: `https://e.org/${"x".repeat(1_100_000)}` } }),
    });
    expect(res.ok).toBe(false);
    const body = (await res.json()) as { code: string; message: string };
    expect(body.code).toBe("resource_exhausted");
    expect(body.message).toMatch(/1048576|max/);
    expect(await clicksStored()).toBe(before);
  });
});

describe("idempotency and lateness", () => {
  it("accepts the same batch twice, stores it once, counts it once", async () => {
    const batch = { clicks: [{ userid: "twice", url: "https://e.org/a", eventTime: T }, { userid: "twice", url: "https://e.org/b", eventTime: at(2) }] };
    const first = await c.ingest.publishClicks(batch);
    const before = await clicksStored();
    const second = await c.ingest.publishClicks(batch);
    expect(await clicksStored()).toBe(before);
    expect(second.results.map((r) => r.outcome.case === "accepted" && r.outcome.value.duplicate)).toEqual([true, true]);
    expect(second.results.map((r) => r.outcome.value?.$typeName === "recsys.ingest.v1.AcceptedClick" && r.outcome.value.eventId)).toEqual(
      first.results.map((r) => r.outcome.value?.$typeName === "recsys.ingest.v1.AcceptedClick" && r.outcome.value.eventId),
    );
    await waitApplied();
    const rec = await c.gateway.recommendation({ url: "https://e.org/a" });
    expect(rec.items.map((i) => [i.recommendation, Number(i.frequency)])).toEqual([["https://e.org/b", 1]]);
  });

  it("ignores a redelivered click that got past the broker's dedup (new message, same event_id)", async () => {
    const res = await c.ingest.publishClicks({ clicks: [{ userid: "redeliver", url: "https://e.org/r1", eventTime: T }, { userid: "redeliver", url: "https://e.org/r2", eventTime: at(1) }] });
    const accepted = res.results[0]!.outcome;
    if (accepted.case !== "accepted") throw new Error("not accepted");
    // Published straight onto the stream under another Nats-Msg-Id: only the consumer's idempotency can stop it.
    const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
    try {
      const again = create(ClickSchema, { eventId: accepted.value.eventId, userid: "redeliver", url: "https://e.org/r1", eventTimeMs: BigInt(Date.parse(T)) });
      const h = headers();
      await jetstream(nc).publish(`${stack.namespace}.clicks.0`, toBinary(ClickSchema, again), { msgID: "another-id", headers: h });
    } finally {
      await nc.close();
    }
    await waitApplied();
    const rec = await c.gateway.recommendation({ url: "https://e.org/r1" });
    expect(rec.items.map((i) => [i.recommendation, Number(i.frequency)])).toEqual([["https://e.org/r2", 1]]);
  });

  it("dead-letters a click later than the allowed lateness, with its reason, and counts nothing", async () => {
    await c.gateway.clickstream({ event: { userid: "late", url: "https://e.org/l1", eventTime: at(30) } });
    await c.gateway.clickstream({ event: { userid: "late", url: "https://e.org/l0", eventTime: at(30 - 6) } });
    await waitApplied();
    expect((await c.gateway.recommendation({ url: "https://e.org/l0" })).items).toEqual([]);
    expect((await c.covisit.progress({})).deadLetteredClicks).toBe(1n);
    const nc = await connect({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" });
    try {
      const jsm = await jetstreamManager(nc);
      const m = await jsm.streams.getMessage(`${stack.namespace.toUpperCase()}_DEAD_LETTERS`, { last_by_subj: `${stack.namespace}.dlq.clicks` });
      expect(m?.header.get("recsys-reason")).toMatch(/^late: watermark 2024-01-02T00:30:00.000Z/);
    } finally {
      await nc.close();
    }
  });
});
