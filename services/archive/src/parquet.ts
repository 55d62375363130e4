import { open } from "node:fs/promises";
import { DuckDBTimestampTZValue, type DuckDBAppender, type DuckDBConnection } from "@duckdb/node-api";
import type { ArchiveRow, Cell, ColumnType } from "./tables.js";

function append(a: DuckDBAppender, type: ColumnType, v: Cell): void {
  if (v === null) a.appendNull();
  else if (type === "VARCHAR") a.appendVarchar(String(v));
  else if (type === "UBIGINT") a.appendUBigInt(BigInt(v));
  else if (type === "BOOLEAN") a.appendBoolean(Boolean(v));
  else a.appendTimestampTZ(new DuckDBTimestampTZValue(BigInt(v) * 1000n));
}

/** Flushes a file's data and its directory entry to disk: after a rename, so that the new name survives a power loss too. */
export async function fsync(path: string): Promise<void> {
  const f = await open(path, "r");
  try {
    await f.sync();
  } finally {
    await f.close();
  }
}

const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;
const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** Writes `rows` as one zstd-compressed Parquet file at `path` (through the in-memory DuckDB table `scratch`), and flushes it to disk. */
export async function writeParquet(
  db: DuckDBConnection,
  scratch: string,
  columns: Array<[string, ColumnType]>,
  rows: ArchiveRow[],
  path: string,
): Promise<void> {
  await db.run(`CREATE OR REPLACE TEMP TABLE ${ident(scratch)} (${columns.map(([n, t]) => `${ident(n)} ${t}`).join(", ")})`);
  const appender = await db.createAppender(scratch);
  try {
    for (const r of rows) {
      columns.forEach(([, type], i) => append(appender, type, r.cells[i] ?? null));
      appender.endRow();
    }
    appender.flushSync();
  } finally {
    appender.closeSync();
  }
  await db.run(`COPY ${ident(scratch)} TO ${literal(path)} (FORMAT parquet, COMPRESSION zstd)`);
  await db.run(`DROP TABLE ${ident(scratch)}`);
  await fsync(path);
}
