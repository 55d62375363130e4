import { describe, expect, it } from "vitest";
import { asStored, embeddingChange, interestMean, sumCorrection } from "./interest-math.js";

const add = (a: number[], b: number[]) => a.map((x, k) => x + b[k]!);
const sumOf = (terms: number[][]) => terms.reduce(add);

describe("interest arithmetic", () => {
  it("is the mean of the terms' embeddings", () => {
    expect(
      interestMean(
        sumOf([
          [1, 0],
          [0, 1],
          [1, 1],
        ]),
        3,
      ),
    ).toEqual([2 / 3, 2 / 3]);
  });

  it("corrects a sum by terms × change to the sum of the new embeddings", () => {
    const [old, next, other] = [
      [0.5, 0.25, -1],
      [0.25, 0.5, 1],
      [1, -1, 0.5],
    ];
    const change = embeddingChange(old, next)!;
    // A user with three terms of the page (two clicks and a like) and one of another page.
    const before = sumOf([old, old, old, other]);
    expect(add(before, sumCorrection(change, 3))).toEqual(sumOf([next, next, next, other]));
    expect(interestMean(add(before, sumCorrection(change, 3)), 4)).toEqual(interestMean(sumOf([next, next, next, other]), 4));
  });

  it("sees no change in an embedding sent again, so no user is corrected", () => {
    expect(embeddingChange([0.1, 0.2], [0.1, 0.2])).toBeUndefined();
    expect(embeddingChange([0.1, 0.2], [0.1, 0.3])).toHaveLength(2);
  });

  it("works on float4 values, as PostgreSQL stores them", () => {
    expect(asStored([0.1, 1 / 3])).toEqual([Math.fround(0.1), Math.fround(1 / 3)]);
    // An embedding whose doubles differ below float4 precision is the stored one: no change.
    expect(embeddingChange(asStored([0.1]), asStored([0.1 + 1e-12]))).toBeUndefined();
  });

  it("refuses embeddings of different dimensions", () => {
    expect(() => embeddingChange([1, 2], [1, 2, 3])).toThrow(/dimension mismatch/);
  });
});
