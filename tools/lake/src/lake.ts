import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { encodeClickBatch, firstHeldSequence, type Bus, type MsgHdrs } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";

/** The local stack's archive (where `pnpm stack:up` runs services/archive): `$RECSYS_STACK_DIR/archive`, or `.stack/archive`. */
export function localArchiveDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.RECSYS_STACK_DIR ?? fileURLToPath(new URL("../../../.stack", import.meta.url)), "archive");
}

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

/** How far the archive holds a table's stream (its newest commit record), and which stream: undefined before its first flush. */
export async function archivedThrough(dir: string, table: (typeof TABLES)[number]): Promise<{ through: number; streamCreated: string } | undefined> {
  const commits = join(dir, "_commits", table);
  if (!existsSync(commits)) return undefined;
  const newest = readdirSync(commits)
    .filter((n) => n.endsWith(".json"))
    .sort()
    .at(-1);
  if (!newest) return undefined;
  const record = JSON.parse(readFileSync(join(commits, newest), "utf8")) as { through: number; streamCreated: string };
  return { through: record.through, streamCreated: record.streamCreated };
}

/** An archived click, with the stream message it came in. */
export interface ArchivedClick {
  streamSeq: number;
  eventId: string;
  userid: string;
  url: string;
  event: string;
  eventTimeMs: number;
  ingestTimeMs: number;
  properties: Record<string, string | number>;
}

/**
 * The archived clicks of the CLICKS messages with sequences in [fromSeq, beforeSeq), in stream order (by event time within a
 * message), `messagesAtOnce` messages a query.
 */
export async function* archivedClicks(dir: string, fromSeq: number, beforeSeq: number, messagesAtOnce = 2_000): AsyncGenerator<ArchivedClick[]> {
  const { db, tables } = await openLake(dir);
  try {
    if (!tables.includes("clicks")) return;
    for (let from = fromSeq; from < beforeSeq; from += messagesAtOnce) {
      const to = Math.min(beforeSeq, from + messagesAtOnce);
      const reader = await db.runAndReadAll(
        `SELECT stream_seq::BIGINT AS seq, event_id, userid, url, event, epoch_ms(event_time) AS t, epoch_ms(ingest_time) AS it, properties
         FROM clicks WHERE stream_seq >= ${from} AND stream_seq < ${to} ORDER BY stream_seq, event_time, event_id`,
      );
      const rows = reader.getRowObjectsJS() as Array<{
        seq: bigint;
        event_id: string;
        userid: string;
        url: string;
        event: string;
        t: bigint;
        it: bigint;
        properties: string;
      }>;
      yield rows.map((r) => ({
        streamSeq: Number(r.seq),
        eventId: r.event_id,
        userid: r.userid,
        url: r.url,
        event: r.event,
        eventTimeMs: Number(r.t),
        ingestTimeMs: Number(r.it),
        properties: JSON.parse(r.properties) as Record<string, string | number>,
      }));
    }
  } finally {
    db.closeSync();
  }
}

export class ArchiveGapError extends Error {}

/**
 * Where CLICKS begins now (its first message; after the last one when it is empty) and how many messages it holds; when its
 * retention dropped its first messages, throws ArchiveGapError unless the archive holds the same stream (created at the same
 * time) through the message before the first one kept.
 */
export async function clicksHeadInArchive(bus: Bus, dir: string): Promise<{ firstSeq: number; messages: number }> {
  const name = bus.topology.clicksStream;
  const info = await bus.jsm.streams.info(name);
  const firstSeq = firstHeldSequence(info.state);
  const found = { firstSeq, messages: info.state.messages };
  if (firstSeq <= 1) return found;
  const held = await archivedThrough(dir, "clicks");
  const gap = (why: string) =>
    new ArchiveGapError(`${name} begins at sequence ${firstSeq} and ${why}: the messages before it are in neither; nothing was changed`);
  if (!held) throw gap(`the archive in ${dir} holds none of it`);
  if (held.streamCreated !== info.created) throw gap(`the archive in ${dir} holds another stream (created ${held.streamCreated}, this one ${info.created})`);
  if (held.through < firstSeq - 1) throw gap(`the archive in ${dir} holds it only through sequence ${held.through}`);
  return found;
}

/** The archived CLICKS messages with sequences in [fromSeq, beforeSeq), in stream order, as ClickBatch messages of their clicks again. */
export async function* archivedClickMessages(
  dir: string,
  fromSeq: number,
  beforeSeq: number,
): AsyncGenerator<Array<{ seq: number; data: Uint8Array; headers: MsgHdrs }>> {
  for await (const rows of archivedClicks(dir, fromSeq, beforeSeq)) {
    const bySeq = new Map<number, ArchivedClick[]>();
    for (const r of rows) {
      let clicks = bySeq.get(r.streamSeq);
      if (!clicks) bySeq.set(r.streamSeq, (clicks = []));
      clicks.push(r);
    }
    yield [...bySeq].map(([seq, clicks]) => ({
      seq,
      ...encodeClickBatch(
        clicks.map((c) =>
          create(ClickSchema, {
            eventId: c.eventId,
            userid: c.userid,
            url: c.url,
            event: c.event,
            eventTimeMs: BigInt(c.eventTimeMs),
            ingestTimeMs: BigInt(c.ingestTimeMs),
            properties: Object.fromEntries(
              Object.entries(c.properties).map(([k, v]) => [
                k,
                { kind: typeof v === "number" ? { case: "number" as const, value: v } : { case: "text" as const, value: String(v) } },
              ]),
            ),
          }),
        ),
      ),
    }));
  }
}
