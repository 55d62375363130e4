import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64";
import { uniformInt } from "pure-rand/distribution/uniformInt";
import { xoroshiro128plus } from "pure-rand/generator/xoroshiro128plus";
import type { RandomGenerator } from "pure-rand/types/RandomGenerator";

/** Seeded draws: every random choice of the generator goes through one of these. */
export class Draws {
  constructor(private readonly rng: RandomGenerator) {}

  /** An integer in [from, to]. */
  int(from: number, to: number): number {
    return uniformInt(this.rng, from, to);
  }

  /** A number in [0, 1). */
  float(): number {
    return uniformFloat64(this.rng);
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }

  /** Fisher–Yates, in place. */
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }

  /** `n` distinct items, in draw order. */
  sample<T>(xs: readonly T[], n: number): T[] {
    return this.shuffle([...xs]).slice(0, n);
  }
}

/**
 * Independent streams of one seed (xoroshiro128+ jumps of 2^64 draws), one per part of the
 * workload, so that changing the number of clicks leaves the pages as they were.
 */
export function drawStreams(seed: number, n: number): Draws[] {
  const rng = xoroshiro128plus(seed);
  return Array.from({ length: n }, () => {
    const stream = new Draws(rng.clone());
    rng.jump();
    return stream;
  });
}
