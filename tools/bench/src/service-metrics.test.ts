import { describe, expect, it } from "vitest";
import { quantileBetween } from "./service-metrics.js";

const histogram = (counts: Array<[number, number]>) => new Map(counts);

describe("quantileBetween", () => {
  it("interpolates within the bucket of the quantile, over the observations between two readings only", () => {
    const before = histogram([
      [0.1, 5],
      [1, 5],
      [Infinity, 5],
    ]);
    // 10 new observations: 4 in (0, 0.1], 6 in (0.1, 1].
    const after = histogram([
      [0.1, 9],
      [1, 15],
      [Infinity, 15],
    ]);
    expect(quantileBetween(before, after, 0.4)).toBeCloseTo(0.1);
    expect(quantileBetween(before, after, 0.5)).toBeCloseTo(0.1 + 0.9 * (1 / 6));
    expect(quantileBetween(before, after, 0.99)).toBeCloseTo(0.1 + 0.9 * (5.9 / 6));
  });

  it("answers the top bucket's lower bound, and nothing without observations", () => {
    const after = histogram([
      [1, 0],
      [Infinity, 2],
    ]);
    expect(quantileBetween(new Map(), after, 0.99)).toBe(1);
    expect(quantileBetween(after, after, 0.5)).toBeUndefined();
  });
});
