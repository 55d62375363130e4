import { mkdir } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { DeliverPolicy } from "@nats-io/jetstream";
import type { DuckDBConnection } from "@duckdb/node-api";
import type { Bus, CrashAfterEffects } from "@recsys/bus";
import type { Logger } from "@recsys/logging";
import { Counter, Histogram, registry } from "@recsys/metrics";
import { CommitLog, type CommitRecord, type CompanionCommit } from "./commits.js";
import { writeParquet } from "./parquet.js";
import { partitionOf, type ArchiveRow, type ArchiveTable, type StreamMessage } from "./tables.js";

const rowsArchived = new Counter({
  name: "recsys_archive_rows_total",
  help: "Rows in closed archive files",
  labelNames: ["table"] as const,
  registers: [registry],
});
const filesArchived = new Counter({ name: "recsys_archive_files_total", help: "Closed archive files", labelNames: ["table"] as const, registers: [registry] });
const messagesLost = new Counter({
  name: "recsys_archive_lost_messages_total",
  help: "Messages the stream no longer held when the archive came to them (its retention)",
  labelNames: ["table"] as const,
  registers: [registry],
});
const messagesUndecodable = new Counter({
  name: "recsys_archive_undecodable_messages_total",
  help: "Messages whose bytes did not decode as their type: not archived",
  labelNames: ["table"] as const,
  registers: [registry],
});
const archiveLag = new Histogram({
  name: "recsys_archive_lag_seconds",
  help: "From ingest accepting an event to its row in a closed file",
  labelNames: ["table"] as const,
  buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 20, 30, 45, 60, 120, 300],
  registers: [registry],
});

export interface FlushLimits {
  /** A flush when this many rows are buffered. */
  maxRows: number;
  /** A flush when the buffered messages hold this many bytes. */
  maxBytes: number;
  /** A flush when the oldest buffered message was read this long ago. */
  maxAgeMs: number;
}

export interface TableProgress {
  archivedThrough: number;
  rows: number;
  files: number;
  bufferedRows: number;
  lostMessages: number;
  undecodableMessages: number;
}

/**
 * Archives one stream: reads it in sequence order from the message after the last one committed (an ordered consumer: nothing to
 * ack, nothing redelivered), buffers rows, and at a limit writes one Parquet file per hour of event time under a temporary name,
 * commits the flush (the stream sequence it reaches, the files) in the commit log, names the files, and goes on. A crash at any
 * point leaves either the flush committed (recovery names its files) or not (its files are deleted and its messages read again).
 */
export class TableArchiver {
  private readonly log: CommitLog;
  private committed: CommitRecord = {
    streamCreated: "",
    through: 0,
    files: [],
    rows: 0,
    totalRows: 0,
    totalFiles: 0,
    lostMessages: 0,
    undecodableMessages: 0,
  };
  private buffer: ArchiveRow[] = [];
  private bufferBytes = 0;
  private bufferedThrough = 0;
  private bufferedSince = 0;
  private lost = 0;
  private undecodable = 0;

  constructor(
    private readonly opts: {
      table: ArchiveTable;
      bus: Bus;
      dir: string;
      db: DuckDBConnection;
      limits: FlushLimits;
      logger: Logger;
      crashAfterEffects?: CrashAfterEffects;
    },
  ) {
    this.log = new CommitLog(
      opts.dir,
      opts.table.name,
      (opts.table.companions ?? []).map((c) => c.name),
    );
  }

  get table(): ArchiveTable {
    return this.opts.table;
  }

  progress(): TableProgress {
    return {
      archivedThrough: this.committed.through,
      rows: this.committed.totalRows,
      files: this.committed.totalFiles,
      bufferedRows: this.buffer.filter((r) => r.table === undefined).length,
      lostMessages: this.committed.lostMessages + this.lost,
      undecodableMessages: this.committed.undecodableMessages + this.undecodable,
    };
  }

  /**
   * The progress of each companion table (CLICKS' erasures): archived through the same sequence as the stream's table, as one
   * commit covers both; lost and undecodable messages are counted once, under the stream's table.
   */
  companionProgress(): Array<{ table: string } & TableProgress> {
    return (this.opts.table.companions ?? []).map(({ name }) => {
      const c = this.committed.companions?.[name];
      return {
        table: name,
        archivedThrough: this.committed.through,
        rows: c?.totalRows ?? 0,
        files: c?.totalFiles ?? 0,
        bufferedRows: this.buffer.filter((r) => r.table === name).length,
        lostMessages: 0,
        undecodableMessages: 0,
      };
    });
  }

  /** Recovers from the commit log, then archives until `signal` aborts (what is buffered then is read again at the next start). */
  async run(signal: AbortSignal): Promise<void> {
    const { bus, table, logger } = this.opts;
    const recovered = await this.log.recover();
    if (recovered) this.committed = recovered;
    this.bufferedThrough = this.committed.through;
    logger.info({ table: table.name, through: this.committed.through }, "archive recovered");
    const stream = table.stream(bus.topology);
    const created = (await bus.jsm.streams.info(stream)).created;
    if (this.committed.streamCreated && this.committed.streamCreated !== created)
      throw new Error(
        `${stream} was created at ${created}, not at ${this.committed.streamCreated} as the stream ${this.log.pathOf("")} holds: its sequences are another stream's. Move that directory aside to archive the new stream.`,
      );
    this.committed.streamCreated = created;
    while (!signal.aborted) {
      try {
        const consumer = await bus.js.consumers.get(stream, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: this.bufferedThrough + 1 });
        while (!signal.aborted) {
          const batch = await consumer.fetch({ max_messages: 1_000, expires: 1_000 });
          for await (const m of batch) {
            this.take({ seq: m.seq, subject: m.subject, data: m.data, headers: m.headers });
            if (this.full()) await this.flush();
          }
          if (this.due()) await this.flush();
        }
      } catch (err) {
        if (signal.aborted) return;
        logger.warn({ table: table.name, err: String(err) }, "archive read failed, resuming after what is buffered");
        await sleep(1_000);
      }
    }
  }

  private take(m: StreamMessage): void {
    if (m.seq <= this.bufferedThrough) return;
    if (m.seq > this.bufferedThrough + 1) {
      const gap = m.seq - this.bufferedThrough - 1;
      this.lost += gap;
      messagesLost.inc({ table: this.opts.table.name }, gap);
      this.opts.logger.error(
        { table: this.opts.table.name, from: this.bufferedThrough + 1, to: m.seq - 1 },
        "messages gone from the stream before they were archived",
      );
    }
    if (this.buffer.length === 0) this.bufferedSince = Date.now();
    try {
      for (const r of this.opts.table.rowsOf(m)) this.buffer.push(r);
    } catch (err) {
      this.undecodable++;
      messagesUndecodable.inc({ table: this.opts.table.name });
      this.opts.logger.error({ table: this.opts.table.name, seq: m.seq, err: String(err) }, "undecodable message: not archived");
    }
    this.bufferBytes += m.data.length;
    this.bufferedThrough = m.seq;
  }

  /** The buffer is at its size limits. */
  private full(): boolean {
    return this.buffer.length >= this.opts.limits.maxRows || this.bufferBytes >= this.opts.limits.maxBytes;
  }

  /** Something is buffered, and it is at a limit, old enough, or rows of none (undecodable messages only). */
  private due(): boolean {
    if (this.bufferedThrough === this.committed.through) return false;
    return this.full() || Date.now() - this.bufferedSince >= this.opts.limits.maxAgeMs || this.buffer.length === 0;
  }

  /** Writes the buffer, one file per table and hour, commits it, names the files. */
  async flush(): Promise<void> {
    const { table, db, crashAfterEffects, logger } = this.opts;
    const crashPoint = () => crashAfterEffects?.ran(1, logger, table.stream(this.opts.bus.topology));
    const first = this.committed.through + 1;
    const through = this.bufferedThrough;
    const byFile = new Map<string, { table: string; hour: string; rows: ArchiveRow[] }>();
    for (const r of this.buffer) {
      const name = r.table ?? table.name;
      const hour = partitionOf(r.eventTimeMs);
      let f = byFile.get(`${name}/${hour}`);
      if (!f) byFile.set(`${name}/${hour}`, (f = { table: name, hour, rows: [] }));
      f.rows.push(r);
    }
    const files: string[] = [];
    const companions: Record<string, CompanionCommit> = {};
    for (const c of table.companions ?? []) {
      const before = this.committed.companions?.[c.name];
      companions[c.name] = { files: [], rows: 0, totalRows: before?.totalRows ?? 0, totalFiles: before?.totalFiles ?? 0 };
    }
    for (const { table: name, hour, rows } of byFile.values()) {
      const companion = table.companions?.find((c) => c.name === name);
      const file = `${hour}/part-${String(first).padStart(12, "0")}-${String(through).padStart(12, "0")}.parquet`;
      const path = this.log.pathOf(file, name);
      await mkdir(this.log.pathOf(hour, name), { recursive: true });
      await writeParquet(db, `buffered_${name}`, companion?.columns ?? table.columns, rows, CommitLog.tmp(path));
      crashPoint();
      if (companion) {
        const c = companions[name]!;
        c.files.push(file);
        c.rows += rows.length;
        c.totalRows += rows.length;
        c.totalFiles++;
      } else files.push(file);
    }
    const ownRows = this.buffer.filter((r) => r.table === undefined).length;
    const record: CommitRecord = {
      streamCreated: this.committed.streamCreated,
      through,
      files,
      rows: ownRows,
      totalRows: this.committed.totalRows + ownRows,
      totalFiles: this.committed.totalFiles + files.length,
      lostMessages: this.committed.lostMessages + this.lost,
      undecodableMessages: this.committed.undecodableMessages + this.undecodable,
      ...(table.companions ? { companions } : {}),
    };
    await this.log.commit(record, crashPoint);
    const now = Date.now();
    for (const r of this.buffer) archiveLag.observe({ table: r.table ?? table.name }, (now - r.ingestTimeMs) / 1000);
    rowsArchived.inc({ table: table.name }, ownRows);
    filesArchived.inc({ table: table.name }, files.length);
    for (const [name, c] of Object.entries(companions)) {
      rowsArchived.inc({ table: name }, c.rows);
      filesArchived.inc({ table: name }, c.files.length);
    }
    this.committed = record;
    this.buffer = [];
    this.bufferBytes = 0;
    this.lost = 0;
    this.undecodable = 0;
  }
}
