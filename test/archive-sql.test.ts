import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { query } from "@recsys/lake/lake";
import { replay } from "@recsys/loadgen/replay";
import { REFERENCE_COVISIT_SQL } from "@recsys/loadgen/reference-sql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence, expectCovisitEquals, loseRedisData } from "./harness/oracle.js";
import { readClicks, referenceCoVisits } from "./harness/reference.js";
import { replayOptions } from "./harness/replay.js";
import { dropClicksHead, rebuildWithArchive } from "./harness/rebuild.js";
import { referenceClicks, startStack, type TestStack } from "./harness/stack.js";

// The reference clicks through ingest, covisit and the archive, and each sent again: the reference co-visit SQL, run by
// DuckDB over the archive's Parquet files (pnpm lake:sql), gives every url's Recommendation; and
// covisit's rebuild takes from the archive what CLICKS no longer holds.

const urls = [...new Set(readClicks(referenceClicks).map((c) => c.url))];

describe("SQL over the archive", () => {
  let stack: TestStack;
  const dir = mkdtempSync(join(tmpdir(), "recsys-lake-"));
  beforeAll(async () => {
    stack = await startStack("lake", { ARCHIVE_DIR: dir }, { services: ["ingest", "covisit", "archive"] });
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("the reference co-visit SQL over the archive equals covisit's Recommendation for every url", async () => {
    const summary = await replay(replayOptions(stack, referenceClicks));
    expect(summary).toMatchObject({ sent: 19_855, accepted: 19_855, late: 0 });
    // Every click sent again, in calls of another size: ingest groups a call's clicks into messages by user partition, so these
    // are other messages, which the broker's duplicate window does not catch (but those of a single click). The consumers count
    // each click once; so must the lake.
    expect(await replay({ ...replayOptions(stack, referenceClicks), batchSize: 333 })).toMatchObject({ sent: 19_855, accepted: 19_855, late: 0 });
    await expect
      .poll(
        async () => {
          const clicks = (await clientsOf(stack).archive.progress({})).tables.find((t) => t.table === "clicks")!;
          return clicks.lastSequence > 0n && clicks.archivedThrough === clicks.lastSequence;
        },
        { timeout: 90_000, interval: 500 },
      )
      .toBe(true);

    // The reference SQL as it is, over the archive's clicks with its table's columns (userid, url, t); DuckDB compares text
    // bytewise already, so the collation goes.
    const sql = `WITH ref AS (SELECT userid, url, event_time AS t FROM clicks) ${REFERENCE_COVISIT_SQL.replace("FROM clicks b JOIN clicks a", "FROM ref b JOIN ref a").replace(' COLLATE "C"', "")}`;
    expect(sql).toContain("FROM ref b JOIN ref a");
    expect((await query(dir, "SELECT count(*)::INT AS n FROM raw_clicks")).rows[0]!.n).toBeGreaterThan(39_000);
    expect((await query(dir, "SELECT count(*)::INT AS n FROM clicks")).rows[0]!.n).toBe(19_855);
    const { rows } = await query(dir, sql);
    const fromArchive = new Map<string, Array<{ recommendation: string; frequency: number }>>();
    for (const r of rows) {
      const url = String(r.url);
      // Recommendation never lists the page itself.
      if (String(r.recommendation) === url) continue;
      let list = fromArchive.get(url);
      if (!list) fromArchive.set(url, (list = []));
      list.push({ recommendation: String(r.recommendation), frequency: Number(r.frequency) });
    }
    await expectCovisitEquals(stack, urls, fromArchive);
    expect(rows.reduce((n, r) => n + Number(r.frequency), 0)).toBe(143_325);
  });

  it("rebuilds every count from the archive and the stream after CLICKS dropped its first half and Redis lost its data", async () => {
    const firstKept = await dropClicksHead(stack);
    await stack.kill("covisit");
    await loseRedisData(stack);
    rebuildWithArchive(stack, "covisit", dir, firstKept);
    await stack.start("covisit");
    const last = await clicksLastSequence(stack);
    await expect
      .poll(async () => (await clientsOf(stack).covisit.progress({})).ackFloorStreamSequence, { timeout: 120_000, interval: 200 })
      .toBeGreaterThanOrEqual(last);
    // The reference SQL in PostgreSQL over the reference file: the independent oracle.
    await expectCovisitEquals(stack, urls, await referenceCoVisits(readClicks(referenceClicks)));
  });
});
