import { EigenvalueDecomposition, Matrix } from "ml-matrix";
import { SeededRandom } from "./seeded-random.js";

/** A sparse row (one document): column indices and their values. */
export interface SparseRow {
  cols: Int32Array;
  vals: Float64Array;
}

export interface TruncatedSvd {
  /** Singular values, largest first (k of them). */
  values: Float64Array;
  /** Right singular vectors as rows: [columns, k] row-major, so row t is column t's k coordinates. */
  right: Float64Array;
  k: number;
}

export interface SvdOptions {
  k: number;
  /** Extra directions sampled beyond k; they make the top k accurate. */
  oversample?: number;
  /** Subspace iterations; each sharpens the gap between kept and dropped directions. */
  powerIterations?: number;
  seed?: number;
}

/** Y[n, l] = A · Z[cols, l] for the sparse rows A. */
function timesDense(rows: readonly SparseRow[], z: Float64Array, l: number): Float64Array {
  const y = new Float64Array(rows.length * l);
  rows.forEach((row, i) => {
    const out = i * l;
    for (let p = 0; p < row.cols.length; p++) {
      const v = row.vals[p]!;
      const src = row.cols[p]! * l;
      for (let j = 0; j < l; j++) y[out + j]! += v * z[src + j]!;
    }
  });
  return y;
}

/** Z[cols, l] = Aᵀ · Y[n, l]. */
function transposeTimesDense(rows: readonly SparseRow[], cols: number, y: Float64Array, l: number): Float64Array {
  const z = new Float64Array(cols * l);
  rows.forEach((row, i) => {
    const src = i * l;
    for (let p = 0; p < row.cols.length; p++) {
      const v = row.vals[p]!;
      const out = row.cols[p]! * l;
      for (let j = 0; j < l; j++) z[out + j]! += v * y[src + j]!;
    }
  });
  return z;
}

/** Orthonormal columns spanning Y's (modified Gram–Schmidt, twice for stability), in place on [n, l] row-major. */
function orthonormalize(y: Float64Array, n: number, l: number): void {
  // Work column-major: contiguous columns make the dot products and updates cache friendly.
  const cols = Array.from({ length: l }, (_, j) => {
    const c = new Float64Array(n);
    for (let i = 0; i < n; i++) c[i] = y[i * l + j]!;
    return c;
  });
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < l; j++) {
      const cj = cols[j]!;
      for (let q = 0; q < j; q++) {
        const cq = cols[q]!;
        let dot = 0;
        for (let i = 0; i < n; i++) dot += cq[i]! * cj[i]!;
        for (let i = 0; i < n; i++) cj[i]! -= dot * cq[i]!;
      }
      let norm = 0;
      for (let i = 0; i < n; i++) norm += cj[i]! * cj[i]!;
      norm = Math.sqrt(norm);
      // A direction with nothing left in it stays zero and later gets a zero singular value.
      const inv = norm > 1e-12 ? 1 / norm : 0;
      for (let i = 0; i < n; i++) cj[i]! *= inv;
    }
  }
  for (let j = 0; j < l; j++) {
    const c = cols[j]!;
    for (let i = 0; i < n; i++) y[i * l + j] = c[i]!;
  }
}

/**
 * Top-k singular triplets of a sparse n×cols matrix by randomized subspace iteration (Halko, Martinsson & Tropp 2011), deterministic per seed.
 * Only an l×l matrix (l = k + oversample) is eigendecomposed: a full n×n one takes minutes in JavaScript for a few thousand documents.
 */
export function truncatedSvd(rows: readonly SparseRow[], cols: number, opts: SvdOptions): TruncatedSvd {
  const n = rows.length;
  const k = Math.min(opts.k, n);
  const l = Math.min(n, k + (opts.oversample ?? 32));
  const rng = new SeededRandom(opts.seed ?? 1);
  const omega = new Float64Array(n * l);
  for (let i = 0; i < omega.length; i++) omega[i] = rng.normal();
  // Q spans the range of (A Aᵀ)^(q+1) Ω.
  let q = timesDense(rows, transposeTimesDense(rows, cols, omega, l), l);
  orthonormalize(q, n, l);
  for (let it = 0; it < (opts.powerIterations ?? 2); it++) {
    q = timesDense(rows, transposeTimesDense(rows, cols, q, l), l);
    orthonormalize(q, n, l);
  }
  // Qᵀ A Aᵀ Q (l×l) has A's top eigenpairs inside the subspace.
  const w = timesDense(rows, transposeTimesDense(rows, cols, q, l), l);
  const gram = new Float64Array(l * l);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < l; a++) {
      const qa = q[i * l + a]!;
      if (qa === 0) continue;
      const row = a * l;
      for (let b = 0; b < l; b++) gram[row + b]! += qa * w[i * l + b]!;
    }
  }
  const small = new Matrix(l, l);
  // Symmetrize: the two triangles differ only by rounding.
  for (let a = 0; a < l; a++) for (let b = 0; b < l; b++) small.set(a, b, (gram[a * l + b]! + gram[b * l + a]!) / 2);
  const evd = new EigenvalueDecomposition(small, { assumeSymmetric: true });
  const order = evd.realEigenvalues.map((v, i) => [v, i] as const).sort((x, y) => y[0] - x[0] || x[1] - y[1]);
  const vectors = evd.eigenvectorMatrix;
  const values = new Float64Array(k);
  const kept = new Float64Array(l * k);
  for (let c = 0; c < k; c++) {
    const [value, idx] = order[c]!;
    values[c] = Math.sqrt(Math.max(value, 0));
    for (let a = 0; a < l; a++) kept[a * k + c] = vectors.get(a, idx);
  }
  // U = Q · eigenvectors (n×k); then the right vectors are Aᵀ U / σ.
  const u = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < l; a++) {
      const qa = q[i * l + a]!;
      if (qa === 0) continue;
      for (let c = 0; c < k; c++) u[i * k + c]! += qa * kept[a * k + c]!;
    }
  }
  const right = transposeTimesDense(rows, cols, u, k);
  for (let t = 0; t < cols; t++) {
    for (let c = 0; c < k; c++) right[t * k + c] = values[c]! > 1e-12 ? right[t * k + c]! / values[c]! : 0;
  }
  return { values, right, k };
}
