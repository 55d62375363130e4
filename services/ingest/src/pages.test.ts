import { describe, expect, it } from "vitest";
import { DEFAULT_MAX_CLOCK_SKEW_MS, FieldError } from "@recsys/validation";
import { pageEventId, toValidPage } from "./pages.js";

const NOW = Date.parse("2026-01-01T00:00:00Z");
const SKEW = DEFAULT_MAX_CLOCK_SKEW_MS;
const page = { url: "https://en.wikipedia.org/wiki/Zoop", id: "42", title: "Zoop", text: "Zoop is a puzzle video game", source_time: "2024-01-01T00:00:00Z" };

describe("toValidPage", () => {
  it("keeps the fields and versions the page by its source time", () => {
    const v = toValidPage(page, NOW, SKEW);
    expect(v).toMatchObject({ url: page.url, id: "42", title: "Zoop", text: page.text, sourceTimeMs: Date.parse(page.source_time) });
    expect(v.eventId).toMatch(/^[0-9a-f]{32}$/);
  });

  it("versions a page without a source time by the time ingest received it", () => {
    expect(toValidPage({ ...page, source_time: "" }, NOW, SKEW).sourceTimeMs).toBe(NOW);
  });

  it("gives a retry of the same version the same id, and any change a new one", () => {
    const base = toValidPage(page, NOW, SKEW).eventId;
    expect(toValidPage(page, NOW + 5_000, SKEW).eventId).toBe(base);
    expect(toValidPage({ ...page, source_time: "2024-01-01T00:00:00.000Z" }, NOW, SKEW).eventId).toBe(base);
    for (const change of [{ text: "other" }, { title: "Zoop!" }, { source_time: "2024-01-01T00:00:01Z" }, { url: "https://e.org/zoop" }]) {
      expect(toValidPage({ ...page, ...change }, NOW, SKEW).eventId).not.toBe(base);
    }
    // Fields cannot bleed into each other.
    expect(pageEventId("u", 1, "ab", "c")).not.toBe(pageEventId("u", 1, "a", "bc"));
  });

  it.each([
    [{ url: "zoop" }, "url"],
    [{ id: "4 2" }, "id"],
    [{ title: "t".repeat(1025) }, "title"],
    [{ text: "" }, "text"],
    [{ text: "x".repeat(32 * 1024 + 1) }, "text"],
    [{ source_time: "yesterday" }, "source_time"],
    [{ source_time: "2026-01-03T00:00:00Z" }, "source_time"],
    [{ source_time: "2026-01-01T00:02:00.001Z" }, "source_time"],
  ])("refuses %o naming %s", (change, field) => {
    try {
      toValidPage({ ...page, ...change }, NOW, SKEW);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(FieldError);
      expect((err as FieldError).field).toBe(field);
    }
  });
});
