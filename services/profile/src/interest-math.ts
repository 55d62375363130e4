import { difference, sameVector, scaled } from "./vectors.js";

// A user's interest is stored as the sum of its terms' embeddings and their count; the mean is the
// interest. A page re-embedded changes every term it is behind, so the sum moves by terms × change.

/** What PostgreSQL stores is float4: the arithmetic is done on exactly those values. */
export function asStored(v: readonly number[]): number[] {
  return v.map(Math.fround);
}

/** How a page's embedding moved (next − previous), or undefined when it did not. */
export function embeddingChange(previous: readonly number[], next: readonly number[]): number[] | undefined {
  return sameVector(previous, next) ? undefined : difference(next, previous);
}

/** What to add to the sum of a user with `terms` terms (clicks, likes) of a page whose embedding moved by `change`. */
export function sumCorrection(change: readonly number[], terms: number): number[] {
  return scaled(change, terms);
}

/** The interest itself: the mean of the terms' embeddings. */
export function interestMean(sum: readonly number[], terms: number): number[] {
  return sum.map((x) => x / terms);
}
