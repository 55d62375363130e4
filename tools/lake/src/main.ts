#!/usr/bin/env node
import { resolve } from "node:path";
import { Command } from "commander";
import { localArchiveDir, query, table, TABLES } from "./lake.js";

new Command("lake")
  .description(
    `SQL (DuckDB) over the archive's Parquet files: views ${TABLES.join(", ")} (clicks, engagement and content hold each event once; raw_clicks, raw_engagement and raw_content once per message), with the partitions dt and hour as columns.`,
  )
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
