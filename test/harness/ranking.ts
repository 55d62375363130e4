import { expect } from "vitest";
import type { clientsOf } from "./clients.js";

type Embedder = ReturnType<typeof clientsOf>["embedder"];

/** Vectors from the Embed RPC, keyed as given: the same model the pipeline uses, asked directly. */
export async function embedAll(embedder: Embedder, items: Array<{ key: string; text: string }>): Promise<Map<string, number[]>> {
  const out = new Map<string, number[]>();
  for (let i = 0; i < items.length; i += 256) {
    const chunk = items.slice(i, i + 256);
    const res = await embedder.embed({ texts: chunk.map((p) => p.text) });
    chunk.forEach((p, j) => out.set(p.key, res.embeddings[j]!.values));
  }
  return out;
}

export interface Ranking {
  top: Array<{ url: string; similarity: number }>;
  all: Map<string, number>;
}

/**
 * The reference: the mean of `terms`, every page ranked by cosine to it, desc, then url asc; the `seen` pages (those the user
 * clicked or liked) left out of the top, as SimilarContent and RecommendedEvents leave them out unless asked.
 */
export function rankByMean(terms: number[][], pageVectors: Map<string, number[]>, limit: number, seen: Iterable<string> = []): Ranking {
  const dim = terms[0]!.length;
  const mean = new Float64Array(dim);
  for (const t of terms) t.forEach((x, k) => (mean[k]! += x / terms.length));
  const norm = Math.hypot(...mean);
  const ranked = [...pageVectors].map(([url, v]) => ({ url, similarity: v.reduce((s, x, k) => s + x * mean[k]!, 0) / (norm * Math.hypot(...v)) }));
  ranked.sort((a, b) => b.similarity - a.similarity || (a.url < b.url ? -1 : a.url > b.url ? 1 : 0));
  const left = new Set(seen);
  return { top: ranked.filter((r) => !left.has(r.url)).slice(0, limit), all: new Map(ranked.map((r) => [r.url, r.similarity])) };
}

/** Equal, except that two pages whose reference similarities tie within float32 noise may swap. */
export function expectSameRanking(got: Array<{ url: string; similarity: number }>, ref: Ranking) {
  expect(got).toHaveLength(ref.top.length);
  got.forEach((g, i) => {
    expect(g.similarity).toBeCloseTo(ref.top[i]!.similarity, 4);
    if (g.url !== ref.top[i]!.url) expect(Math.abs(ref.all.get(g.url)! - ref.top[i]!.similarity)).toBeLessThan(1e-5);
  });
}
