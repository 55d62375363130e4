#!/usr/bin/env node
import { resolve } from "node:path";
import { Command } from "commander";
import { localArchiveDir, query, TABLES } from "./lake.js";

/** Fixed-width columns, as psql prints them. */
function table(columns: string[], rows: Record<string, unknown>[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join(" | ")
      .trimEnd();
  return [line(columns), widths.map((w) => "-".repeat(w)).join("-+-"), ...rows.map((r) => line(columns.map((c) => cell(r[c])))), `(${rows.length} rows)`].join(
    "\n",
  );
}

new Command("lake")
  .description(`SQL (DuckDB) over the archive's Parquet files: views ${TABLES.join(", ")}, with the partitions dt and hour as columns.`)
  .argument("<sql>", "the query")
  .option("--dir <dir>", "the archive (ARCHIVE_DIR)", process.env.ARCHIVE_DIR ?? localArchiveDir())
  .option("--json", "print the rows as JSON", false)
  .action(async (sql: string, o: { dir: string; json: boolean }) => {
    const { columns, rows } = await query(resolve(o.dir), sql);
    process.stdout.write(o.json ? `${JSON.stringify(rows, null, 2)}\n` : `${table(columns, rows)}\n`);
  })
  .parseAsync()
  .catch((err: unknown) => {
    process.stderr.write(`lake: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
