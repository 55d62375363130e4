import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { AckPolicy, DeliverPolicy, encodeClickBatch, encodeUserDeleted, firstHeldSequence, type Bus, type MsgHdrs, type UserDeletion } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";

/** The local stack's archive (where `pnpm stack:up` runs services/archive): `$RECSYS_STACK_DIR/archive`, or `.stack/archive`. */
export function localArchiveDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.RECSYS_STACK_DIR ?? fileURLToPath(new URL("../../../.stack", import.meta.url)), "archive");
}

/** The archive's tables: ARCHIVE_DIR/<table>/dt=YYYY-MM-DD/hour=HH/*.parquet (`erasures`: CLICKS' UserDeleted messages, committed with `clicks`). */
export const TABLES = ["clicks", "engagement", "content", "erasures"] as const;

/**
 * What makes an event of a table the same event, as its consumers and the broker's dedup tell (a client's event id is unique only
 * per user and kind; a page version's id is a hash of the version), and which of its rows comes first: the lake's view of the table
 * keeps each event once, from the first message that held it (within one message, by event time, then the rest of the row);
 * `raw_<table>` keeps every row as the stream held it, once per message.
 */
const SAME_EVENT: Record<Exclude<(typeof TABLES)[number], "erasures">, { key: string; first: string }> = {
  clicks: { key: "userid, event_id", first: "stream_seq, event_time, url" },
  engagement: { key: "CASE kind WHEN 'interest' THEN 'interest' ELSE 'like' END, userid, event_id", first: "stream_seq, event_time, kind, page_id, text" },
  content: { key: "event_id", first: "stream_seq" },
};

const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

const hasParquet = (dir: string) => existsSync(dir) && readdirSync(dir, { recursive: true, encoding: "utf8" }).some((f) => f.endsWith(".parquet"));

/**
 * An in-memory DuckDB with a view per archive table that has files (`clicks`, `engagement`, `content`, `erasures`), the hive partitions
 * `dt` (YYYY-MM-DD) and `hour` (HH) as text columns; returns the connection and the tables it has. `clicks`, `engagement` and
 * `content` hold each event once: a click sent again in another message (a client's retry after the broker's duplicate window, or
 * in a call of other clicks) is a second row of its stream, counted once by the consumers, and once here. `raw_clicks`,
 * `raw_engagement` and `raw_content` hold every row as the stream held it, once per message (the rebuilds read `raw_clicks`), and
 * are the cheaper to scan: the views number every event of the archive first, whatever the query's filter.
 */
export async function openLake(dir: string): Promise<{ db: DuckDBConnection; tables: string[] }> {
  const instance = await DuckDBInstance.create(":memory:");
  const db = await instance.connect();
  const tables: string[] = [];
  for (const t of TABLES) {
    if (!hasParquet(join(dir, t))) continue;
    const files = `read_parquet(${literal(join(dir, t, "**", "*.parquet"))}, hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hour': VARCHAR})`;
    if (t === "erasures") {
      await db.run(`CREATE VIEW ${t} AS SELECT * FROM ${files}`);
    } else {
      await db.run(`CREATE VIEW raw_${t} AS SELECT * FROM ${files}`);
      await db.run(
        `CREATE VIEW ${t} AS SELECT * FROM raw_${t} QUALIFY row_number() OVER (PARTITION BY ${SAME_EVENT[t].key} ORDER BY ${SAME_EVENT[t].first}) = 1`,
      );
    }
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

/**
 * How far the archive holds a table's stream (its newest commit record), and which stream: undefined before its first flush.
 * `clicks` holds CLICKS whole: its records commit the erasures' files too.
 */
export async function archivedThrough(
  dir: string,
  table: "clicks" | "engagement" | "content",
): Promise<{ through: number; streamCreated: string } | undefined> {
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

/** The archived clicks of the CLICKS messages with sequences in [fromSeq, beforeSeq), in stream order (by event time within a message). */
async function clicksIn(db: DuckDBConnection, fromSeq: number, beforeSeq: number): Promise<ArchivedClick[]> {
  const reader = await db.runAndReadAll(
    `SELECT stream_seq::BIGINT AS seq, event_id, userid, url, event, epoch_ms(event_time) AS t, epoch_ms(ingest_time) AS it, properties
     FROM raw_clicks WHERE stream_seq >= ${fromSeq} AND stream_seq < ${beforeSeq} ORDER BY stream_seq, event_time, event_id`,
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
  return rows.map((r) => ({
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

/**
 * The archived clicks of the CLICKS messages with sequences in [fromSeq, beforeSeq), in stream order (by event time within a
 * message), `messagesAtOnce` messages a query.
 */
export async function* archivedClicks(dir: string, fromSeq: number, beforeSeq: number, messagesAtOnce = 2_000): AsyncGenerator<ArchivedClick[]> {
  const { db, tables } = await openLake(dir);
  try {
    if (!tables.includes("clicks")) return;
    for (let from = fromSeq; from < beforeSeq; from += messagesAtOnce) yield await clicksIn(db, from, Math.min(beforeSeq, from + messagesAtOnce));
  } finally {
    db.closeSync();
  }
}

export class ArchiveGapError extends Error {}

/**
 * Where CLICKS begins now (its first message; after the last one when it is empty) and how many messages it holds; when its
 * retention dropped its first messages, throws ArchiveGapError unless the archive holds the same stream (created at the same
 * time) through the message before the first one kept. `consequence` ends the error's message: what was done before it.
 */
export async function clicksHeadInArchive(
  bus: Pick<Bus, "jsm" | "topology">,
  dir: string,
  consequence = "nothing was changed",
): Promise<{ firstSeq: number; messages: number }> {
  const name = bus.topology.clicksStream;
  const info = await bus.jsm.streams.info(name);
  const firstSeq = firstHeldSequence(info.state);
  const found = { firstSeq, messages: info.state.messages };
  if (firstSeq <= 1) return found;
  const held = await archivedThrough(dir, "clicks");
  const gap = (why: string) => new ArchiveGapError(`${name} begins at sequence ${firstSeq} and ${why}: the messages before it are in neither; ${consequence}`);
  if (!held) throw gap(`the archive in ${dir} holds none of it`);
  if (held.streamCreated !== info.created) throw gap(`the archive in ${dir} holds another stream (created ${held.streamCreated}, this one ${info.created})`);
  if (held.through < firstSeq - 1) throw gap(`the archive in ${dir} holds it only through sequence ${held.through}`);
  return found;
}

/**
 * A rebuild's archive step, after its first check (clicksHeadInArchive) and after it deleted its state and durables, when the
 * stream no longer holds its first message: applies the archived CLICKS messages in stream order (archivedClickMessages), those
 * before the stream's first one and then every other one the archive holds, and `startAt(seq)` makes the durables begin after
 * them and returns how to delete them again. Returns that sequence; 1, with nothing applied and no durables made, when the stream
 * still holds its first message (the service makes them as at a first start).
 *
 * The stream's retention goes on dropping messages meanwhile, its oldest first. So the first held sequence is read again after
 * each pass and once after `startAt`, and what aged out is applied from the archive too; and the durables start where the archive
 * ends (messages as old as its last flush), not at the stream's oldest, which would go on expiring until the service pulled them.
 * Throws ArchiveGapError when the archive does not hold what aged out; on that or any failure after `startAt`, the durables are
 * deleted again.
 */
export async function applyArchivedHead(opts: {
  bus: Pick<Bus, "jsm" | "topology">;
  dir: string;
  apply: (messages: ArchivedClickMessage[]) => Promise<void>;
  startAt: (seq: number) => Promise<() => Promise<void>>;
}): Promise<number> {
  const consequence = "the rebuild stopped before its consumers were made; run it again once the archive holds them";
  let applied = 1;
  let tookAll = false;
  let undo: (() => Promise<void>) | undefined;
  const applyTo = async (before: number) => {
    for await (const messages of archivedClickMessages(opts.dir, applied, before)) await opts.apply(messages);
    applied = before;
  };
  for (;;) {
    try {
      const head = (await clicksHeadInArchive(opts.bus, opts.dir, consequence)).firstSeq;
      if (head > applied) {
        await applyTo(head);
      } else if (applied === 1 || undo) {
        return applied;
      } else if (!tookAll) {
        // The archive holds this stream (clicksHeadInArchive checked it): the rest it holds, once.
        tookAll = true;
        const held = await archivedThrough(opts.dir, "clicks");
        if (held && held.through + 1 > applied) await applyTo(held.through + 1);
      } else {
        undo = await opts.startAt(applied);
      }
    } catch (err) {
      // Durables made before a failure would let the service start on counts short of what aged out meanwhile.
      await undo?.();
      throw err;
    }
  }
}

/** applyArchivedHead's `startAt` for a service's CLICKS durables: each made to start at the sequence, deleted again by what it returns. */
export function durablesStartingAt(bus: Pick<Bus, "jsm" | "topology">, durables: ReadonlyArray<{ durable: string; filterSubject: string }>) {
  const stream = bus.topology.clicksStream;
  return async (seq: number) => {
    for (const { durable, filterSubject } of durables) {
      await bus.jsm.consumers.add(stream, {
        durable_name: durable,
        filter_subject: filterSubject,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.StartSequence,
        opt_start_seq: seq,
      });
    }
    return async () => {
      for (const { durable } of durables) await bus.jsm.consumers.delete(stream, durable).catch(() => undefined);
    };
  };
}

/** An archived erasure (UserDeleted), with the CLICKS message it was. */
export interface ArchivedErasure extends UserDeletion {
  streamSeq: number;
}

/** The archived erasures of the CLICKS messages with sequences in [fromSeq, beforeSeq), in stream order. */
async function erasuresIn(db: DuckDBConnection, fromSeq: number, beforeSeq: number): Promise<ArchivedErasure[]> {
  const reader = await db.runAndReadAll(
    `SELECT stream_seq::BIGINT AS seq, event_id, userid, epoch_ms(ingest_time) AS it FROM erasures
     WHERE stream_seq >= ${fromSeq} AND stream_seq < ${beforeSeq} ORDER BY stream_seq`,
  );
  return (reader.getRowObjectsJS() as Array<{ seq: bigint; event_id: string; userid: string; it: bigint }>).map((r) => ({
    streamSeq: Number(r.seq),
    eventId: r.event_id,
    userid: r.userid,
    ingestTimeMs: Number(r.it),
  }));
}

/** A CLICKS message again, as ingest published it. */
export interface ArchivedClickMessage {
  seq: number;
  data: Uint8Array;
  headers: MsgHdrs;
}

/**
 * The archived CLICKS messages with sequences in [fromSeq, beforeSeq), in stream order, `messagesAtOnce` sequences a batch: a
 * click message as a ClickBatch of its clicks again, an erasure as its UserDeleted (encodeUserDeleted) at its own sequence, so a
 * rebuild meets each erasure between the clicks before it and those after, as the consumers did.
 */
export async function* archivedClickMessages(dir: string, fromSeq: number, beforeSeq: number, messagesAtOnce = 2_000): AsyncGenerator<ArchivedClickMessage[]> {
  const { db, tables } = await openLake(dir);
  try {
    const withClicks = tables.includes("clicks");
    const withErasures = tables.includes("erasures");
    if (!withClicks && !withErasures) return;
    for (let from = fromSeq; from < beforeSeq; from += messagesAtOnce) {
      const to = Math.min(beforeSeq, from + messagesAtOnce);
      const bySeq = new Map<number, ArchivedClick[]>();
      for (const c of withClicks ? await clicksIn(db, from, to) : []) {
        let clicks = bySeq.get(c.streamSeq);
        if (!clicks) bySeq.set(c.streamSeq, (clicks = []));
        clicks.push(c);
      }
      const messages: ArchivedClickMessage[] = [...bySeq].map(([seq, clicks]) => ({ seq, ...encodeClickBatch(clicks.map(clickOf)) }));
      for (const e of withErasures ? await erasuresIn(db, from, to) : []) messages.push({ seq: e.streamSeq, ...encodeUserDeleted(e) });
      yield messages.sort((x, y) => x.seq - y.seq);
    }
  } finally {
    db.closeSync();
  }
}

function clickOf(c: ArchivedClick) {
  return create(ClickSchema, {
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
  });
}

/** Fixed-width columns, as psql prints them; any number of rows (an hour's file holds up to 500,000). */
export function table(columns: string[], rows: Record<string, unknown>[]): string {
  const cell = (v: unknown) => (v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v));
  const widths = columns.map((c) => rows.reduce((w, r) => Math.max(w, cell(r[c]).length), c.length));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join(" | ")
      .trimEnd();
  return [line(columns), widths.map((w) => "-".repeat(w)).join("-+-"), ...rows.map((r) => line(columns.map((c) => cell(r[c])))), `(${rows.length} rows)`].join(
    "\n",
  );
}
