import { describe, expect, it } from "vitest";
import { fileClickOf } from "./click-file.js";
import { EVENT_MIX, inFormat } from "./click-formats.js";
import { generateWorkload } from "./workload.js";

const { clicks } = generateWorkload({ seed: 3, clicks: 20_000 });

describe("generate --format", () => {
  it.each(["redpanda", "aws"] as const)("writes %s lines that replay as the same users, urls and times, with the format's event mix", (format) => {
    const lines = inFormat(clicks, format, 3);
    const read = lines.map((l) => fileClickOf(JSON.parse(JSON.stringify(l))));
    expect(read.map((c) => [c.userid, c.url, c.event_time])).toEqual(clicks.map((c) => [c.userid, c.url, c.event_time]));
    for (const [event, share] of EVENT_MIX[format]) {
      const seen = read.filter((c) => c.event === event).length / read.length;
      expect(Math.abs(seen - share), event).toBeLessThan(0.015);
    }
    expect(Object.keys(read[0]!.properties ?? {}).length).toBeGreaterThanOrEqual(3);
  });

  it("is the same bytes for the same seed, and leaves ours as it was", () => {
    expect(JSON.stringify(inFormat(clicks, "aws", 3))).toBe(JSON.stringify(inFormat(clicks, "aws", 3)));
    expect(inFormat(clicks, "ours", 3)).toBe(clicks);
  });
});
