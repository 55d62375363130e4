import { create, toBinary } from "@bufbuild/protobuf";
import { CLICK_CONTENT_TYPE, headers } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { describe, expect, it } from "vitest";
import { countByCause, deadLetterCause, letterLine, letterOf, selected, sinceTime, type StoredLetter } from "./letters.js";
import { payloadOf } from "./payload.js";

const PREFIX = "ns.dlq.";
const click = create(ClickSchema, { eventId: "e1", userid: "u1", url: "https://e.org/a", eventTimeMs: 1_700_000_000_000n });

function stored(seq: number, fields: Record<string, string>, data: Uint8Array = toBinary(ClickSchema, click), time = "2026-01-02T10:00:00Z"): StoredLetter {
  const h = headers();
  for (const [k, v] of Object.entries(fields)) h.set(k, v);
  return { seq, time: new Date(time), subject: `${PREFIX}clicks`, headers: h, data };
}

const lateClick = stored(7, {
  "recsys-reason": "late: watermark 2024-01-02T00:30:00.000Z",
  "recsys-cause": "late",
  "recsys-source-stream": "NS_CLICKS",
  "recsys-source-subject": "ns.clicks.3",
  "recsys-source-sequence": "42",
  "recsys-source-item": "2",
  "content-type": CLICK_CONTENT_TYPE,
});

describe("a dead letter read", () => {
  it("names the cause of each kind of dead letter the consumers wrote before the cause had a header", () => {
    expect(deadLetterCause("late: watermark 2026-01-01T00:00:00.000Z")).toBe("late");
    expect(deadLetterCause("undecodable: missing event_id, userid or url")).toBe("undecodable");
    expect(deadLetterCause("refused by PostgreSQL: invalid byte sequence")).toBe("refused");
    expect(deadLetterCause("failed 10 deliveries, last: Error: boom")).toBe("poison");
  });

  it("says why, who filed it, and where its message came from", () => {
    const l = letterOf(lateClick, PREFIX);
    expect(l).toMatchObject({
      sequence: 7,
      time: "2026-01-02T10:00:00.000Z",
      source: "clicks",
      cause: "late",
      sourceStream: "NS_CLICKS",
      sourceSequence: 42,
      sourceItem: 2,
      sourceSubject: "ns.clicks.3",
    });
    expect(letterLine(l)).toMatch(/^ {5}7 {2}2026-01-02T10:00:00.000Z {2}late +clicks +NS_CLICKS #42 item 2 +late: watermark 2024-01-02T00:30:00.000Z$/);
  });

  it("is filed by the source its subject names, under a user or a message", () => {
    for (const key of ["u0123456789abcdef01234567", "m42"])
      expect(letterOf({ ...lateClick, subject: `${PREFIX}profile-clicks.${key}` }, PREFIX).source).toBe("profile-clicks");
  });

  it("takes the cause from the reason on letters written before the cause had a header, and has no subject to replay to", () => {
    const old = letterOf(
      stored(3, { "recsys-reason": "failed 10 deliveries, last: Error: boom", "recsys-source-stream": "NS_CLICKS", "recsys-source-sequence": "9" }),
      PREFIX,
    );
    expect(old).toMatchObject({ cause: "poison", sourceSubject: null, sourceItem: null, sourceSequence: 9 });
  });

  it("shows a click as the click it is, bytes that do not decode as hex", () => {
    expect(payloadOf(letterOf(lateClick, PREFIX), "NS_CLICKS")).toEqual({
      kind: "message",
      type: "recsys.events.v1.Click",
      message: { eventId: "e1", userid: "u1", url: "https://e.org/a", eventTimeMs: "1700000000000" },
    });
    const poison = letterOf(stored(4, { "recsys-reason": "undecodable: x", "recsys-source-stream": "NS_CONTENT" }, Uint8Array.of(0xff, 0xff, 0x07)), PREFIX);
    expect(payloadOf(poison, "NS_CLICKS")).toEqual({ kind: "bytes", hex: "ffff07" });
    // A CLICKS message without a content-type is one Click to the consumers: these bytes are not.
    const badClick = letterOf(stored(5, { "recsys-reason": "undecodable: x", "recsys-source-stream": "NS_CLICKS" }, Uint8Array.of(0xff, 0xff, 0x07)), PREFIX);
    expect(payloadOf(badClick, "NS_CLICKS")).toMatchObject({ kind: "undecodable", type: "recsys.events.v1.Click", hex: "ffff07" });
  });
});

describe("selecting letters", () => {
  const letters = [
    letterOf(lateClick, PREFIX),
    letterOf(stored(8, { "recsys-reason": "undecodable: bad bytes", "recsys-cause": "undecodable" }, new Uint8Array(), "2026-01-02T11:00:00Z"), PREFIX),
    letterOf(stored(9, { "recsys-reason": "late: watermark x", "recsys-cause": "late" }, new Uint8Array(), "2026-01-02T12:00:00Z"), PREFIX),
  ];
  const seqs = (s: Parameters<typeof selected>[1]) => letters.filter((l) => selected(l, s)).map((l) => l.sequence);

  it("by cause, time and sequence, together", () => {
    expect(seqs({})).toEqual([7, 8, 9]);
    expect(seqs({ cause: "late" })).toEqual([7, 9]);
    expect(seqs({ sinceMs: Date.parse("2026-01-02T11:00:00Z") })).toEqual([8, 9]);
    expect(seqs({ cause: "late", sequences: [7, 8] })).toEqual([7]);
    expect(seqs({ source: "content" })).toEqual([]);
    expect(countByCause(letters)).toEqual({ late: 2, undecodable: 1 });
  });

  it("--since takes an ISO time or a duration back from now, and refuses a bare number", () => {
    const now = Date.parse("2026-01-02T12:00:00Z");
    expect(sinceTime("2026-01-02T10:00:00Z", now)).toBe(Date.parse("2026-01-02T10:00:00Z"));
    expect(sinceTime("90m", now)).toBe(Date.parse("2026-01-02T10:30:00Z"));
    expect(sinceTime("1h", now)).toBe(Date.parse("2026-01-02T11:00:00Z"));
    expect(() => sinceTime("100", now)).toThrow(/ISO time .* duration with a unit/);
    expect(() => sinceTime("yesterday", now)).toThrow(/ISO time/);
    expect(() => sinceTime("2026-13-45", now)).toThrow(/ISO time/);
  });
});
