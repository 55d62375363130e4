import { fromBinary } from "@bufbuild/protobuf";
import { clicksOf, isUserDeleted, type MsgHdrs, type Topology } from "@recsys/bus";
import { ContentPageSchema, LikeSchema, StatedInterestSchema, UserDeletedSchema } from "@recsys/contracts/events/v1/events";

/** A column of an archive table: its Parquet (DuckDB) type. */
export type ColumnType = "VARCHAR" | "UBIGINT" | "TIMESTAMPTZ" | "BOOLEAN";

/** A cell: a string, a bigint (UBIGINT), a time in ms (TIMESTAMPTZ), a boolean, or null. */
export type Cell = string | bigint | number | boolean | null;

/** One archived row and the event time that picks its hour. */
export interface ArchiveRow {
  /** A companion table of the stream's table (see ArchiveTable.companions); the stream's own table when absent. */
  table?: CompanionTable["name"];
  eventTimeMs: number;
  /** When ingest accepted it (ms): the archive's lag is measured from here. */
  ingestTimeMs: number;
  cells: Cell[];
}

/** A stream's message as the archive reads it. */
export interface StreamMessage {
  seq: number;
  subject: string;
  data: Uint8Array;
  headers?: MsgHdrs;
}

/** A table of messages of another kind on a stream (CLICKS' erasures), kept beside the stream's table: ARCHIVE_DIR/<name>/dt=YYYY-MM-DD/hour=HH/. */
export interface CompanionTable {
  name: "erasures";
  /** Every column of a file, in order; `stream_seq` first (the message the row came from). */
  columns: Array<[string, ColumnType]>;
}

/** What the archive keeps of one stream, and where: ARCHIVE_DIR/<name>/dt=YYYY-MM-DD/hour=HH/. */
export interface ArchiveTable {
  name: "clicks" | "engagement" | "content";
  stream(t: Topology): string;
  /** Every column of a file, in order; `stream_seq` first (the message the row came from). */
  columns: Array<[string, ColumnType]>;
  /**
   * Tables of the stream's messages of other kinds, written by the same flushes: one commit record (this table's) covers the
   * files of all of them, so a stream sequence is held, lost or undecodable once, whatever table its message went to.
   */
  companions?: CompanionTable[];
  /** The rows of a message; throws when its bytes do not decode. */
  rowsOf(m: StreamMessage): ArchiveRow[];
}

const ms = (v: bigint) => Number(v);

/** CLICKS' erasures (UserDeleted): in the hour ingest accepted them, as they carry no event time. */
export const ERASURES_TABLE: CompanionTable = {
  name: "erasures",
  columns: [
    ["stream_seq", "UBIGINT"],
    ["event_id", "VARCHAR"],
    ["userid", "VARCHAR"],
    ["ingest_time", "TIMESTAMPTZ"],
  ],
};

export const CLICKS_TABLE: ArchiveTable = {
  name: "clicks",
  stream: (t) => t.clicksStream,
  columns: [
    ["stream_seq", "UBIGINT"],
    ["event_id", "VARCHAR"],
    ["userid", "VARCHAR"],
    ["url", "VARCHAR"],
    ["event", "VARCHAR"],
    ["event_time", "TIMESTAMPTZ"],
    ["ingest_time", "TIMESTAMPTZ"],
    // A JSON object: each property's name and its text or number.
    ["properties", "VARCHAR"],
  ],
  companions: [ERASURES_TABLE],
  rowsOf(m) {
    if (isUserDeleted(m)) {
      const d = fromBinary(UserDeletedSchema, m.data);
      const t = ms(d.ingestTimeMs);
      return [{ table: "erasures", eventTimeMs: t, ingestTimeMs: t, cells: [BigInt(m.seq), d.eventId, d.userid, t] }];
    }
    return clicksOf(m).map((c) => ({
      eventTimeMs: ms(c.eventTimeMs),
      ingestTimeMs: ms(c.ingestTimeMs),
      cells: [
        BigInt(m.seq),
        c.eventId,
        c.userid,
        c.url,
        c.event || "view",
        ms(c.eventTimeMs),
        ms(c.ingestTimeMs),
        JSON.stringify(Object.fromEntries(Object.entries(c.properties).map(([k, v]) => [k, v.kind.value ?? null]))),
      ],
    }));
  },
};

export const ENGAGEMENT_TABLE: ArchiveTable = {
  name: "engagement",
  stream: (t) => t.engagementStream,
  columns: [
    ["stream_seq", "UBIGINT"],
    // "like", "unlike" or "interest".
    ["kind", "VARCHAR"],
    ["event_id", "VARCHAR"],
    ["userid", "VARCHAR"],
    // A like's page; null for an interest.
    ["page_id", "VARCHAR"],
    // An interest's words; null for a like.
    ["text", "VARCHAR"],
    ["event_time", "TIMESTAMPTZ"],
    ["ingest_time", "TIMESTAMPTZ"],
  ],
  rowsOf(m) {
    if (m.subject.includes("engagement.interests.")) {
      const s = fromBinary(StatedInterestSchema, m.data);
      const t = ms(s.sourceTimeMs);
      return [
        { eventTimeMs: t, ingestTimeMs: ms(s.ingestTimeMs), cells: [BigInt(m.seq), "interest", s.eventId, s.userid, null, s.text, t, ms(s.ingestTimeMs)] },
      ];
    }
    const l = fromBinary(LikeSchema, m.data);
    const t = ms(l.sourceTimeMs);
    return [
      {
        eventTimeMs: t,
        ingestTimeMs: ms(l.ingestTimeMs),
        cells: [BigInt(m.seq), l.liked ? "like" : "unlike", l.eventId, l.userid, l.pageId, null, t, ms(l.ingestTimeMs)],
      },
    ];
  },
};

export const CONTENT_TABLE: ArchiveTable = {
  name: "content",
  stream: (t) => t.contentStream,
  columns: [
    ["stream_seq", "UBIGINT"],
    ["event_id", "VARCHAR"],
    ["url", "VARCHAR"],
    ["id", "VARCHAR"],
    ["title", "VARCHAR"],
    ["text", "VARCHAR"],
    // The page version's source time.
    ["event_time", "TIMESTAMPTZ"],
    ["ingest_time", "TIMESTAMPTZ"],
  ],
  rowsOf(m) {
    const p = fromBinary(ContentPageSchema, m.data);
    const t = ms(p.sourceTimeMs);
    return [{ eventTimeMs: t, ingestTimeMs: ms(p.ingestTimeMs), cells: [BigInt(m.seq), p.eventId, p.url, p.id, p.title, p.text, t, ms(p.ingestTimeMs)] }];
  },
};

export const TABLES = [CLICKS_TABLE, ENGAGEMENT_TABLE, CONTENT_TABLE];

/** The hour partition of an event time: dt=YYYY-MM-DD/hour=HH (UTC). */
export function partitionOf(eventTimeMs: number): string {
  const iso = new Date(eventTimeMs).toISOString();
  return `dt=${iso.slice(0, 10)}/hour=${iso.slice(11, 13)}`;
}
