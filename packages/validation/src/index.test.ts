import { describe, expect, it } from "vitest";
import {
  checkPageStart,
  decodeCursor,
  encodeCursor,
  checkEventId,
  checkEventTime,
  DEFAULT_MAX_CLOCK_SKEW_MS,
  checkLimit,
  checkOffset,
  checkPageId,
  checkQuery,
  checkText,
  checkTitle,
  checkUrl,
  checkUserid,
  checkProperties,
  FieldError,
  parseRfc3339,
} from "./index.js";

const now = Date.parse("2024-01-02T00:00:00Z");

function rejection(fn: () => unknown): { field: string; reason: string } {
  try {
    fn();
  } catch (err) {
    if (err instanceof FieldError) return { field: err.field, reason: err.reason };
    throw err;
  }
  throw new Error("accepted");
}

describe("event_time", () => {
  it("reads RFC 3339 with offsets and fractions to the millisecond", () => {
    expect(parseRfc3339("2024-01-02T00:00:00Z")).toBe(1704153600000);
    expect(parseRfc3339("2024-01-02T05:30:00.250+05:30")).toBe(1704153600250);
    expect(parseRfc3339("2016-12-31T23:59:60Z")).toBe(Date.parse("2016-12-31T23:59:59.999Z"));
  });
  it("knows the leap years, the year 0 among them", () => {
    expect(parseRfc3339("0000-02-29T00:00:00Z")).toBe(Date.parse("0000-03-01T00:00:00Z") - 86_400_000);
    expect(parseRfc3339("2000-02-29T12:00:00Z")).toBe(Date.parse("2000-03-01T00:00:00Z") - 43_200_000);
    for (const bad of ["1900-02-29T00:00:00Z", "0100-02-29T00:00:00Z", "2023-02-29T00:00:00Z", "2024-04-31T00:00:00Z"]) {
      expect(rejection(() => parseRfc3339(bad)).field).toBe("event_time");
    }
  });
  it.each(["2024-01-02", "2024-01-02 00:00:00", "2024-02-30T00:00:00Z", "2024-01-01T24:00:00Z", "yesterday", "1704153600", "2024-01-02T00:00:00+25:00"])(
    "rejects %j naming the field",
    (bad) => {
      expect(rejection(() => parseRfc3339(bad)).field).toBe("event_time");
    },
  );
  it("accepts times up to the clock skew ahead, to the millisecond, and any time before", () => {
    expect(checkEventTime("2024-01-02T00:02:00Z", now, DEFAULT_MAX_CLOCK_SKEW_MS)).toBe(now + 120_000);
    expect(checkEventTime("2024-01-02T00:01:59.999Z", now, DEFAULT_MAX_CLOCK_SKEW_MS)).toBe(now + 119_999);
    expect(checkEventTime("2000-01-01T00:00:00Z", now, DEFAULT_MAX_CLOCK_SKEW_MS)).toBe(Date.parse("2000-01-01T00:00:00Z"));
    expect(checkEventTime("2024-01-02T00:00:00Z", now, 0)).toBe(now);
  });
  it("rejects a time further ahead, naming the field, the limit and how far ahead it is", () => {
    expect(DEFAULT_MAX_CLOCK_SKEW_MS).toBe(2 * 60_000);
    expect(rejection(() => checkEventTime("2024-01-02T00:02:00.001Z", now, DEFAULT_MAX_CLOCK_SKEW_MS))).toEqual({
      field: "event_time",
      reason: "must not be more than 2 min ahead of the server's clock; it is 120.001 s ahead",
    });
    expect(rejection(() => checkEventTime("2024-01-02T23:00:00Z", now, DEFAULT_MAX_CLOCK_SKEW_MS, "source_time"))).toEqual({
      field: "source_time",
      reason: "must not be more than 2 min ahead of the server's clock; it is 23 h ahead",
    });
    expect(rejection(() => checkEventTime("2024-01-02T00:00:01.5Z", now, 0)).reason).toBe(
      "must not be more than 0 s ahead of the server's clock; it is 1.5 s ahead",
    );
    expect(rejection(() => checkEventTime("2024-01-02T00:00:10Z", now, 5_000)).reason).toMatch(/^must not be more than 5 s ahead/);
  });
});

describe("url", () => {
  it("keeps a valid url verbatim, percent-encoding and all", () => {
    const u = "https://en.wikipedia.org/wiki/Generosity%3A%20An%20Enhancement";
    expect(checkUrl(u)).toBe(u);
  });
  it.each(["", "/wiki/Relative", "ftp://example.org/x", "https://", "https://exa mple.org/", `https://example.org/${"a".repeat(2048)}`])("rejects %j", (bad) =>
    expect(rejection(() => checkUrl(bad)).field).toBe("url"),
  );
  it("bounds a url by 2,048 bytes of UTF-8 too, so that PostgreSQL can index it with a userid", () => {
    const ascii = `https://example.org/${"a".repeat(2048 - 20)}`;
    expect(checkUrl(ascii)).toBe(ascii);
    // 920 characters, 2,720 bytes: within the characters, and past what PostgreSQL indexes.
    const cjk = `https://example.org/${"漢".repeat(900)}`;
    expect(rejection(() => checkUrl(cjk))).toEqual({ field: "url", reason: "must be at most 2048 bytes of UTF-8, got 2720" });
    const fits = `https://example.org/${"漢".repeat(676)}`;
    expect(checkUrl(fits)).toBe(fits);
  });
});

describe("userid and limit", () => {
  it("bounds userid by 256 characters and 512 bytes of UTF-8", () => {
    expect(checkUserid("é".repeat(256))).toHaveLength(256);
    expect(rejection(() => checkUserid("é".repeat(257))).field).toBe("userid");
    // 200 characters of four bytes each: within the characters, past the bytes.
    expect(rejection(() => checkUserid("😀".repeat(200)))).toEqual({ field: "userid", reason: "must be at most 512 bytes of UTF-8, got 800" });
    expect(checkUserid("😀".repeat(128))).toHaveLength(256);
    expect(rejection(() => checkUserid("")).reason).toMatch(/empty/);
  });
  it("defaults the limit to 10 and bounds it to 1..1000", () => {
    expect(checkLimit(undefined)).toBe(10);
    expect(checkLimit(1000)).toBe(1000);
    for (const bad of [0, -1, 1001, 2.5]) expect(rejection(() => checkLimit(bad)).field).toBe("limit");
  });
});

describe("page fields", () => {
  it("counts text in UTF-8 bytes: 32 KiB of ASCII passes, the same length in two-byte characters does not", () => {
    expect(checkText("a".repeat(32 * 1024))).toHaveLength(32 * 1024);
    expect(() => checkText("é".repeat(16 * 1024 + 1))).toThrow("text: must be at most 32768 bytes of UTF-8, got 32770");
    expect(() => checkText("  ")).toThrow("text: must not be empty");
    expect(checkText("", "text", true)).toBe("");
  });
  it("limits titles to 1,024 characters and ids to 128 without whitespace", () => {
    expect(checkTitle("t".repeat(1024))).toHaveLength(1024);
    expect(() => checkTitle("t".repeat(1025))).toThrow(FieldError);
    expect(checkPageId("42672986")).toBe("42672986");
    expect(() => checkPageId("42 67")).toThrow("id: must not contain whitespace or control characters");
    expect(checkPageId("")).toBe("");
    expect(() => checkPageId("", "liked.eventId", false)).toThrow("liked.eventId: must not be empty");
  });
});

describe("offset and query", () => {
  it("take an offset from 0 to a million, unset meaning 0", () => {
    expect(checkOffset(undefined)).toBe(0);
    expect(checkOffset(1_000_000)).toBe(1_000_000);
    for (const bad of [-1, 1_000_001, 1.5]) expect(rejection(() => checkOffset(bad)).field).toBe("offset");
  });
  it("take a search query of words, refusing empty, control characters and over 1,024 characters", () => {
    expect(checkQuery('kafka "stream processing" -batch')).toBe('kafka "stream processing" -batch');
    for (const bad of ["", "   ", "a\u0000b", "q".repeat(1025)]) expect(rejection(() => checkQuery(bad)).field).toBe("query");
  });
});

describe("text that was not valid UTF-8", () => {
  it("is refused in every string field, naming it; real non-ASCII text passes", () => {
    const decoded = new TextDecoder().decode(Uint8Array.of(0x75, 0xff, 0xfe)); // what a JSON body's bad bytes become
    const checks: Array<[string, (v: string) => unknown]> = [
      ["userid", (v) => checkUserid(v)],
      ["url", (v) => checkUrl(`https://e.org/${v}`)],
      ["event_id", (v) => checkEventId(v)],
      ["id", (v) => checkPageId(v)],
      ["title", (v) => checkTitle(v)],
      ["text", (v) => checkText(v)],
      ["query", (v) => checkQuery(v)],
    ];
    for (const [field, check] of checks) {
      expect(() => check(decoded), field).toThrow(new RegExp(`^${field}: must be valid UTF-8`));
      expect(() => check("a\uD800b"), field).toThrow(new RegExp(`^${field}: must be valid UTF-8`));
      expect(check("Zürich_日本_😀"), field).toBeTruthy();
    }
  });
});

describe("control characters", () => {
  it("are refused in ids, urls and titles, C1 (U+0080-U+009F) as well as C0, naming the field", () => {
    for (const bad of ["a\u0000b", "a\u001fb", "a\u007fb", "a\u0085b", "a\u009fb"]) {
      expect(
        rejection(() => checkUserid(bad)),
        JSON.stringify(bad),
      ).toEqual({ field: "userid", reason: "must not contain control characters" });
      expect(rejection(() => checkTitle(bad)).field, JSON.stringify(bad)).toBe("title");
      expect(rejection(() => checkUrl(`https://e.org/${bad}`)).field, JSON.stringify(bad)).toBe("url");
    }
    expect(checkUserid("a\u00a0b")).toBe("a\u00a0b");
  });
  it("leave a page's text its lines and tabs, but not NUL, which PostgreSQL cannot store", () => {
    expect(checkText("line one\n\tline two\r\n")).toBe("line one\n\tline two\r\n");
    expect(rejection(() => checkText("a text with a NUL \u0000 inside"))).toEqual({ field: "text", reason: "must not contain NUL (U+0000)" });
    expect(rejection(() => checkText("\u0000", "texts[3]", true)).field).toBe("texts[3]");
  });
});

describe("click properties", () => {
  const text = (value: string) => ({ case: "text" as const, value });
  it("keep every property they accept, and refuse a name a JavaScript object would swallow", () => {
    expect(checkProperties({ plan: text("pro"), constructor: text("c"), toString: { case: "number", value: 2 } })).toEqual({
      constructor: "c",
      plan: "pro",
      toString: 2,
    });
    expect(rejection(() => checkProperties({ ["__proto__"]: text("dropped?") }))).toMatchObject({ field: "properties.__proto__" });
  });
  it("refuse a text that was not valid UTF-8, or holds a control character, C1 included", () => {
    const decoded = new TextDecoder().decode(Uint8Array.of(0x61, 0xff, 0x62));
    for (const bad of [decoded, "a\uD800b", "a\u0085b", "a\u0001b"]) {
      expect(rejection(() => checkProperties({ note: text(bad) })).field, JSON.stringify(bad)).toBe("properties.note");
    }
  });
});

describe("cursors", () => {
  it("carry a sort key back, for their own list only, and refuse anything else naming the field", () => {
    const cursor = encodeCursor("Events", ["42", "https://e.org/ü"]);
    expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeCursor("Events", cursor, ["string", "string"] as const)).toEqual(["42", "https://e.org/ü"]);
    const numbered = encodeCursor("ClickMetrics", [1_714_554_000_000, "u", "view", "https://e.org/a"]);
    expect(decodeCursor("ClickMetrics", numbered, ["number", "string", "string", "string"] as const)[0]).toBe(1_714_554_000_000);
    const bad = [
      encodeCursor("EventsLiked", ["42", "https://e.org/a"]), // another list's
      encodeCursor("Events", ["42"]), // another shape
      encodeCursor("Events", [42, "https://e.org/a"]),
      "not a cursor",
      "",
      Buffer.from("{}").toString("base64url"),
      "A".repeat(8193),
      encodeCursor("Events", ["\u0000", "https://e.org/a"]), // a NUL, which PostgreSQL refuses in a parameter
      encodeCursor("Events", ["42", "https://e.org/\u0085"]),
    ];
    for (const c of bad) {
      const { field, reason } = rejection(() => decodeCursor("Events", c, ["string", "string"] as const));
      expect(`${field}: ${reason}`, c).toMatch(/^cursor: is not a cursor of Events/);
    }
  });
  it("come without an offset", () => {
    expect(() => checkPageStart(0, "")).not.toThrow();
    expect(() => checkPageStart(5, "")).not.toThrow();
    expect(() => checkPageStart(0, "abc")).not.toThrow();
    expect(rejection(() => checkPageStart(5, "abc"))).toEqual({ field: "cursor", reason: "give a cursor or an offset, not both" });
  });
});
