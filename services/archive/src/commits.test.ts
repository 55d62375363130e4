import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CommitLog, type CommitRecord } from "./commits.js";
import { partitionOf } from "./tables.js";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function archive() {
  const dir = mkdtempSync(join(tmpdir(), "archive-commits-"));
  dirs.push(dir);
  return dir;
}

const record = (through: number, files: string[]): CommitRecord => ({
  streamCreated: "2026-12-04T00:00:00Z",
  through,
  files,
  rows: files.length,
  totalRows: files.length,
  totalFiles: files.length,
  lostMessages: 0,
  undecodableMessages: 0,
});

/** A table file under its temporary name, as a flush writes it before committing. */
function writeTmp(log: CommitLog, file: string) {
  const path = CommitLog.tmp(log.pathOf(file));
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileSync(path, "parquet");
}

describe("the commit log", () => {
  it("recovers nothing before the first flush", async () => {
    expect(await new CommitLog(archive(), "clicks").recover()).toBeUndefined();
  });

  it("names the files of a committed flush that a crash left under their temporary names", async () => {
    const dir = archive();
    const log = new CommitLog(dir, "clicks");
    const files = ["dt=2024-01-02/hour=00/part-1-10.parquet", "dt=2024-01-02/hour=01/part-1-10.parquet"];
    for (const f of files) writeTmp(log, f);
    // A crash right after the commit point: the record is in place, no file has its name yet.
    let steps = 0;
    await expect(
      log.commit(record(10, files), () => {
        if (++steps === 1) throw new Error("crash");
      }),
    ).rejects.toThrow("crash");
    expect(files.map((f) => existsSync(log.pathOf(f)))).toEqual([false, false]);

    const recovered = await new CommitLog(dir, "clicks").recover();
    expect(recovered?.through).toBe(10);
    expect(files.map((f) => existsSync(log.pathOf(f)))).toEqual([true, true]);
    expect(files.map((f) => existsSync(CommitLog.tmp(log.pathOf(f))))).toEqual([false, false]);
  });

  it("deletes the files of a flush that never committed, and keeps the newest record alone", async () => {
    const dir = archive();
    const log = new CommitLog(dir, "clicks");
    writeTmp(log, "dt=2024-01-02/hour=00/part-1-10.parquet");
    await log.commit(record(10, ["dt=2024-01-02/hour=00/part-1-10.parquet"]));
    writeTmp(log, "dt=2024-01-02/hour=00/part-11-20.parquet");
    await log.commit(record(20, ["dt=2024-01-02/hour=00/part-11-20.parquet"]));
    // A flush written and crashed before its record.
    writeTmp(log, "dt=2024-01-02/hour=00/part-21-30.parquet");

    const recovered = await new CommitLog(dir, "clicks").recover();
    expect(recovered?.through).toBe(20);
    expect(readdirSync(join(dir, "clicks", "dt=2024-01-02", "hour=00")).sort()).toEqual(["part-1-10.parquet", "part-11-20.parquet"]);
    expect(readdirSync(join(dir, "_commits", "clicks"))).toEqual(["00000000000000000020.json"]);
  });

  it("refuses a committed file that is gone under both names, rather than carry on without its rows", async () => {
    const dir = archive();
    const log = new CommitLog(dir, "clicks");
    writeTmp(log, "dt=2024-01-02/hour=00/part-1-10.parquet");
    await log.commit(record(10, ["dt=2024-01-02/hour=00/part-1-10.parquet"]));
    rmSync(log.pathOf("dt=2024-01-02/hour=00/part-1-10.parquet"));
    await expect(new CommitLog(dir, "clicks").recover()).rejects.toThrow(/part-1-10.parquet, committed through stream sequence 10, is missing/);
  });
});

describe("a companion table's files (CLICKS' erasures)", () => {
  it("are named with the flush that committed them, and deleted with one that did not", async () => {
    const dir = archive();
    const log = new CommitLog(dir, "clicks", ["erasures"]);
    const click = "dt=2024-01-02/hour=00/part-1-10.parquet";
    const erasure = "dt=2024-01-02/hour=05/part-1-10.parquet";
    writeTmp(log, click);
    mkdirSync(join(dir, "erasures", "dt=2024-01-02", "hour=05"), { recursive: true });
    writeFileSync(CommitLog.tmp(log.pathOf(erasure, "erasures")), "parquet");
    const r = { ...record(10, [click]), companions: { erasures: { files: [erasure], rows: 1, totalRows: 1, totalFiles: 1 } } };
    // A crash right after the commit point: neither file has its name yet.
    await expect(
      log.commit(r, () => {
        throw new Error("crash");
      }),
    ).rejects.toThrow("crash");
    // And a later flush's erasures file, written but never committed.
    const uncommitted = "dt=2024-01-02/hour=05/part-11-20.parquet";
    writeFileSync(CommitLog.tmp(log.pathOf(uncommitted, "erasures")), "parquet");

    const recovered = await new CommitLog(dir, "clicks", ["erasures"]).recover();
    expect(recovered?.companions?.erasures?.totalRows).toBe(1);
    expect(existsSync(log.pathOf(click))).toBe(true);
    expect(readdirSync(join(dir, "erasures", "dt=2024-01-02", "hour=05"))).toEqual(["part-1-10.parquet"]);
  });
});

describe("partitions", () => {
  it("put an event in the UTC hour of its event time", () => {
    expect(partitionOf(Date.parse("2024-01-02T00:59:59.999Z"))).toBe("dt=2024-01-02/hour=00");
    expect(partitionOf(Date.parse("2024-01-02T01:00:00Z"))).toBe("dt=2024-01-02/hour=01");
    expect(partitionOf(Date.parse("2023-12-31T23:30:00-01:00"))).toBe("dt=2024-01-01/hour=00");
  });
});
