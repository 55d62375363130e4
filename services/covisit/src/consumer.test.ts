import { create, toBinary } from "@bufbuild/protobuf";
import { encodeClickBatch, encodeUserDeleted } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { Redis } from "ioredis";
import { afterAll, beforeEach, expect, it } from "vitest";
import { applyClickMessages } from "./consumer.js";
import { CovisitStore } from "./redis-store.js";

// Against the real Redis, in a namespace of its own.
const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", { enableAutoPipelining: true });
const namespace = `unit${process.pid}consumer`;
const LATENESS = 5 * 60_000;
const store = new CovisitStore(redis, namespace, LATENESS);
const T0 = Date.parse("2024-01-02T00:00:00Z");
const MINUTE = 60_000;

async function clearNamespace() {
  const keys = await redis.keys(`${namespace}:*`);
  if (keys.length) await redis.del(...keys);
}
beforeEach(async () => {
  await clearNamespace();
  await store.markFirstClick();
});
afterAll(async () => {
  await clearNamespace();
  redis.disconnect();
});

let nextSeq = 1;
/** A CLICKS message of these clicks, at the stream's next sequence. */
const message = (clicks: Array<[id: string, userid: string, url: string, minute: number]>) => ({
  seq: nextSeq++,
  ...encodeClickBatch(clicks.map(([eventId, userid, url, minute]) => create(ClickSchema, { eventId, userid, url, eventTimeMs: BigInt(T0 + minute * MINUTE) }))),
});
/** A user's erasure on CLICKS, at the stream's next sequence, as ingest publishes it and the archive gives it back. */
const erasure = (userid: string) => ({ seq: nextSeq++, ...encodeUserDeleted({ eventId: `del-${userid}-${nextSeq}`, userid, ingestTimeMs: T0 }) });

it("runs a batch's scripts one after the other, and a failed one stops the rest: no later click of a user applied before an earlier one", async () => {
  // Four scripts of one click; Redis refuses the second (full). The third and fourth, the user's
  // later clicks, must not run: applied before the second's click comes back, they would make it late.
  const calls: string[] = [];
  const failing = {
    async applyClicks(clicks: Array<{ eventId: string }>) {
      calls.push(clicks[0]!.eventId);
      if (calls.length === 2) throw new Error("OOM command not allowed when used memory > 'maxmemory'");
      return store.applyClicks(clicks as Parameters<CovisitStore["applyClicks"]>[0]);
    },
  } as unknown as CovisitStore;
  const batch = [
    message([
      ["a", "u", "https://e.org/1", 0],
      ["b", "u", "https://e.org/2", 1],
      ["c", "u", "https://e.org/3", 2],
      ["d", "u", "https://e.org/4", 3],
    ]),
  ];
  await expect(applyClickMessages(batch, failing, 1)).rejects.toThrow(/OOM/);
  expect(calls).toEqual(["a", "b"]);
  // The retry applies the rest in order; the first click is a duplicate.
  const statuses = (await applyClickMessages(batch, store, 1)).flatMap((m) => ("error" in m ? ["unreadable"] : m.verdicts.map((v) => v.status)));
  expect(statuses).toEqual(["duplicate", "applied", "applied", "applied"]);
  expect((await store.coVisitsAfter("https://e.org/1", 10)).map((c) => c.recommendation)).toEqual(["https://e.org/2", "https://e.org/3", "https://e.org/4"]);
});

it("reads a lone Click as well as a ClickBatch, and sets aside a message that does not decode and a click that lacks a field", async () => {
  const lone = {
    seq: nextSeq++,
    data: toBinary(ClickSchema, create(ClickSchema, { eventId: "x", userid: "v", url: "https://e.org/x", eventTimeMs: BigInt(T0 + 2 * MINUTE) })),
  };
  const verdicts = await applyClickMessages(
    [
      { seq: nextSeq++, data: Uint8Array.of(0xff, 0xff, 0xff, 0x07) },
      message([
        ["p", "v", "https://e.org/p", 0],
        ["", "v", "https://e.org/q", 1],
      ]),
      lone,
    ],
    store,
  );
  expect(verdicts[0]).toMatchObject({ error: expect.any(String) });
  expect(verdicts[1]).toMatchObject({
    verdicts: [
      { status: "applied", pairs: 0 },
      { status: "undecodable", error: "missing event_id, userid or url" },
    ],
  });
  expect(verdicts[2]).toMatchObject({ verdicts: [{ status: "applied", pairs: 1 }] });
  expect(await store.coVisitsAfter("https://e.org/p", 10)).toEqual([{ recommendation: "https://e.org/x", frequency: 1 }]);
});

it("applies a UserDeleted at its place among the clicks, and a redelivery of the whole batch changes nothing", async () => {
  const [a, b, c, d] = ["a", "b", "c", "d"].map((p) => `https://e.org/${p}`) as [string, string, string, string];
  // One batch, as the consumer gets it or the rebuild reads it from the archive: the erasure splits the scripts.
  const batch = [
    message([
      ["1", "u", a, 0],
      ["2", "u", b, 1],
    ]),
    erasure("u"),
    message([
      ["3", "u", c, 2],
      ["4", "w", d, 2],
    ]),
    message([["5", "u", d, 3]]),
  ];
  const statuses = (verdicts: Awaited<ReturnType<typeof applyClickMessages>>) =>
    verdicts.map((m) => ("error" in m ? "unreadable" : [m.erasure ?? "", ...m.verdicts.map((v) => v.status)].join(" ").trim()));
  expect(statuses(await applyClickMessages(batch, store))).toEqual(["applied applied", "erased", "applied applied", "applied"]);
  // c and d pair only with each other: a and b were the erased user's.
  expect((await store.coVisitsAfter(a, 10)).map((x) => x.recommendation)).toEqual([b]);
  expect((await store.coVisitsAfter(b, 10)).map((x) => x.recommendation)).toEqual([]);
  expect((await store.coVisitsAfter(c, 10)).map((x) => x.recommendation)).toEqual([d]);
  expect((await store.recentPages("u")).sort()).toEqual([c, d]);

  // Redelivered whole (a retry after a failed ack): the erased user's clicks skipped, the erasure and the new clicks duplicates.
  expect(statuses(await applyClickMessages(batch, store, 1))).toEqual(["erased erased", "duplicate", "duplicate duplicate", "duplicate"]);
  expect((await store.coVisitsAfter(a, 10)).map((x) => x.recommendation)).toEqual([b]);
  expect((await store.coVisitsAfter(c, 10)).map((x) => x.recommendation)).toEqual([d]);
  expect((await store.recentPages("u")).sort()).toEqual([c, d]);
});
