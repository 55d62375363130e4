import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fsync } from "./parquet.js";

/**
 * One flush of a table, recorded before its files get their names: every message up to `through` (a stream sequence) is in `files`
 * (paths under the table's directory, each first written as `<path>.tmp`), and the totals since the archive began.
 */
export interface CommitRecord {
  /** When the stream was created (JetStream's own time): its sequences mean nothing to another stream of the same name. */
  streamCreated: string;
  through: number;
  files: string[];
  rows: number;
  totalRows: number;
  totalFiles: number;
  lostMessages: number;
  undecodableMessages: number;
  /**
   * The companion tables' part of the flush (CLICKS' erasures), by table: files under that table's directory, written and named as
   * `files` are, their rows and totals. Their messages are committed by `through` with the rest.
   */
  companions?: Record<string, CompanionCommit>;
}

export interface CompanionCommit {
  files: string[];
  rows: number;
  totalRows: number;
  totalFiles: number;
}

const TMP = ".tmp";
const recordName = (through: number) => `${String(through).padStart(20, "0")}.json`;

/**
 * The commit log of one table (ARCHIVE_DIR/_commits/<table>/): a flush is committed when its record is renamed into place; its files
 * are renamed after that. Recovery renames what a crash left of the newest flushes and deletes every `.tmp` file no record names.
 */
export class CommitLog {
  private readonly dir: string;

  constructor(
    private readonly archiveDir: string,
    private readonly table: string,
    /** The companion tables whose files this log's records name too. */
    private readonly companions: string[] = [],
  ) {
    this.dir = join(archiveDir, "_commits", table);
  }

  /** A table file's temporary name, under which it is written and flushed before its flush is committed. */
  static tmp(path: string): string {
    return path + TMP;
  }

  /** Where a table's file lives (a companion's, given its name). */
  pathOf(file: string, table = this.table): string {
    return join(this.archiveDir, table, file);
  }

  /** Makes the newest flush whole and forgets what no flush committed; the newest record, or none before the first flush. */
  async recover(): Promise<CommitRecord | undefined> {
    await mkdir(this.dir, { recursive: true });
    const names = (await readdir(this.dir)).filter((n) => n.endsWith(".json")).sort();
    let newest: CommitRecord | undefined;
    for (const name of names) {
      const record = JSON.parse(await readFile(join(this.dir, name), "utf8")) as CommitRecord;
      await this.applyRenames(record);
      newest = record;
    }
    for (const name of names.slice(0, -1)) await rm(join(this.dir, name));
    for (const name of await readdir(this.dir)) if (name.endsWith(TMP)) await rm(join(this.dir, name));
    for (const table of [this.table, ...this.companions]) await this.removeStrayTmp(join(this.archiveDir, table));
    return newest;
  }

  /** Commits a flush whose files are written under their temporary names, then names them and forgets the flushes before it. */
  async commit(record: CommitRecord, afterStep: () => void = () => undefined): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const path = join(this.dir, recordName(record.through));
    await writeFile(CommitLog.tmp(path), JSON.stringify(record));
    await fsync(CommitLog.tmp(path));
    await rename(CommitLog.tmp(path), path);
    await fsync(this.dir);
    afterStep();
    await this.applyRenames(record, afterStep);
    for (const name of await readdir(this.dir)) if (name.endsWith(".json") && name < recordName(record.through)) await rm(join(this.dir, name));
  }

  private async applyRenames(record: CommitRecord, afterStep: () => void = () => undefined): Promise<void> {
    const files = [
      ...record.files.map((file) => this.pathOf(file)),
      ...Object.entries(record.companions ?? {}).flatMap(([table, c]) => c.files.map((file) => this.pathOf(file, table))),
    ];
    for (const path of files) {
      if (existsSync(path)) continue;
      if (!existsSync(CommitLog.tmp(path))) throw new Error(`archive: ${path}, committed through stream sequence ${record.through}, is missing`);
      await rename(CommitLog.tmp(path), path);
      await fsync(dirname(path));
      afterStep();
    }
  }

  private async removeStrayTmp(dir: string): Promise<void> {
    if (!existsSync(dir)) return;
    for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
      if (entry.isFile() && entry.name.endsWith(TMP)) await rm(join(entry.parentPath, entry.name));
    }
  }
}
