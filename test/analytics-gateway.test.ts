import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "./harness/clients.js";
import { clicksLastSequence } from "./harness/oracle.js";
import { startStack, type TestStack } from "./harness/stack.js";

// The whole stack with analytics: typed clicks sent through the gateway come back, windowed, from
// the gateway's ClickMetrics, EventMix and Trending, and fill Recommendation's fallback.

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;

const SLIDE_MS = 10_000;
const SIZE_MS = 300_000;
// Two minutes ago, on a slide boundary, so that the clicks' windows are known.
const T0 = Math.floor((Date.now() - 120_000) / SLIDE_MS) * SLIDE_MS;
const at = (seconds: number) => new Date(T0 + seconds * 1_000).toISOString();
const A = "https://e.org/agw/a";
const B = "https://e.org/agw/b";
const HOT = "https://e.org/agw/hot";

beforeAll(async () => {
  stack = await startStack("agw", { IDLE_EMIT_MS: "2000" }, { services: ["ingest", "covisit", "embedder", "profile", "analytics", "gateway"] });
  c = clientsOf(stack);
  const click = (userid: string, url: string, seconds: number, event?: string) =>
    c.gateway.clickstream({ event: { userid, url, eventTime: at(seconds), event } });
  await click("u1", A, 0);
  await click("u1", B, 1, "add_to_cart");
  await click("u1", B, 2, "add_to_cart");
  for (let u = 0; u < 5; u++) await click(`fan${u}`, HOT, 3 + u, "view");
  // Every click applied and every window holding them emitted (the stream idle for 2 s).
  const last = await clicksLastSequence(stack);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const p = await c.analytics.progress({});
    if (p.ackFloorStreamSequence >= last && p.emittedBefore !== "" && Date.parse(p.emittedBefore) > Date.parse(p.watermark)) break;
    if (Date.now() > deadline)
      throw new Error(
        `analytics has not emitted every window: ${JSON.stringify({ ...p, $typeName: undefined }, (_, v) => (typeof v === "bigint" ? String(v) : v))}`,
      );
    await sleep(250);
  }
}, 120_000);
afterAll(async () => stack?.stop());

describe("analytics through the gateway", () => {
  it("ClickMetrics gives a user's windows with the reference's columns: every window holding the click, its count", async () => {
    const rows = (await c.gateway.clickMetrics({ userid: "u1", event: "add_to_cart", limit: 1000 })).rows;
    // The two add_to_cart clicks at +1 s and +2 s share all 30 windows of the pane at T0.
    expect(rows).toHaveLength(SIZE_MS / SLIDE_MS);
    expect(new Set(rows.map((r) => `${r.url} ${r.eventCount}`))).toEqual(new Set([`${B} 2`]));
    expect(rows[0]!.windowStart).toBe(new Date(T0 - SIZE_MS + SLIDE_MS).toISOString());
    expect(rows.at(-1)!.windowStart).toBe(new Date(T0).toISOString());
    for (const r of rows) expect(Date.parse(r.windowEnd) - Date.parse(r.windowStart)).toBe(SIZE_MS);
  });

  it("EventMix counts the clicks of a window by type, and Trending ranks the urls", async () => {
    const mix = await c.gateway.eventMix({ from: new Date(T0).toISOString(), to: new Date(T0 + SIZE_MS).toISOString() });
    expect(mix.events.map((e) => [e.event, Number(e.clicks)])).toEqual([
      ["view", 6],
      ["add_to_cart", 2],
    ]);
    const trending = await c.gateway.trending({ window: "1h" });
    expect(trending.urls.map((u) => [u.url, Number(u.clicks)])).toEqual([
      [HOT, 5],
      [B, 2],
      [A, 1],
    ]);
  });

  it("Recommendation's fallback fills a page without enough co-visits from Trending", async () => {
    const res = await c.gateway.recommendation({ url: A, limit: 3, fallback: true });
    expect(res.items.map((i) => [i.recommendation, Number(i.frequency), i.source])).toEqual([
      [B, 2, "covisit"],
      [HOT, 5, "trending"],
    ]);
    expect((await c.gateway.recommendation({ url: A, limit: 3 })).items.map((i) => [i.recommendation, i.source])).toEqual([[B, ""]]);
  });
});
