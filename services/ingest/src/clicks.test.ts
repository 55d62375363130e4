import { describe, expect, it } from "vitest";
import { FieldError } from "@recsys/validation";
import { clickEventId, toValidClick } from "./clicks.js";
import { partitionOf } from "./hashing.js";

const now = Date.parse("2024-01-02T12:00:00Z");
const click = { userid: "u1", url: "https://en.wikipedia.org/wiki/Apache_Kafka", event_time: "2024-01-02T00:00:00Z", event_id: "" };

describe("toValidClick", () => {
  it("derives the same id for the same click however its time is written", () => {
    const a = toValidClick(click, now);
    const b = toValidClick({ ...click, event_time: "2024-01-02T01:00:00.000+01:00" }, now);
    expect(a.eventId).toBe(b.eventId);
    expect(a.eventId).toMatch(/^[0-9a-f]{32}$/);
    expect(a.eventTimeMs).toBe(Date.parse("2024-01-02T00:00:00Z"));
  });
  it("gives different ids to clicks that differ in user, url or time", () => {
    const ids = new Set([
      toValidClick(click, now).eventId,
      toValidClick({ ...click, userid: "u2" }, now).eventId,
      toValidClick({ ...click, url: click.url + "_" }, now).eventId,
      toValidClick({ ...click, event_time: "2024-01-02T00:00:01Z" }, now).eventId,
    ]);
    expect(ids.size).toBe(4);
  });
  it("keeps a client's event_id and stamps a click without time with now", () => {
    const v = toValidClick({ ...click, event_time: "", event_id: "client-1" }, now);
    expect(v).toEqual({ eventId: "client-1", userid: "u1", url: click.url, eventTimeMs: now });
    expect(v.eventId).not.toBe(clickEventId("u1", click.url, now));
  });
  it.each([
    [{ userid: "" }, "userid"],
    [{ url: "not a url" }, "url"],
    [{ event_time: "2024-01-02" }, "event_time"],
    [{ event_id: "a b" }, "event_id"],
  ])("rejects %j naming %s", (patch, field) => {
    expect(() => toValidClick({ ...click, ...patch }, now)).toThrow(FieldError);
    try {
      toValidClick({ ...click, ...patch }, now);
    } catch (err) {
      expect((err as FieldError).field).toBe(field);
    }
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
