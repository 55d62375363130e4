/** Vector arithmetic on plain arrays, for the few updates PostgreSQL's vector type cannot scale itself. */

export function scaled(v: readonly number[], k: number): number[] {
  return v.map((x) => x * k);
}

export function difference(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new Error(`dimension mismatch: ${a.length} vs ${b.length}`);
  return a.map((x, i) => x - b[i]!);
}

export function sameVector(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Why an embedding cannot be stored, or undefined when it can. */
export function embeddingProblem(v: readonly number[], dimension: number): string | undefined {
  if (v.length !== dimension) return `embedding has ${v.length} dimensions, expected ${dimension}`;
  if (!v.every(Number.isFinite)) return "embedding has a non-finite value";
  if (!v.some((x) => x !== 0)) return "embedding is the zero vector";
  return undefined;
}
