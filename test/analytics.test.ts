import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { Topology } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { compareRows, oracleRows, publishClicks, rowKey, streamRows, typedReferenceClicks, waitAllEmitted, type TypedClick } from "./harness/analytics.js";
import { clientsOf } from "./harness/clients.js";
import { readClicks } from "./harness/reference.js";
import { natsOf, referenceClicks, startStack, type TestStack } from "./harness/stack.js";

// analytics alone (it needs only NATS and PostgreSQL), with clicks published straight to CLICKS as
// ingest would. Idle emission after 2 s instead of 10 so that the replays end sooner; a short ack
// wait so that the message a crash leaves unacked comes back within seconds.
const ENV = { IDLE_EMIT_MS: "2000", BUS_ACK_WAIT_MS: "2000" };
const SIZE_MS = 300_000;
const SLIDE_MS = 10_000;
const LATENESS_MS = 300_000;

let clicks: ReturnType<typeof typedReferenceClicks>;
let oracle: string[];

beforeAll(async () => {
  clicks = typedReferenceClicks(readClicks(referenceClicks));
  oracle = await oracleRows(clicks);
});

const analytics = (stack: TestStack) => clientsOf(stack).analytics;

/** CLICK_METRICS forgets the message ids it has seen: its duplicate window shortened to 1 s for 2 s, then set back. */
async function forgetMessageIds(stack: TestStack) {
  const nc = await connect({ servers: natsOf(stack) });
  try {
    const jsm = await jetstreamManager(nc);
    const name = `${stack.namespace.toUpperCase()}_CLICK_METRICS`;
    const { config } = await jsm.streams.info(name);
    await jsm.streams.update(name, { ...config, duplicate_window: 1_000_000_000 });
    await sleep(2_000);
    await jsm.streams.update(name, { ...config });
  } finally {
    await nc.close();
  }
}

/** The rows a consumer of CLICK_METRICS read are exactly the oracle's, each once. */
async function expectStreamEqualsOracle(stack: TestStack) {
  const got = await streamRows(stack, SIZE_MS);
  expect(got.badEnds).toBe(0);
  expect(compareRows(got.rows, oracle)).toEqual({ missing: 0, extra: 0, repeated: 0, examples: [] });
  return got;
}

/**
 * The most pane rows a replay of `cs` may need: the distinct (pane, key) within the lateness plus a window and a slide behind any
 * click, and one message's clicks (100) applied before emission catches up with them.
 */
function paneBound(cs: TypedClick[]): number {
  const horizon = LATENESS_MS + SIZE_MS + SLIDE_MS;
  const sorted = [...cs].sort((a, b) => a.eventTimeMs - b.eventTimeMs);
  let most = 0;
  let lo = 0;
  const keys = new Map<string, number>();
  for (const c of sorted) {
    const k = `${Math.floor(c.eventTimeMs / SLIDE_MS)}|${c.userid}|${c.event}|${c.url}`;
    keys.set(k, (keys.get(k) ?? 0) + 1);
    while (sorted[lo]!.eventTimeMs < c.eventTimeMs - horizon) {
      const old = sorted[lo++]!;
      const ko = `${Math.floor(old.eventTimeMs / SLIDE_MS)}|${old.userid}|${old.event}|${old.url}`;
      const n = keys.get(ko)! - 1;
      if (n === 0) keys.delete(ko);
      else keys.set(ko, n);
    }
    most = Math.max(most, keys.size);
  }
  return most + 100;
}

describe("the reference replay, in order, with duplicates", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack("analytics", ENV, { services: ["analytics"] });
  });
  afterAll(async () => stack?.stop());

  it("the oracle sees the reference clicks as 594,216 rows or more", () => {
    expect(clicks).toHaveLength(19_855);
    expect(new Set(clicks.map((c) => c.event))).toEqual(new Set(["view", "click", "add_to_cart", "purchase", "share"]));
    expect(oracle.length).toBeGreaterThanOrEqual(594_216);
  });

  it("emits exactly the oracle's rows, each once, with every 10th message sent twice, and holds no pane after", async () => {
    const raw = clicks.map((c) => c.raw);
    await publishClicks(stack, raw, "first");
    // The same clicks again under other message ids (the broker cannot drop them): a client's retry after the broker forgot.
    const again = raw.filter((_, i) => Math.floor(i / 100) % 10 === 0);
    await publishClicks(stack, again, "again");
    let mostPanes = 0n;
    const watch = setInterval(() => {
      void analytics(stack)
        .progress({})
        .then(
          (p) => {
            if (p.paneRows > mostPanes) mostPanes = p.paneRows;
          },
          () => undefined,
        );
    }, 100);
    const p = await waitAllEmitted(stack).finally(() => clearInterval(watch));
    expect({ applied: p.appliedClicks, duplicates: p.duplicateClicks, late: p.lateClicks }).toEqual({
      applied: 19_855n,
      duplicates: BigInt(again.length),
      late: 0n,
    });
    expect(p.rows).toBe(BigInt(oracle.length));
    await expectStreamEqualsOracle(stack);
    // State is bounded by what the lateness and one window hold, not by the stream: none once everything is emitted.
    expect(Number(mostPanes)).toBeLessThanOrEqual(paneBound(clicks));
    expect(p.paneRows).toBe(0n);
  });

  it("changes no count when the whole replay comes again", async () => {
    const before = await analytics(stack).progress({});
    await publishClicks(
      stack,
      clicks.map((c) => c.raw),
      "replayed",
    );
    const p = await waitAllEmitted(stack);
    expect(p.duplicateClicks - before.duplicateClicks).toBe(19_855n);
    expect({ rows: p.rows, late: p.lateClicks, applied: p.appliedClicks }).toEqual({ rows: before.rows, late: 0n, applied: 19_855n });
    await expectStreamEqualsOracle(stack);
  });

  it("dead-letters a click whose every window was emitted, with cause late, and changes no row", async () => {
    const before = await analytics(stack).progress({});
    const first = clicks[0]!;
    const late = create(ClickSchema, { eventId: "late-1", userid: first.userid, url: first.url, eventTimeMs: BigInt(first.eventTimeMs), event: "view" });
    await publishClicks(stack, [late], "late");
    const p = await waitAllEmitted(stack);
    expect({ late: p.lateClicks, rows: p.rows, applied: p.appliedClicks }).toEqual({ late: 1n, rows: before.rows, applied: before.appliedClicks });
    const nc = await connect({ servers: natsOf(stack) });
    try {
      const jsm = await jetstreamManager(nc);
      // analytics' only letter, filed under its user.
      const letters = await jsm.streams.info(`${stack.namespace.toUpperCase()}_DEAD_LETTERS`, { subjects_filter: `${stack.namespace}.dlq.analytics-clicks.>` });
      const subject = new Topology(stack.namespace).deadLetterSubject("analytics-clicks", { userid: first.userid });
      expect(letters.state.subjects).toEqual({ [subject]: 1 });
      const letter = await jsm.streams.getMessage(`${stack.namespace.toUpperCase()}_DEAD_LETTERS`, { last_by_subj: subject });
      expect(letter.header.get("recsys-cause")).toBe("late");
      expect(letter.header.get("recsys-reason")).toMatch(/every window holding its event time 2024-01-02T00:00:00.000Z was emitted/);
    } finally {
      await nc.close();
    }
    // And in the metrics: the late click, and every row emitted once (this process never restarted).
    const metrics = await (await fetch(`${stack.url.analytics}/metrics`)).text();
    expect(metrics).toMatch(/^recsys_analytics_clicks_total\{outcome="late"[^}]*\} 1$/m);
    expect(metrics).toMatch(new RegExp(`^recsys_analytics_emitted_rows_total\\{[^}]*\\} ${oracle.length}$`, "m"));
    expect(metrics).toMatch(/^recsys_analytics_emission_lag_seconds_count\{[^}]*\} [1-9]/m);
  });

  it("answers ClickMetrics, EventMix and Trending as the clicks say", async () => {
    const c = analytics(stack);
    // A busy user's rows of ten minutes of windows, as the oracle has them.
    const perUser = new Map<string, number>();
    for (const k of clicks) perUser.set(k.userid, (perUser.get(k.userid) ?? 0) + 1);
    const busiest = [...perUser].sort((a, b) => b[1] - a[1])[0]![0];
    const from = Date.parse("2024-01-02T00:10:00Z");
    const to = Date.parse("2024-01-02T00:20:00Z");
    const res = await c.clickMetrics({ userid: busiest, from: new Date(from).toISOString(), to: new Date(to).toISOString(), limit: 1000 });
    const want = oracle.filter((r) => {
      const [start, user] = r.split("|");
      return user === busiest && Number(start) >= from && Number(start) < to;
    });
    expect(want.length).toBeGreaterThan(0);
    expect(res.rows.map((r) => `${Date.parse(r.windowStart)}|${r.userid}|${r.event}|${r.url}|${r.eventCount}`).sort()).toEqual(want.sort());
    expect(res.rows.every((r) => Date.parse(r.windowEnd) - Date.parse(r.windowStart) === SIZE_MS)).toBe(true);
    // Page by page with the cursors: the same rows, in the same order, each once; the last page has no cursor.
    const paged: string[] = [];
    let cursor = "";
    let pages = 0;
    do {
      const page = await c.clickMetrics({ userid: busiest, from: new Date(from).toISOString(), to: new Date(to).toISOString(), limit: 7, cursor });
      expect(page.rows.length, `page ${pages}`).toBeLessThanOrEqual(7);
      paged.push(...page.rows.map((r) => `${Date.parse(r.windowStart)}|${r.userid}|${r.event}|${r.url}|${r.eventCount}`));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== "" && pages < 1000);
    expect(paged).toEqual(res.rows.map((r) => `${Date.parse(r.windowStart)}|${r.userid}|${r.event}|${r.url}|${r.eventCount}`));
    expect(pages).toBe(Math.ceil(want.length / 7));

    // Clicks by type, each once: final for a period of emitted windows; for one reaching past the watermark, not yet.
    const mixOf = (fromMs: number, toMs: number) => {
      const byEvent = new Map<string, number>();
      for (const k of clicks) if (k.eventTimeMs >= fromMs && k.eventTimeMs < toMs) byEvent.set(k.event, (byEvent.get(k.event) ?? 0) + 1);
      return byEvent;
    };
    const early = await c.eventMix({ from: "2024-01-02T00:00:00Z", to: "2024-01-02T00:50:00Z" });
    expect(early.complete).toBe(true);
    expect(Object.fromEntries(early.events.map((e) => [e.event, Number(e.clicks)]))).toEqual(
      Object.fromEntries(mixOf(Date.parse("2024-01-02T00:00:00Z"), Date.parse("2024-01-02T00:50:00Z"))),
    );
    const all = await c.eventMix({ from: "2024-01-01T23:00:00Z", to: "2024-01-02T02:00:00Z" });
    expect(all.complete).toBe(false);
    expect(Object.fromEntries(all.events.map((e) => [e.event, Number(e.clicks)]))).toEqual(Object.fromEntries(mixOf(0, Number.MAX_SAFE_INTEGER)));

    // The hour of event time up to the end of the watermark's pane.
    const t = await c.trending({ window: "1h", limit: 50 });
    const end = Math.floor(Math.max(...clicks.map((k) => k.eventTimeMs)) / SLIDE_MS) * SLIDE_MS + SLIDE_MS;
    expect({ from: t.from, to: t.to }).toEqual({ from: new Date(end - 3_600_000).toISOString(), to: new Date(end).toISOString() });
    const byUrl = new Map<string, number>();
    for (const k of clicks) if (k.eventTimeMs >= Date.parse(t.from) && k.eventTimeMs < end) byUrl.set(k.url, (byUrl.get(k.url) ?? 0) + 1);
    const got = t.urls.map((u) => [u.url, Number(u.clicks)] as const);
    expect(got).toHaveLength(50);
    for (const [url, n] of got) expect(n, url).toBe(byUrl.get(url));
    const listed = new Set(got.map(([u]) => u));
    const bestUnlisted = Math.max(...[...byUrl].filter(([u]) => !listed.has(u)).map(([, n]) => n));
    expect(got.at(-1)![1]).toBeGreaterThanOrEqual(bestUnlisted);
    const purchases = await c.trending({ window: "24h", event: "purchase", limit: 3 });
    for (const u of purchases.urls) expect(Number(u.clicks)).toBe(clicks.filter((k) => k.url === u.url && k.event === "purchase").length);
  });

  it("answers ClickMetrics, EventMix and Trending over the reference's rows within 100 ms at p99, one call at a time", async () => {
    const c = analytics(stack);
    const users = [...new Set(clicks.map((k) => k.userid))];
    const urls = [...new Set(clicks.map((k) => k.url))];
    const events = ["view", "click", "add_to_cart", "purchase", "share"];
    const ms: Record<string, number[]> = { userid: [], url: [], event: [] };
    for (let i = 0; i < 900; i++) {
      const kind = (["userid", "url", "event"] as const)[i % 3]!;
      const from = new Date(Date.parse("2024-01-02T00:00:00Z") + (i % 50) * 60_000).toISOString();
      const req =
        kind === "userid"
          ? { userid: users[(i * 7919) % users.length] }
          : kind === "url"
            ? { url: urls[(i * 7919) % urls.length] }
            : { event: events[i % 5], from };
      const start = performance.now();
      await c.clickMetrics({ ...req, limit: 100 });
      ms[kind]!.push(performance.now() - start);
    }
    for (const [kind, call] of [
      ["eventMixHour", () => c.eventMix({ from: "2024-01-02T00:00:00Z", to: "2024-01-02T01:00:00Z" })],
      ["trending24h", () => c.trending({ window: "24h", limit: 10 })],
    ] as const) {
      ms[kind] = [];
      for (let i = 0; i < 300; i++) {
        const start = performance.now();
        await call();
        ms[kind].push(performance.now() - start);
      }
    }
    const at = (v: number[], q: number) => [...v].sort((a, b) => a - b)[Math.floor(v.length * q)]!;
    const figures = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, { p50: +at(v, 0.5).toFixed(1), p99: +at(v, 0.99).toFixed(1) }]));
    console.log("Query latency (ms) over", oracle.length, "rows:", JSON.stringify(figures));
    for (const [kind, f] of Object.entries(figures)) expect(f.p99, kind).toBeLessThan(100);
  });

  it("refuses bad arguments with InvalidArgument naming the field", async () => {
    const c = analytics(stack);
    const cases: Array<[string, () => Promise<unknown>, RegExp]> = [
      ["no filter", () => c.clickMetrics({}), /^\[invalid_argument\] userid: give a userid, a url or an event/],
      ["a date that is not RFC 3339", () => c.clickMetrics({ userid: "u", from: "yesterday" }), /from: must be an RFC 3339 date-time/],
      ["to before from", () => c.clickMetrics({ userid: "u", from: "2024-01-02T00:10:00Z", to: "2024-01-02T00:00:00Z" }), /to: must not be before from/],
      ["a limit too large", () => c.clickMetrics({ userid: "u", limit: 5000 }), /limit: must be between 1 and 1000/],
      ["a url that is not one", () => c.clickMetrics({ url: "not a url" }), /url: must not contain whitespace/],
      ["an event with a space", () => c.clickMetrics({ event: "add to cart" }), /event: must not contain whitespace/],
      ["a cursor not made by ClickMetrics", () => c.clickMetrics({ userid: "u", cursor: "eyJ4IjoxfQ" }), /cursor: is not a cursor of ClickMetrics/],
      ["EventMix from off the slide", () => c.eventMix({ from: "2024-01-02T00:00:05Z", to: "2024-01-02T00:05:05Z" }), /from: must be a window start/],
      [
        "EventMix to off the slide",
        () => c.eventMix({ from: "2024-01-02T00:00:00Z", to: "2024-01-02T00:07:05Z" }),
        /to: must be a multiple of the slide \(10 s\) after from/,
      ],
      ["EventMix over a year", () => c.eventMix({ from: "2024-01-01T00:00:00Z", to: "2025-01-01T00:00:00Z" }), /to: must be at most 31 days after from/],
      ["EventMix without from", () => c.eventMix({ to: "2024-01-02T00:05:00Z" }), /from: must not be empty/],
      ["Trending of another period", () => c.trending({ window: "2h" }), /window: must be one of 5m, 1h, 24h/],
      ["Trending of an object's own property", () => c.trending({ window: "constructor" }), /window: must be one of 5m, 1h, 24h/],
      ["Trending with a negative limit", () => c.trending({ window: "1h", limit: -1 }), /limit: must be between 1 and 1000/],
    ];
    for (const [what, call, message] of cases) {
      const err = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, what).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code, what).toBe(Code.InvalidArgument);
      expect((err as ConnectError).message, what).toMatch(message);
    }
  });

  it("counts a click after an idle emission only in the windows not emitted yet: the store answers the rows the stream has", async () => {
    const before = await analytics(stack).progress({});
    const emittedBefore = Date.parse(before.emittedBefore);
    // The newest click's key again, 5 s into the first unemitted pane: that pane's 29 earlier windows, which hold the key's
    // earlier clicks, were emitted and published without it.
    const last = clicks.reduce((a, b) => (b.eventTimeMs >= a.eventTimeMs ? b : a));
    const t = emittedBefore + 5_000;
    const click = create(ClickSchema, { eventId: "after-idle-1", userid: last.userid, url: last.url, eventTimeMs: BigInt(t), event: last.event });
    await publishClicks(stack, [click], "after-idle");
    const p = await waitAllEmitted(stack);
    expect({ applied: p.appliedClicks - before.appliedClicks, late: p.lateClicks - before.lateClicks }).toEqual({ applied: 1n, late: 0n });
    const added = rowKey(emittedBefore, last.userid, last.event, last.url, 1);
    const want = [...oracle, added];
    const got = await streamRows(stack, SIZE_MS);
    expect(compareRows(got.rows, want)).toEqual({ missing: 0, extra: 0, repeated: 0, examples: [] });
    const from = emittedBefore - SIZE_MS;
    const res = await analytics(stack).clickMetrics({ userid: last.userid, from: new Date(from).toISOString(), limit: 1000 });
    const fromStream = want.filter((r) => {
      const [start, user] = r.split("|");
      return user === last.userid && Number(start) >= from;
    });
    expect(fromStream).toContain(added);
    expect(res.rows.map((r) => rowKey(Date.parse(r.windowStart), r.userid, r.event, r.url, Number(r.eventCount))).sort()).toEqual(fromStream.sort());
  });
});

describe("the reference replay shuffled within the allowed lateness", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack("analyticsshuffled", ENV, { services: ["analytics"] });
  });
  afterAll(async () => stack?.stop());

  it("emits exactly the oracle's rows, each once, none late", async () => {
    // Each click moves by a random delay in [0, 5 min) (seeded): none is later than the lateness allows.
    let seed = 7;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const shuffled = clicks
      .map((c) => ({ c, key: c.eventTimeMs + random() * LATENESS_MS }))
      .sort((a, b) => a.key - b.key)
      .map((x) => x.c);
    let displaced = 0;
    shuffled.forEach((c, i) => {
      if (i > 0 && c.eventTimeMs < shuffled[i - 1]!.eventTimeMs) displaced++;
    });
    expect(displaced).toBeGreaterThan(1_000);
    await publishClicks(
      stack,
      shuffled.map((c) => c.raw),
      "shuffled",
    );
    const p = await waitAllEmitted(stack);
    expect({ applied: p.appliedClicks, late: p.lateClicks, panes: p.paneRows }).toEqual({ applied: 19_855n, late: 0n, panes: 0n });
    await expectStreamEqualsOracle(stack);
  });
});

describe("the reference replay with analytics killed midway", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack("analyticskilled", ENV, { services: ["analytics"] });
  });
  afterAll(async () => stack?.stop());

  it("emits every window once with the right count after a crash before an ack, one while publishing and a SIGKILL", async () => {
    await stack.kill("analytics");
    await publishClicks(
      stack,
      clicks.map((c) => c.raw),
      "killed",
    );
    // First a crash at the worst moment: the 60th message applied and its windows emitted, not acked.
    const crashing = stack.spawn("analytics", { RECSYS_CRASH_AFTER_EFFECTS: "60" });
    const [, signal] = await once(crashing, "exit");
    expect(signal).toBe("SIGKILL");
    // Then a crash after 150 messages published to CLICK_METRICS, before they are recorded as published, and a restart after the
    // broker's duplicate window: it has forgotten their ids, so only analytics itself can keep from publishing them again.
    const publishing = stack.spawn("analytics", { RECSYS_CRASH_AFTER_PUBLISHES: "150" });
    const [, publishSignal] = await once(publishing, "exit");
    expect(publishSignal).toBe("SIGKILL");
    await forgetMessageIds(stack);
    // Then kill -9 from outside while windows are being emitted and published.
    await stack.start("analytics");
    await expect.poll(async () => (await analytics(stack).progress({})).rows, { timeout: 60_000, interval: 50 }).toBeGreaterThan(200_000n);
    await stack.kill("analytics");
    await forgetMessageIds(stack);
    await stack.start("analytics");
    const p = await waitAllEmitted(stack);
    expect({ applied: p.appliedClicks, late: p.lateClicks, rows: p.rows }).toEqual({ applied: 19_855n, late: 0n, rows: BigInt(oracle.length) });
    expect(p.duplicateClicks).toBeGreaterThan(0n);
    await expectStreamEqualsOracle(stack);
  });
});
