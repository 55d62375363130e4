import { describe, expect, it } from "vitest";
import { LeakyBuckets } from "./leaky-buckets.js";

// 60 units a minute per key, at most 3 keys.
const MINUTE = 60_000;

describe("LeakyBuckets", () => {
  it("takes the whole capacity at once, then a unit a second; says how long until a refused cost fits", () => {
    const b = new LeakyBuckets(60, MINUTE, 3);
    expect(b.take("k", 60, 0)).toBeUndefined();
    expect(b.take("k", 1, 0)).toBe(1_000);
    expect(b.take("k", 5, 2_500)).toBe(2_500);
    expect(b.take("k", 2, 2_500)).toBeUndefined();
    // Idle for ten minutes: one capacity again, not ten.
    expect(b.take("k", 60, 11 * MINUTE)).toBeUndefined();
    expect(b.take("k", 1, 11 * MINUTE)).toBe(1_000);
    // A cost over the capacity never fits.
    expect(b.take("other", 61, 0)).toBe(1_000);
  });

  it("gives back what was spent, and nothing to a key it forgot", () => {
    const b = new LeakyBuckets(60, MINUTE, 3);
    b.take("k", 50, 0);
    b.giveBack("k", 30);
    expect(b.take("k", 40, 0)).toBeUndefined();
    expect(b.take("k", 1, 0)).toBe(1_000);
    b.giveBack("never", 10);
    expect(b.size).toBe(1);
  });

  it("keeps at most maxKeys keys: those seen longest ago go once paid off, or whatever they owe beyond maxKeys; a refusal is a sighting", () => {
    const b = new LeakyBuckets(60, MINUTE, 3);
    b.take("a", 1, 0);
    b.take("b", 60, 0);
    b.take("c", 60, 0);
    // a is paid off after a second: it goes when d comes; b and c, owing, stay.
    expect(b.take("d", 60, 1_000)).toBeUndefined();
    expect(b.size).toBe(3);
    expect(b.take("a", 60, 1_000)).toBeUndefined();
    // Now b, c, d, a: over maxKeys, b (seen longest ago) goes owing. Then c, refused, is seen last: e pushes out d rather than c.
    expect(b.size).toBe(3);
    expect(b.take("c", 2, 1_000)).toBe(1_000);
    b.take("e", 60, 1_000);
    expect(b.size).toBe(3);
    expect(b.take("c", 2, 1_000)).toBe(1_000);
    // Forgotten, d and b start with full buckets.
    expect(b.take("d", 60, 1_000)).toBeUndefined();
    expect(b.take("b", 60, 1_000)).toBeUndefined();
  });
});
