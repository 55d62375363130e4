import { once } from "node:events";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { create, toBinary } from "@bufbuild/protobuf";
import { DuckDBInstance } from "@duckdb/node-api";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Topology } from "@recsys/bus";
import { ClickSchema, ContentPageSchema, LikeSchema, StatedInterestSchema } from "@recsys/contracts/events/v1/events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { publishClicks } from "./harness/analytics.js";
import { clientsOf } from "./harness/clients.js";
import { readJsonLinesGz } from "./harness/files.js";
import { readClicks } from "./harness/reference.js";
import { natsOf, referenceClicks, referencePages, startStack, type TestStack } from "./harness/stack.js";

// services/archive alone (it needs only NATS), with events published straight to their streams as
// ingest would, and the Parquet files read back with DuckDB.

interface Page {
  id: string;
  url: string;
  title: string;
  text: string;
  _source_time: string;
}

const clicks = readClicks(referenceClicks).map((c, i) =>
  create(ClickSchema, {
    eventId: `ref-${i}`,
    userid: c.userid,
    url: c.url,
    eventTimeMs: BigInt(Date.parse(c.event_time)),
    ingestTimeMs: BigInt(Date.parse(c.event_time)),
    event: i % 7 === 0 ? "add_to_cart" : "",
    properties: i % 3 === 0 ? { position: { kind: { case: "number", value: i % 10 } }, ref: { kind: { case: "text", value: `r${i % 4}` } } } : {},
  }),
);
const pages = readJsonLinesGz<Page>(referencePages);

/** Publishes pages, likes and interests straight to CONTENT and ENGAGEMENT; returns how many engagement events. */
async function publishPagesAndEngagement(stack: TestStack): Promise<number> {
  const nc = await connect({ servers: natsOf(stack) });
  try {
    const js = jetstream(nc);
    const t = new Topology(stack.namespace);
    await Promise.all(
      pages.map((p, i) =>
        js.publish(
          t.contentSubject(i % 8),
          toBinary(
            ContentPageSchema,
            create(ContentPageSchema, {
              eventId: `page-${i}`,
              url: p.url,
              id: p.id,
              title: p.title,
              text: p.text,
              sourceTimeMs: BigInt(Date.parse(p._source_time)),
            }),
          ),
        ),
      ),
    );
    let n = 0;
    for (let i = 0; i < 300; i++) {
      const userid = `u${i % 40}`;
      const sourceTimeMs = BigInt(Date.parse("2024-01-02T00:00:00Z") + i * 30_000);
      if (i % 5 === 4) {
        await js.publish(
          t.statedInterestsSubject(i % 8),
          toBinary(StatedInterestSchema, create(StatedInterestSchema, { eventId: `interest-${i}`, userid, text: `topic ${i}`, sourceTimeMs })),
        );
      } else {
        await js.publish(
          t.likesSubject(i % 8),
          toBinary(LikeSchema, create(LikeSchema, { eventId: `like-${i}`, userid, pageId: pages[i]!.id, liked: i % 9 !== 0, sourceTimeMs })),
        );
      }
      n++;
    }
    return n;
  } finally {
    await nc.close();
  }
}

/** A query over an archive table (`t`), run by DuckDB over its Parquet files with the partitions as columns. */
async function archived(dir: string, table: string, query: string): Promise<Record<string, unknown>[]> {
  const db = await DuckDBInstance.create(":memory:");
  const c = await db.connect();
  try {
    await c.run(
      `CREATE VIEW t AS SELECT * FROM read_parquet('${join(dir, table)}/**/*.parquet', hive_partitioning = true, hive_types = {'dt': VARCHAR, 'hour': VARCHAR})`,
    );
    const reader = await c.runAndReadAll(query);
    return reader.getRowObjectsJson() as Record<string, unknown>[];
  } finally {
    c.closeSync();
  }
}

/** Waits until every table is archived up to its stream's newest message, nothing buffered; returns the progress then. */
async function waitArchived(stack: TestStack, timeoutMs = 120_000) {
  let tables: Awaited<ReturnType<ReturnType<typeof clientsOf>["archive"]["progress"]>>["tables"] = [];
  await expect
    .poll(
      async () => {
        tables = (await clientsOf(stack).archive.progress({})).tables;
        return tables.every((t) => t.archivedThrough === t.lastSequence && t.bufferedRows === 0n);
      },
      { timeout: timeoutMs, interval: 250 },
    )
    .toBe(true);
  return Object.fromEntries(tables.map((t) => [t.table, t]));
}

const tmpFiles = (dir: string) => readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".tmp"));

describe("the archive through kill -9 at every step of a flush and at random", () => {
  let stack: TestStack;
  const dir = mkdtempSync(join(tmpdir(), "recsys-archive-"));
  let engagement = 0;
  beforeAll(async () => {
    // Files of 1,000 rows, or 1 s old, so that the reference replay is many flushes to crash in.
    stack = await startStack("archivekilled", { ARCHIVE_DIR: dir, ARCHIVE_MAX_ROWS: "1000", ARCHIVE_MAX_AGE_MS: "1000" }, { services: ["archive"] });
    await stack.kill("archive");
    await publishClicks(stack, clicks, "archived");
    engagement = await publishPagesAndEngagement(stack);
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("holds every reference click, page, like and interest exactly once, in the hour of its event time", async () => {
    // A crash after the 1st, 2nd, 3rd, 5th and 8th step (a file written, a flush committed, a file named) of a run.
    for (const step of [1, 2, 3, 5, 8]) {
      const crashing = stack.spawn("archive", { RECSYS_CRASH_AFTER_EFFECTS: String(step) });
      const [, signal] = await once(crashing, "exit");
      expect(signal, `crash after step ${step}`).toBe("SIGKILL");
    }
    // Then kill -9 from outside at random moments (seeded).
    let seed = 11;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let k = 0; k < 4; k++) {
      await stack.start("archive");
      await sleep(100 + random() * 1_500);
      await stack.kill("archive");
    }
    await stack.start("archive");
    const progress = await waitArchived(stack);
    expect(progress.clicks!.rows).toBe(BigInt(clicks.length));
    // Files of at most 1,000 rows: at least 20 for the 19,855 clicks.
    expect(progress.clicks!.files).toBeGreaterThanOrEqual(20n);
    expect(progress.content!.rows).toBe(BigInt(pages.length));
    expect(progress.engagement!.rows).toBe(BigInt(engagement));
    expect(tmpFiles(dir)).toEqual([]);

    // Clicks: the reference's, each once, with their event types and properties.
    const rows = await archived(
      dir,
      "clicks",
      `SELECT event_id, userid, url, epoch_ms(event_time) AS t, event, properties, dt, hour,
         strftime(event_time AT TIME ZONE 'UTC', '%Y-%m-%d') AS event_dt, lpad(hour(event_time AT TIME ZONE 'UTC')::VARCHAR, 2, '0') AS event_hour FROM t`,
    );
    expect(rows).toHaveLength(clicks.length);
    const got = rows.map((r) => `${r.event_id}|${r.userid}|${r.url}|${r.t}|${r.event}|${r.properties}`).sort();
    const want = clicks
      .map(
        (c) =>
          `${c.eventId}|${c.userid}|${c.url}|${c.eventTimeMs}|${c.event || "view"}|${JSON.stringify(Object.fromEntries(Object.entries(c.properties).map(([k, v]) => [k, v.kind.value])))}`,
      )
      .sort();
    expect(got).toEqual(want);
    expect(rows.filter((r) => r.dt !== r.event_dt || r.hour !== r.event_hour)).toEqual([]);

    // Pages and engagement: each once.
    const content = await archived(dir, "content", "SELECT event_id, url, title, length(text) AS chars FROM t");
    expect(content.map((r) => `${r.event_id}|${r.url}|${r.title}|${r.chars}`).sort()).toEqual(
      pages.map((p, i) => `page-${i}|${p.url}|${p.title}|${[...p.text].length}`).sort(),
    );
    const likes = await archived(dir, "engagement", "SELECT kind, count(*) AS n, count(DISTINCT event_id) AS ids FROM t GROUP BY kind ORDER BY kind");
    expect(likes).toEqual([
      { kind: "interest", n: "60", ids: "60" },
      { kind: "like", n: "213", ids: "213" },
      { kind: "unlike", n: "27", ids: "27" },
    ]);
  });
});

describe("the archive with its default limits", () => {
  let stack: TestStack;
  const dir = mkdtempSync(join(tmpdir(), "recsys-archive-"));
  beforeAll(async () => {
    stack = await startStack("archivedefaults", { ARCHIVE_DIR: dir }, { services: ["archive"] });
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("closes a file within a minute of the traffic stopping, and a late click goes to its own hour", async () => {
    const now = Date.now();
    const hourAgo = now - 3_600_000;
    const sent = [now, now - 1_000, hourAgo].map((t, i) =>
      create(ClickSchema, { eventId: `d-${i}`, userid: "u1", url: `https://e.org/${i}`, eventTimeMs: BigInt(t), ingestTimeMs: BigInt(now) }),
    );
    const start = Date.now();
    await publishClicks(stack, sent, "defaults", 1);
    const progress = await waitArchived(stack, 60_000);
    expect(Date.now() - start).toBeLessThan(60_000);
    expect(progress.clicks!.rows).toBe(3n);
    const hourOf = (t: number) => `dt=${new Date(t).toISOString().slice(0, 10)}/hour=${new Date(t).toISOString().slice(11, 13)}`;
    for (const t of [now, hourAgo]) expect(existsSync(join(dir, "clicks", hourOf(t))), hourOf(t)).toBe(true);
    const rows = await archived(dir, "clicks", "SELECT event_id, dt || '/' || hour AS part FROM t ORDER BY event_id");
    expect(rows).toEqual([
      { event_id: "d-0", part: hourOf(now).replace("dt=", "").replace("hour=", "") },
      {
        event_id: "d-1",
        part: hourOf(now - 1_000)
          .replace("dt=", "")
          .replace("hour=", ""),
      },
      { event_id: "d-2", part: hourOf(hourAgo).replace("dt=", "").replace("hour=", "") },
    ]);
  });

  it("refuses a CLICKS stream created anew since it began: its sequences are another stream's", async () => {
    await stack.kill("archive");
    const nc = await connect({ servers: natsOf(stack) });
    try {
      await (await jetstreamManager(nc)).streams.delete(new Topology(stack.namespace).clicksStream);
    } finally {
      await nc.close();
    }
    const archive = stack.spawn("archive");
    let log = "";
    archive.stderr!.on("data", (d: Buffer) => (log += d.toString()));
    archive.stdout!.on("data", (d: Buffer) => (log += d.toString()));
    const [code] = await once(archive, "exit");
    expect(code).toBe(1);
    expect(log).toMatch(/_CLICKS was created at .*, not at .*: its sequences are another stream's/);
  });
});
