import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Topology } from "@recsys/bus";
import { applyArchivedHead, ArchiveGapError } from "@recsys/lake/lake";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareRows, oracleRows, publishClicks, rowKey, streamRows, typedReferenceClicks, waitAllEmitted } from "./harness/analytics.js";
import { clientsOf } from "./harness/clients.js";
import { readClicks } from "./harness/reference.js";
import { dropClicksHead, rebuildWithArchive } from "./harness/rebuild.js";
import { natsOf, referenceClicks, startStack, type TestStack } from "./harness/stack.js";

// analytics and the archive, with the reference clicks published straight to CLICKS: after the stream's retention dropped its
// first half and analytics lost its PostgreSQL state, `analytics:rebuild` takes that half from the archive.

const clicks = typedReferenceClicks(readClicks(referenceClicks));

describe("analytics rebuilt from the archive and the stream", () => {
  let stack: TestStack;
  let oracle: string[];
  const dir = mkdtempSync(join(tmpdir(), "recsys-anrebuild-"));
  beforeAll(async () => {
    oracle = await oracleRows(clicks);
    // Windows emitted 2 s after the last click rather than 10, so that the replays end sooner.
    stack = await startStack("anrebuild", { ARCHIVE_DIR: dir, IDLE_EMIT_MS: "2000" }, { services: ["analytics", "archive"] });
  });
  afterAll(async () => {
    await stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("emits every window once with the oracle's count, and answers them again, after CLICKS dropped its first half", async () => {
    await publishClicks(
      stack,
      clicks.map((c) => c.raw),
      "anrebuild",
    );
    await waitAllEmitted(stack);
    const last = BigInt(Math.ceil(clicks.length / 100));
    await expect
      .poll(async () => (await clientsOf(stack).archive.progress({})).tables.find((t) => t.table === "clicks")!.archivedThrough, {
        timeout: 90_000,
        interval: 500,
      })
      .toBe(last);

    const firstKept = await dropClicksHead(stack);
    await stack.kill("analytics");
    rebuildWithArchive(stack, "analytics", dir, firstKept);
    await stack.start("analytics");
    const p = await waitAllEmitted(stack);
    // The archived half applied by the rebuild, the rest by analytics from the stream.
    expect({ applied: p.appliedClicks, late: p.lateClicks }).toEqual({ applied: BigInt(clicks.length), late: 0n });

    // The stream: every window once, as before the loss.
    const got = await streamRows(stack);
    expect(compareRows(got.rows, oracle)).toEqual({ missing: 0, extra: 0, repeated: 0, examples: [] });
    // The store: a busy user's windows of the first 20 minutes (the archived half) as the oracle has them.
    const perUser = new Map<string, number>();
    for (const k of clicks) perUser.set(k.userid, (perUser.get(k.userid) ?? 0) + 1);
    const busiest = [...perUser].sort((a, b) => b[1] - a[1])[0]![0];
    const [from, to] = [Date.parse("2024-01-02T00:00:00Z"), Date.parse("2024-01-02T00:20:00Z")];
    const res = await clientsOf(stack).analytics.clickMetrics({
      userid: busiest,
      from: new Date(from).toISOString(),
      to: new Date(to).toISOString(),
      limit: 1000,
    });
    const want = oracle.filter((r) => {
      const [start, user] = r.split("|");
      return user === busiest && Number(start) >= from && Number(start) < to;
    });
    expect(want.length).toBeGreaterThan(0);
    expect(want.length).toBeLessThan(1000);
    expect(res.rows.map((r) => rowKey(Date.parse(r.windowStart), r.userid, r.event, r.url, Number(r.eventCount))).sort()).toEqual(want.sort());
  });

  // Both rebuilds (covisit's and analytics') take the archive step from applyArchivedHead. A rebuild reads the archive for as long as
  // it takes, while the stream's retention goes on dropping its oldest messages: those must come from the archive too, not from
  // nowhere; and the durables must not start at the stream's oldest messages, which go on expiring until the service pulls them.
  it("applies from the archive what ages out of CLICKS while a rebuild runs, and starts the durables after all the archive holds", async () => {
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const jsm = await jetstreamManager(nc);
      const topology = new Topology(stack.namespace);
      const stream = topology.clicksStream;
      const { first_seq: first, last_seq: last } = (await jsm.streams.info(stream)).state;
      expect(first).toBeGreaterThan(1);
      expect(first + 40).toBeLessThan(last);

      // 20 messages age out while the first pass reads the archive, 20 more just after the durables are made.
      const applied: number[] = [];
      const startedAt: number[] = [];
      let undone = 0;
      const beforeSeq = await applyArchivedHead({
        bus: { jsm, topology },
        dir,
        apply: async (messages) => {
          if (applied.length === 0) await jsm.streams.purge(stream, { seq: first + 20 });
          applied.push(...messages.map((m) => m.seq));
        },
        startAt: async (seq) => {
          startedAt.push(seq);
          await jsm.streams.purge(stream, { seq: first + 40 });
          return async () => void undone++;
        },
      });
      // The archive holds every message (through `last`): the durables start after it, at nothing that can expire before the
      // service starts.
      expect({ beforeSeq, startedAt, undone }).toEqual({ beforeSeq: last + 1, startedAt: [last + 1], undone: 0 });
      // Every message before, once, in stream order.
      expect(applied).toEqual(Array.from({ length: last }, (_, i) => i + 1));

      // A message that ages out after the durables were made, before the archive held it: the durables go again, and the rebuild
      // says what is missing.
      await stack.kill("archive");
      await publishClicks(stack, [clicks[0]!.raw], "anrebuild-late");
      const { last_seq: late } = (await jsm.streams.info(stream)).state;
      const refused = applyArchivedHead({
        bus: { jsm, topology },
        dir,
        apply: async () => {},
        startAt: async () => {
          await jsm.streams.purge(stream, { seq: late + 1 });
          return async () => void undone++;
        },
      });
      await expect(refused).rejects.toThrow(ArchiveGapError);
      await expect(refused).rejects.toThrow(`begins at sequence ${late + 1} and the archive in ${dir} holds it only through sequence ${late - 1}`);
      expect(undone).toBe(1);
    } finally {
      await nc.close();
    }
  });
});
