import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { readClicks } from "@recsys/bus";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { archivedClickMessages, query, table } from "./lake.js";

// Parquet files laid out and typed as services/archive writes them (DuckDB, hour partitions), read back by the lake.

const dir = mkdtempSync(join(tmpdir(), "lake-erasures-"));
const literal = (s: string) => `'${s.replaceAll("'", "''")}'`;

async function writeFile(table: string, hour: string, name: string, select: string, into = dir) {
  mkdirSync(join(into, table, hour), { recursive: true });
  const db = await (await DuckDBInstance.create(":memory:")).connect();
  await db.run(`COPY (${select}) TO ${literal(join(into, table, hour, name))} (FORMAT parquet, COMPRESSION zstd)`);
  db.closeSync();
}

const click = (seq: number, id: string, userid: string, minute: number) =>
  `SELECT ${seq}::UBIGINT AS stream_seq, '${id}' AS event_id, '${userid}' AS userid, 'https://e.org/${id}' AS url, 'view' AS event,
     TIMESTAMPTZ '2024-01-02 00:${String(minute).padStart(2, "0")}:00+00' AS event_time, TIMESTAMPTZ '2024-01-02 00:59:00+00' AS ingest_time, '{}' AS properties`;

beforeAll(async () => {
  // CLICKS 1-6: clicks at 1, 2, 4 and 6 (4 in another hour's file), erasures at 3 and 5 (of the hour ingest took them).
  await writeFile(
    "clicks",
    "dt=2024-01-02/hour=00",
    "part-000000000001-000000000006.parquet",
    [click(1, "a", "u1", 1), click(2, "b", "u2", 2), click(6, "f", "u1", 9)].join(" UNION ALL "),
  );
  await writeFile(
    "clicks",
    "dt=2024-01-01/hour=23",
    "part-000000000001-000000000006.parquet",
    click(4, "d", "u1", 3).replace("2024-01-02 00:03", "2024-01-01 23:59"),
  );
  await writeFile(
    "erasures",
    "dt=2024-01-02/hour=01",
    "part-000000000001-000000000006.parquet",
    `SELECT * FROM (VALUES (3::UBIGINT, 'del-1', 'u1', TIMESTAMPTZ '2024-01-02 01:00:00+00'), (5::UBIGINT, 'del-2', 'u2', TIMESTAMPTZ '2024-01-02 01:00:01+00'))
       AS t(stream_seq, event_id, userid, ingest_time)`,
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("the archived CLICKS messages", () => {
  it("yield each erasure at its own sequence among the clicks, as the UserDeleted it was", async () => {
    const batches: Array<Array<{ seq: number; what: string }>> = [];
    for await (const messages of archivedClickMessages(dir, 1, 7, 4)) {
      batches.push(
        messages.map((m) => {
          const read = readClicks(m);
          if ("error" in read) return { seq: m.seq, what: `error ${read.error}` };
          if (read.deletion) return { seq: m.seq, what: `erase ${read.deletion.userid} ${read.deletion.eventId} ${read.deletion.ingestTimeMs}` };
          return { seq: m.seq, what: `clicks ${read.clicks.map((c) => `${c.userid}:${c.eventId}`).join(",")}` };
        }),
      );
    }
    expect(batches).toEqual([
      [
        { seq: 1, what: "clicks u1:a" },
        { seq: 2, what: "clicks u2:b" },
        { seq: 3, what: `erase u1 del-1 ${Date.parse("2024-01-02T01:00:00Z")}` },
        { seq: 4, what: "clicks u1:d" },
      ],
      [
        { seq: 5, what: `erase u2 del-2 ${Date.parse("2024-01-02T01:00:01Z")}` },
        { seq: 6, what: "clicks u1:f" },
      ],
    ]);
  });

  it("start and end where asked", async () => {
    const seqs: number[] = [];
    for await (const messages of archivedClickMessages(dir, 3, 6)) seqs.push(...messages.map((m) => m.seq));
    expect(seqs).toEqual([3, 4, 5]);
  });
});

describe("SQL over the archive", () => {
  it("has a view of the erasures", async () => {
    const { rows } = await query(dir, "SELECT stream_seq, userid, dt, hour FROM erasures ORDER BY stream_seq");
    expect(rows).toEqual([
      { stream_seq: "3", userid: "u1", dt: "2024-01-02", hour: "01" },
      { stream_seq: "5", userid: "u2", dt: "2024-01-02", hour: "01" },
    ]);
  });
});

describe("an event sent again in another message", () => {
  const again = mkdtempSync(join(tmpdir(), "lake-again-"));
  const write = (table: string, select: string) => writeFile(table, "dt=2024-01-02/hour=00", "part-000000000001-000000000004.parquet", select, again);
  const engagement = (seq: number, kind: string, id: string, userid: string) =>
    `SELECT ${seq}::UBIGINT AS stream_seq, '${kind}' AS kind, '${id}' AS event_id, '${userid}' AS userid, ${kind === "interest" ? "NULL" : "'42'"} AS page_id,
       ${kind === "interest" ? "'words'" : "NULL"} AS text, TIMESTAMPTZ '2024-01-02 00:00:00+00' AS event_time, TIMESTAMPTZ '2024-01-02 00:00:00+00' AS ingest_time`;
  const page = (seq: number, version: string) =>
    `SELECT ${seq}::UBIGINT AS stream_seq, '${version}' AS event_id, 'https://e.org/p' AS url, '42' AS id, 'P' AS title, 'text ${version}' AS text,
       TIMESTAMPTZ '2024-01-02 00:00:00+00' AS event_time, TIMESTAMPTZ '2024-01-02 00:00:00+00' AS ingest_time`;
  beforeAll(async () => {
    // CLICKS 1-3: u1's click a; u2's click of the same id (another user's: another click); u1's a again, with its b (a retried call).
    await write("clicks", [click(1, "a", "u1", 1), click(2, "a", "u2", 1), click(3, "a", "u1", 1), click(3, "b", "u1", 2)].join(" UNION ALL "));
    // ENGAGEMENT 1-4: u1's like e1, the same like again, u1's interest e1 (another kind: another event), and an unlike with the
    // like's id (one kind with likes, as ingest's message ids have it: the same event).
    await write(
      "engagement",
      [engagement(1, "like", "e1", "u1"), engagement(2, "like", "e1", "u1"), engagement(3, "interest", "e1", "u1"), engagement(4, "unlike", "e1", "u1")].join(
        " UNION ALL ",
      ),
    );
    // CONTENT 1-3: a page's version twice, then another version of the same page.
    await write("content", [page(1, "v1"), page(2, "v1"), page(3, "v2")].join(" UNION ALL "));
  });
  afterAll(() => rmSync(again, { recursive: true, force: true }));

  it("is one row of its table, from the first message that held it, and a row per message of the raw table", async () => {
    const rows = async (sql: string) => (await query(again, sql)).rows;
    expect(await rows("SELECT stream_seq, userid, event_id FROM clicks ORDER BY stream_seq, userid, event_id")).toEqual([
      { stream_seq: "1", userid: "u1", event_id: "a" },
      { stream_seq: "2", userid: "u2", event_id: "a" },
      { stream_seq: "3", userid: "u1", event_id: "b" },
    ]);
    expect(await rows("SELECT count(*)::INT AS n FROM raw_clicks")).toEqual([{ n: 4 }]);
    expect(await rows("SELECT stream_seq, kind FROM engagement ORDER BY stream_seq")).toEqual([
      { stream_seq: "1", kind: "like" },
      { stream_seq: "3", kind: "interest" },
    ]);
    expect(await rows("SELECT count(*)::INT AS n FROM raw_engagement")).toEqual([{ n: 4 }]);
    expect(await rows("SELECT stream_seq, event_id FROM content ORDER BY stream_seq")).toEqual([
      { stream_seq: "1", event_id: "v1" },
      { stream_seq: "3", event_id: "v2" },
    ]);
    expect(await rows("SELECT count(*)::INT AS n FROM raw_content")).toEqual([{ n: 3 }]);
  });

  it("is in each message it came in for a rebuild, as the stream held it", async () => {
    const messages: string[] = [];
    for await (const batch of archivedClickMessages(again, 1, 4)) {
      for (const m of batch) {
        const read = readClicks(m);
        messages.push("clicks" in read ? `${m.seq}: ${read.clicks.map((c) => `${c.userid}:${c.eventId}`).join(",")}` : `${m.seq}: ?`);
      }
    }
    expect(messages).toEqual(["1: u1:a", "2: u2:a", "3: u1:a,u1:b"]);
  });
});

describe("the printed table", () => {
  it("lines up its columns, as psql does", () => {
    expect(
      table(
        ["n", "url"],
        [
          { n: "1", url: "https://e.org/a" },
          { n: "10", url: null },
        ],
      ).split("\n"),
    ).toEqual(["n  | url", "---+----------------", "1  | https://e.org/a", "10 |", "(2 rows)"]);
  });

  it("prints as many rows as a query answers, past what one call's arguments can hold", async () => {
    const { columns, rows } = await query(dir, "SELECT range AS n FROM range(200000)");
    const lines = table(columns, rows).split("\n");
    expect(lines.length).toBe(200_003);
    expect(lines.slice(0, 3)).toEqual(["n", "------", "0"]);
    expect(lines.at(-1)).toBe("(200000 rows)");
  });
});
