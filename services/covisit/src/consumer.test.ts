import { create, toBinary } from "@bufbuild/protobuf";
import { encodeClickBatch } from "@recsys/bus";
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

const message = (clicks: Array<[id: string, userid: string, url: string, minute: number]>) =>
  encodeClickBatch(clicks.map(([eventId, userid, url, minute]) => create(ClickSchema, { eventId, userid, url, eventTimeMs: BigInt(T0 + minute * MINUTE) })));

it("applies batches in the order they were taken, even when the first needs several scripts: no click made late by a later one", async () => {
  // The first batch is four scripts of one click; the second, started before the first is done,
  // holds the user's click 20 minutes on. Had it reached Redis between two of the first batch's
  // scripts, the rest of the first batch would be 20 minutes behind the user's newest click: late.
  const first = applyClickMessages([message([["a", "u", "https://e.org/1", 0], ["b", "u", "https://e.org/2", 1], ["c", "u", "https://e.org/3", 2], ["d", "u", "https://e.org/4", 3]])], store, 1);
  const second = applyClickMessages([message([["e", "u", "https://e.org/5", 20]])], store, 1);
  const [a, b] = await Promise.all([first, second]);
  const statuses = [a, b].flatMap((batch) => batch.flatMap((m) => ("error" in m ? ["unreadable"] : m.verdicts.map((v) => v.status))));
  expect(statuses).toEqual(["applied", "applied", "applied", "applied", "applied"]);
  expect((await store.coVisitsAfter("https://e.org/1", 10)).map((c) => c.recommendation)).toEqual(["https://e.org/2", "https://e.org/3", "https://e.org/4"]);
});

it("reads a lone Click as well as a ClickBatch, and sets aside a message that does not decode and a click that lacks a field", async () => {
  const lone = { data: toBinary(ClickSchema, create(ClickSchema, { eventId: "x", userid: "v", url: "https://e.org/x", eventTimeMs: BigInt(T0 + 2 * MINUTE) })) };
  const verdicts = await applyClickMessages([{ data: Uint8Array.of(0xff, 0xff, 0xff, 0x07) }, message([["p", "v", "https://e.org/p", 0], ["", "v", "https://e.org/q", 1]]), lone], store);
  expect(verdicts[0]).toMatchObject({ error: expect.any(String) });
  expect(verdicts[1]).toMatchObject({ verdicts: [{ status: "applied", pairs: 0 }, { status: "undecodable", error: "missing event_id, userid or url" }] });
  expect(verdicts[2]).toMatchObject({ verdicts: [{ status: "applied", pairs: 1 }] });
  expect(await store.coVisitsAfter("https://e.org/p", 10)).toEqual([{ recommendation: "https://e.org/x", frequency: 1 }]);
});
