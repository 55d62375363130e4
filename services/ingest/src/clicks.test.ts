import { describe, expect, it } from "vitest";
import { DEFAULT_MAX_CLOCK_SKEW_MS, FieldError } from "@recsys/validation";
import { clickEventId, toValidClick } from "./clicks.js";
import { partitionOf } from "./hashing.js";

const now = Date.parse("2024-01-02T12:00:00Z");
const SKEW = DEFAULT_MAX_CLOCK_SKEW_MS;
const click = { userid: "u1", url: "https://en.wikipedia.org/wiki/Apache_Kafka", event_time: "2024-01-02T00:00:00Z", event_id: "" };

describe("toValidClick", () => {
  it("derives the same id for the same click however its time is written", () => {
    const a = toValidClick(click, now, SKEW);
    const b = toValidClick({ ...click, event_time: "2024-01-02T01:00:00.000+01:00" }, now, SKEW);
    expect(a.eventId).toBe(b.eventId);
    expect(a.eventId).toMatch(/^[0-9a-f]{32}$/);
    expect(a.eventTimeMs).toBe(Date.parse("2024-01-02T00:00:00Z"));
  });
  it("gives different ids to clicks that differ in user, url or time", () => {
    const ids = new Set([
      toValidClick(click, now, SKEW).eventId,
      toValidClick({ ...click, userid: "u2" }, now, SKEW).eventId,
      toValidClick({ ...click, url: `${click.url}_` }, now, SKEW).eventId,
      toValidClick({ ...click, event_time: "2024-01-02T00:00:01Z" }, now, SKEW).eventId,
    ]);
    expect(ids.size).toBe(4);
  });
  it("accepts an event_time up to the clock skew ahead, and refuses it beyond a skew configured smaller", () => {
    expect(toValidClick({ ...click, event_time: "2024-01-02T12:02:00Z" }, now, SKEW).eventTimeMs).toBe(now + SKEW);
    expect(() => toValidClick({ ...click, event_time: "2024-01-02T12:00:01Z" }, now, 0)).toThrow(/event_time: must not be more than 0 s ahead/);
  });
  it("keeps a client's event_id and stamps a click without time with now", () => {
    const v = toValidClick({ ...click, event_time: "", event_id: "client-1" }, now, SKEW);
    expect(v).toEqual({ eventId: "client-1", userid: "u1", url: click.url, eventTimeMs: now, event: "view", properties: {} });
    expect(v.eventId).not.toBe(clickEventId("u1", click.url, now));
  });
  it.each([
    [{ userid: "" }, "userid"],
    [{ url: "not a url" }, "url"],
    [{ event_time: "2024-01-02" }, "event_time"],
    // Ahead of ingest's clock by more than the skew allowed: a device clock set a day ahead.
    [{ event_time: "2024-01-02T12:02:00.001Z" }, "event_time"],
    [{ event_time: "2024-01-03T11:00:00Z" }, "event_time"],
    [{ event_id: "a b" }, "event_id"],
    [{ event: "add to cart" }, "event"],
    [{ event: "view\u0000" }, "event"],
    [{ event: "x".repeat(33) }, "event"],
    [{ properties: { "bad name": { case: "text", value: "x" } } }, "properties.bad name"],
    [{ properties: { ["n".repeat(65)]: { case: "text", value: "x" } } }, `properties.${"n".repeat(64)}`],
    [{ properties: { note: { case: "text", value: "x".repeat(257) } } }, "properties.note"],
    [{ properties: { price: { case: "number", value: Number.NaN } } }, "properties.price"],
    [{ properties: { price: { case: undefined } } }, "properties.price"],
    [{ properties: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`p${i}`, { case: "number", value: i }])) }, "properties"],
  ] as Array<[Partial<Parameters<typeof toValidClick>[0]>, string]>)("rejects %j naming %s", (patch, field) => {
    expect(() => toValidClick({ ...click, ...patch }, now, SKEW)).toThrow(FieldError);
    try {
      toValidClick({ ...click, ...patch }, now, SKEW);
    } catch (err) {
      expect((err as FieldError).field).toBe(field);
    }
  });
});

describe("event types and properties", () => {
  it("stores 'view' for a click without a type, with the id an untyped click always had", () => {
    const v = toValidClick(click, now, SKEW);
    expect(v.event).toBe("view");
    expect(v.eventId).toBe(toValidClick({ ...click, event: "view" }, now, SKEW).eventId);
  });

  it("gives a typed click an id of its own, so a view and an add_to_cart in the same millisecond are two events", () => {
    const view = toValidClick(click, now, SKEW);
    const cart = toValidClick({ ...click, event: "add_to_cart" }, now, SKEW);
    expect(cart.event).toBe("add_to_cart");
    expect(cart.eventId).not.toBe(view.eventId);
  });

  it("keeps texts and finite numbers, up to 16 properties", () => {
    const properties = Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`p${i}`, { case: "number" as const, value: i + 0.5 }]));
    expect(toValidClick({ ...click, properties }, now, SKEW).properties.p15).toBe(15.5);
    const v = toValidClick({ ...click, properties: { site_id: { case: "text", value: "s-1" }, viewed_percent: { case: "number", value: 42 } } }, now, SKEW);
    expect(v.properties).toEqual({ site_id: "s-1", viewed_percent: 42 });
  });
});

describe("partitionOf", () => {
  it("spreads users over every partition and is stable", () => {
    const seen = new Set<number>();
    for (let i = 0; i < 200; i++) seen.add(partitionOf(`user-${i}`, 8));
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(partitionOf("user-7", 8)).toBe(partitionOf("user-7", 8));
  });
});
