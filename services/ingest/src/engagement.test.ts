import { describe, expect, it } from "vitest";
import { DEFAULT_MAX_CLOCK_SKEW_MS, FieldError } from "@recsys/validation";
import { toValidInterest, toValidLike } from "./engagement.js";

const NOW = Date.parse("2026-01-01T00:00:00Z");
const SKEW = DEFAULT_MAX_CLOCK_SKEW_MS;
const like = { userid: "1234", page_id: "42672986", liked: true, source_time: "2024-01-01T00:00:00Z", event_id: "" };
const interest = { userid: "1234", text: "real-time stream processing", source_time: "", event_id: "" };

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof FieldError) return err.field;
    throw err;
  }
  return "(accepted)";
}

describe("toValidLike", () => {
  it("keeps the fields, with the like's time as its version", () => {
    expect(toValidLike(like, NOW, SKEW)).toMatchObject({ userid: "1234", pageId: "42672986", liked: true, sourceTimeMs: Date.parse(like.source_time) });
    expect(toValidLike({ ...like, source_time: "" }, NOW, SKEW).sourceTimeMs).toBe(NOW);
  });

  it("gives a retry the same id, and an unlike or a later like a new one", () => {
    const id = toValidLike(like, NOW, SKEW).eventId;
    expect(toValidLike(like, NOW + 1_000, SKEW).eventId).toBe(id);
    expect(toValidLike({ ...like, liked: false }, NOW, SKEW).eventId).not.toBe(id);
    expect(toValidLike({ ...like, source_time: "2024-01-01T00:00:01Z" }, NOW, SKEW).eventId).not.toBe(id);
    expect(toValidLike({ ...like, event_id: "client-7" }, NOW, SKEW).eventId).toBe("client-7");
  });

  it.each([
    [{ userid: "" }, "userid"],
    [{ page_id: "" }, "page_id"],
    [{ page_id: "42 67" }, "page_id"],
    [{ page_id: "x".repeat(129) }, "page_id"],
    [{ source_time: "yesterday" }, "source_time"],
    [{ source_time: "2026-01-01T00:02:00.001Z" }, "source_time"],
    [{ event_id: "a b" }, "event_id"],
  ])("refuses %o naming %s", (change, field) => {
    expect(fieldOf(() => toValidLike({ ...like, ...change }, NOW, SKEW))).toBe(field);
  });
});

describe("toValidInterest", () => {
  it("keeps the text and hashes a retry to the same id", () => {
    const v = toValidInterest(interest, NOW, SKEW);
    expect(v).toMatchObject({ userid: "1234", text: interest.text, sourceTimeMs: NOW });
    expect(toValidInterest(interest, NOW, SKEW).eventId).toBe(v.eventId);
    expect(toValidInterest({ ...interest, text: "batch processing" }, NOW, SKEW).eventId).not.toBe(v.eventId);
  });

  it.each([
    [{ userid: "" }, "userid"],
    [{ text: "  " }, "text"],
    [{ text: "x".repeat(32 * 1024 + 1) }, "text"],
    [{ source_time: "2024-13-01T00:00:00Z" }, "source_time"],
    [{ source_time: "2026-01-01T23:00:00Z" }, "source_time"],
  ])("refuses %o naming %s", (change, field) => {
    expect(fieldOf(() => toValidInterest({ ...interest, ...change }, NOW, SKEW))).toBe(field);
  });
});
