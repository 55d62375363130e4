import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { encodeClickBatch, encodeUserDeleted, readClicks as readClicksMessage, Topology, urlKey } from "@recsys/bus";
import { ClickSchema, PageVisibilitySchema } from "@recsys/contracts/events/v1/events";
import { archivedClickMessages, query } from "@recsys/lake/lake";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { oracleRows, rowKey, waitAllEmitted, type TypedClick } from "./harness/analytics.js";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence } from "./harness/oracle.js";
import { dropClicksHead, rebuildWithArchive } from "./harness/rebuild.js";
import { natsOf, startStack, type TestStack } from "./harness/stack.js";

// A user's erasure (UserDeleted on CLICKS, in the user's partition) through analytics and the archive, and hidden urls
// (VISIBILITY) in Trending: analytics forgets the user's rows and counts their next clicks as a new user's; the archive keeps the
// erasure in its own table at its sequence; after CLICKS dropped its first half (the erasure with it) and analytics lost its
// state, the rebuild replays the erasure from the archive in its place and answers as before.

const T0 = Date.parse("2024-01-02T00:00:00Z");
const USERS = ["ann", "bob", "cid"];
const URLS = ["https://e.org/0", "https://e.org/1", "https://e.org/2", "https://e.org/3", "https://e.org/4"];

/** 20 click messages of 5 clicks each, 2 s apart, and the erasure of ann after the 5th: ann's first clicks are forgotten. */
function workload() {
  const messages: Array<{ partition: number; data: Uint8Array; headers: ReturnType<typeof encodeUserDeleted>["headers"] } | "erasure"> = [];
  const clicks: Array<TypedClick & { before: boolean }> = [];
  let n = 0;
  for (let k = 0; k < 20; k++) {
    if (k === 5) messages.push("erasure");
    const batch = Array.from({ length: 5 }, () => {
      const c = { eventId: `ev-${n}`, userid: USERS[n % 3]!, url: URLS[(n % 7) % 5]!, eventTimeMs: T0 + n * 2_000, event: "view" };
      n++;
      clicks.push({ ...c, before: k < 5 });
      return create(ClickSchema, { eventId: c.eventId, userid: c.userid, url: c.url, eventTimeMs: BigInt(c.eventTimeMs), ingestTimeMs: BigInt(c.eventTimeMs) });
    });
    messages.push({ partition: k % 8, ...encodeClickBatch(batch) });
  }
  return { messages, clicks };
}

describe("erasures and hidden urls in analytics and the archive", () => {
  let stack: TestStack;
  const dir = mkdtempSync(join(tmpdir(), "recsys-anerasure-"));
  const { messages, clicks } = workload();
  const erasureSeq = messages.indexOf("erasure") + 1;
  // What analytics must answer: ann's clicks after the erasure alone, everyone else's all.
  const kept = clicks.filter((c) => !(c.userid === "ann" && c.before));
  let oracle: string[];

  const metrics = async (userid: string) =>
    (await clientsOf(stack).analytics.clickMetrics({ userid, limit: 1000 })).rows.map((r) =>
      rowKey(Date.parse(r.windowStart), r.userid, r.event, r.url, Number(r.eventCount)),
    );
  const trending = async (limit: number) => (await clientsOf(stack).analytics.trending({ window: "24h", limit })).urls.map((u) => u.url);

  beforeAll(async () => {
    oracle = await oracleRows(kept);
    stack = await startStack("anerasure", { ARCHIVE_DIR: dir, ARCHIVE_MAX_AGE_MS: "1000", IDLE_EMIT_MS: "2000" }, { services: ["analytics", "archive"] });
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const js = jetstream(nc);
      const t = new Topology(stack.namespace);
      for (const [k, m] of messages.entries()) {
        if (m === "erasure") {
          const e = encodeUserDeleted({ eventId: "erase-ann", userid: "ann", ingestTimeMs: T0 + 11_000 });
          await js.publish(t.clicksSubject(3), e.data, { headers: e.headers, msgID: `anerasure-${k}` });
        } else await js.publish(t.clicksSubject(m.partition), m.data, { headers: m.headers, msgID: `anerasure-${k}` });
      }
    } finally {
      await nc.close();
    }
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("forgets the erased user's rows and counts their next clicks as a new user's; acks the erasure, dead-letters nothing", async () => {
    const p = await waitAllEmitted(stack);
    expect({ applied: p.appliedClicks, late: p.lateClicks }).toEqual({ applied: BigInt(clicks.length), late: 0n });
    for (const user of USERS) expect((await metrics(user)).sort(), user).toEqual(oracle.filter((r) => r.split("|")[1] === user).sort());
    const nc = await connect({ servers: natsOf(stack) });
    try {
      expect((await (await jetstreamManager(nc)).streams.info(new Topology(stack.namespace).deadLetterStream)).state.messages).toBe(0);
    } finally {
      await nc.close();
    }
  });

  it("hides urls from Trending (the next ones take their places) through VISIBILITY, and shows them again", async () => {
    const all = await trending(10);
    expect(all).toHaveLength(URLS.length);
    const publishVisibility = async (url: string, hidden: boolean) => {
      const nc = await connect({ servers: natsOf(stack) });
      try {
        const t = new Topology(stack.namespace);
        await jetstream(nc).publish(
          t.visibilitySubject(urlKey(url)),
          toBinary(PageVisibilitySchema, create(PageVisibilitySchema, { eventId: `${url}-${hidden}`, url, hidden })),
        );
      } finally {
        await nc.close();
      }
    };
    await publishVisibility(all[0]!, true);
    await expect.poll(() => trending(3), { timeout: 30_000 }).toEqual(all.slice(1, 4));
    await publishVisibility(all[0]!, false);
    await expect.poll(() => trending(3), { timeout: 30_000 }).toEqual(all.slice(0, 3));
    await publishVisibility(all[1]!, true);
    await expect.poll(() => trending(3), { timeout: 30_000 }).toEqual([all[0], all[2], all[3]]);
  });

  it("archives the erasure in its own table at its sequence, counted as held, and the lake yields it in its place", async () => {
    const last = await clicksLastSequence(stack);
    expect(last).toBe(BigInt(messages.length));
    let tables: Awaited<ReturnType<ReturnType<typeof clientsOf>["archive"]["progress"]>>["tables"] = [];
    await expect
      .poll(
        async () => {
          tables = (await clientsOf(stack).archive.progress({})).tables;
          return tables.filter((t) => t.table === "clicks" || t.table === "erasures").map((t) => [t.table, t.archivedThrough, t.bufferedRows]);
        },
        { timeout: 90_000, interval: 500 },
      )
      .toEqual([
        ["clicks", last, 0n],
        ["erasures", last, 0n],
      ]);
    const byTable = Object.fromEntries(tables.map((t) => [t.table, t]));
    expect(byTable.clicks).toMatchObject({ rows: BigInt(clicks.length), lostMessages: 0n, undecodableMessages: 0n });
    expect(byTable.erasures).toMatchObject({ rows: 1n, lostMessages: 0n, undecodableMessages: 0n });
    expect((await query(dir, "SELECT stream_seq, event_id, userid, epoch_ms(ingest_time) AS t, dt, hour FROM erasures")).rows).toEqual([
      { stream_seq: String(erasureSeq), event_id: "erase-ann", userid: "ann", t: String(T0 + 11_000), dt: "2024-01-02", hour: "00" },
    ]);
    const replayed: string[] = [];
    for await (const batch of archivedClickMessages(dir, 1, messages.length + 1)) {
      for (const m of batch) {
        const r = readClicksMessage(m);
        replayed.push(`${m.seq}:${"error" in r ? "error" : r.deletion ? `erase ${r.deletion.userid}` : r.clicks.length}`);
      }
    }
    expect(replayed).toEqual(messages.map((m, k) => `${k + 1}:${m === "erasure" ? "erase ann" : 5}`));
  });

  it("replays the erasure from the archive in its place when rebuilt after CLICKS dropped it, and answers as before", async () => {
    const firstKept = await dropClicksHead(stack);
    expect(firstKept).toBeGreaterThan(erasureSeq);
    await stack.kill("analytics");
    rebuildWithArchive(stack, "analytics", dir, firstKept);
    await stack.start("analytics");
    await waitAllEmitted(stack);
    for (const user of USERS) expect((await metrics(user)).sort(), user).toEqual(oracle.filter((r) => r.split("|")[1] === user).sort());
    // The hidden url is hidden again: the rebuild's VISIBILITY durable read the compacted stream anew.
    const all = await trending(10);
    expect(all).toHaveLength(URLS.length - 1);
  });
});
