import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";

/** The archive's tables: ARCHIVE_DIR/<table>/dt=YYYY-MM-DD/hour=HH/*.parquet. */
export const TABLES = ["clicks", "engagement", "content"] as const;

const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

const hasParquet = (dir: string) => existsSync(dir) && readdirSync(dir, { recursive: true, encoding: "utf8" }).some((f) => f.endsWith(".parquet"));

/**
 * An in-memory DuckDB with a view per archive table that has files (`clicks`, `engagement`, `content`), the hive partitions
 * `dt` (YYYY-MM-DD) and `hour` (HH) as text columns; returns the connection and the tables it has.
 */
export async function openLake(dir: string): Promise<{ db: DuckDBConnection; tables: string[] }> {
  const instance = await DuckDBInstance.create(":memory:");
  const db = await instance.connect();
  const tables: string[] = [];
  for (const t of TABLES) {
    if (!hasParquet(join(dir, t))) continue;
    await db.run(
      `CREATE VIEW ${t} AS SELECT * FROM read_parquet(${literal(join(dir, t, "**", "*.parquet"))}, hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hour': VARCHAR})`,
    );
    tables.push(t);
  }
  return { db, tables };
}

/** The rows of `sql` over the archive, as JSON-ready objects (big numbers as text). */
export async function query(dir: string, sql: string): Promise<{ columns: string[]; rows: Record<string, unknown>[] }> {
  const { db } = await openLake(dir);
  try {
    const reader = await db.runAndReadAll(sql);
    return { columns: reader.columnNames(), rows: reader.getRowObjectsJson() as Record<string, unknown>[] };
  } finally {
    db.closeSync();
  }
}
