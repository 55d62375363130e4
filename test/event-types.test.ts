import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { clicksOf } from "@recsys/bus";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf, outcome } from "./harness/clients.js";
import { clicksLastSequence, writesStored } from "./harness/oracle.js";
import { natsOf, startStack, type TestStack } from "./harness/stack.js";

// Clicks of the analytics pipelines carry an event type ("add_to_cart") and properties
// ({site_id, viewed_percent}); they travel with the click, and which types count as visits for
// co-visits is configuration.

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;

const A = "https://e.org/types/a";
const B = "https://e.org/types/b";
const C = "https://e.org/types/c";
const VA = "https://e.org/visits/a";
const VB = "https://e.org/visits/b";
const VC = "https://e.org/visits/c";
const at = (seconds: number) => new Date(Date.now() - 60_000 + seconds * 1_000).toISOString();

/** The last click stored in CLICKS, as consumers read it. */
async function lastStoredClick() {
  const nc = await connect({ servers: natsOf(stack) });
  try {
    const jsm = await jetstreamManager(nc);
    const stream = `${stack.namespace.toUpperCase()}_CLICKS`;
    const m = await jsm.streams.getMessage(stream, { seq: Number(await clicksLastSequence(stack)) });
    return clicksOf({ data: m!.data, headers: m!.header }).at(-1)!;
  } finally {
    await nc.close();
  }
}

async function clicksApplied() {
  const last = await clicksLastSequence(stack);
  await expect.poll(async () => (await c.covisit.progress({})).ackFloorStreamSequence, { timeout: 30_000, interval: 100 }).toBeGreaterThanOrEqual(last);
  await expect.poll(async () => (await c.profile.progress({})).clicksAckFloor, { timeout: 30_000, interval: 100 }).toBeGreaterThanOrEqual(last);
}

const recommendation = async (url: string) => (await c.gateway.recommendation({ url })).items.map((i) => [i.recommendation, Number(i.frequency)]);

beforeAll(async () => {
  stack = await startStack("types");
  c = clientsOf(stack);
});
afterAll(async () => stack?.stop());

describe("a click's event type and properties", () => {
  it("travel from the gateway to CLICKS, over Connect and GraphQL", async () => {
    const res = await c.gateway.clickstream({
      event: { userid: "u1", url: A, eventTime: at(0), event: "add_to_cart", properties: { price: { kind: { case: "number", value: 9.5 } } } },
    });
    expect(res.event).toBe("add_to_cart");
    const stored = await lastStoredClick();
    expect(stored.event).toBe("add_to_cart");
    expect(stored.properties.price?.kind).toEqual({ case: "number", value: 9.5 });

    const answer = await fetch(`${stack.url.gateway}/graphql`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        query: `mutation { Clickstream(event: {url: "${B}", userid: "u1", event_time: "${at(1)}", event: "login", properties: {site_id: "s-7", on_site_seconds: 12}}) { event } }`,
      }),
    });
    expect(await answer.json()).toEqual({ data: { Clickstream: { event: "login" } } });
    const graphqlStored = await lastStoredClick();
    expect(graphqlStored.event).toBe("login");
    expect(graphqlStored.properties.site_id?.kind).toEqual({ case: "text", value: "s-7" });
    expect(graphqlStored.properties.on_site_seconds?.kind).toEqual({ case: "number", value: 12 });
  });

  it("a click without a type is a view, stored as every click before types", async () => {
    expect((await c.gateway.clickstream({ event: { userid: "u1", url: C, eventTime: at(2) } })).event).toBe("view");
    expect((await lastStoredClick()).event).toBe("");
  });

  it("refuses a bad type or property with InvalidArgument naming the field, and stores nothing", async () => {
    const before = await writesStored(stack);
    const send = (event: Record<string, unknown>) => outcome(c.gateway.clickstream({ event: { userid: "u2", url: A, ...event } }));
    expect(await send({ event: "add to cart" })).toMatch(/^InvalidArgument: event\.event: must be 1 to 32 letters/);
    expect(await send({ event: "view\u0007" })).toMatch(/^InvalidArgument: event\.event: /);
    expect(await send({ properties: { "a b": { kind: { case: "text", value: "x" } } } })).toMatch(/^InvalidArgument: event\.properties\.a b: a name must be/);
    expect(await send({ properties: { ["n".repeat(65)]: { kind: { case: "text", value: "x" } } } })).toMatch(/^InvalidArgument: event\.properties\.n{64}: /);
    expect(await send({ properties: { note: { kind: { case: "text", value: "x".repeat(257) } } } })).toMatch(
      /^InvalidArgument: event\.properties\.note: must be at most 256 characters/,
    );
    expect(await send({ properties: { empty: { kind: { case: undefined } } } })).toMatch(
      /^InvalidArgument: event\.properties\.empty: must be a text or a number/,
    );
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`p${i}`, { kind: { case: "number" as const, value: i } }]));
    expect(await send({ properties: many })).toMatch(/^InvalidArgument: event\.properties: at most 16 properties, not 17/);
    expect(await writesStored(stack)).toEqual(before);
  });
});

describe("which event types are visits", () => {
  it("by default every type counts in co-visits", async () => {
    await c.gateway.clickstream({ event: { userid: "v1", url: VA, eventTime: at(10) } });
    await c.gateway.clickstream({ event: { userid: "v1", url: VB, eventTime: at(11), event: "add_to_cart" } });
    await clicksApplied();
    expect(await recommendation(VA)).toContainEqual([VB, 1]);
  });

  it("with VISIT_EVENTS=view, other types change no co-visit count, and views count as before", async () => {
    for (const service of ["covisit", "profile"] as const) {
      await stack.kill(service);
      await stack.start(service, { VISIT_EVENTS: "view" });
    }
    const before = await recommendation(VA);
    await c.gateway.clickstream({ event: { userid: "v2", url: VA, eventTime: at(20) } });
    await c.gateway.clickstream({ event: { userid: "v2", url: VB, eventTime: at(21), event: "add_to_cart" } });
    await c.gateway.clickstream({ event: { userid: "v2", url: VC, eventTime: at(22) } });
    await clicksApplied();
    const after = await recommendation(VA);
    expect(after.find(([u]) => u === VB)).toEqual(before.find(([u]) => u === VB));
    expect(after).toContainEqual([VC, 1]);
    expect((await c.covisit.progress({})).deadLetteredClicks).toBe(0n);
  });
});
