import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectRecommendationsExact, expectSimilarContentExact, referenceWorkload, waitApplied, type ReferenceWorkload } from "../harness/oracle.js";
import { machine, referenceClicks as referenceClicksFile, referencePages, startStack, type TestStack } from "../harness/stack.js";
import { clickThroughGateway, crashAndRestart, loadgen, timeline } from "./loadgen.js";

// kill -9 of every service in the middle of a content load and of a replay, with production
// settings: a killed consumer's unacked messages come back after the 30 s ack wait, and covisit
// allows 5 minutes of lateness.
let stack: TestStack;
let ref: ReferenceWorkload;
const crashes: string[] = [];

beforeAll(async () => {
  ref = await referenceWorkload();
  // The replays run an hour of clicks in seconds: 30 s of ack wait are hours of event time. A
  // killed covisit's unacked clicks must still come back before any newer click of their users.
  stack = await startStack("kill");
}, 120_000);
afterAll(async () => {
  console.info(`crashes:\n  ${crashes.join("\n  ")}`);
  await stack?.stop();
});

describe("kill -9 of each service", () => {
  it("in the middle of a content load: every page is stored once; loadgen retried what ingest did not ack", async () => {
    const load = loadgen(stack, ["content", referencePages, "--rate", "300", "--wait", "--wait-timeout", "180000"]);
    await timeline([
      [1_500, () => crashAndRestart(stack, "ingest", crashes)],
      [3_000, () => crashAndRestart(stack, "embedder", crashes)],
      [5_000, () => crashAndRestart(stack, "profile", crashes)],
      [6_000, () => crashAndRestart(stack, "covisit", crashes)],
      [6_500, () => crashAndRestart(stack, "gateway", crashes)],
    ]);
    const summary = await load;
    expect(summary).toMatchObject({ sent: 2596, accepted: 2596, rejected: 0, pagesStored: 2596 });
    expect(summary.retries, "loadgen's summary counts the calls it sent again").toBeGreaterThan(0);
  }, 300_000);

  it("in the middle of a replay, with some users' clicks coming through the gateway: every Recommendation equals the SQL, every SimilarContent its recomputation", async () => {
    // One user in eight clicks through the public gateway, the rest come from loadgen through ingest.
    const viaGateway = (userid: string) => Number.parseInt(userid.replace(/\D/g, "").slice(-3) || "0", 10) % 8 === 0;
    const dir = mkdtempSync(join(tmpdir(), "recsys-kill-"));
    const direct = join(dir, "direct.json");
    writeFileSync(
      direct,
      ref.clicks
        .filter((c) => !viaGateway(c.userid))
        .map((c) => JSON.stringify(c))
        .join("\n"),
    );
    const gatewayClicks = ref.clicks.filter((c) => viaGateway(c.userid));
    expect(gatewayClicks.length).toBeGreaterThan(500);

    const replay = loadgen(stack, ["replay", direct, "--rate", "2500", "--wait", "--wait-timeout", "180000"]);
    const browsers = clickThroughGateway(stack, gatewayClicks);
    await timeline([
      [1_000, () => crashAndRestart(stack, "ingest", crashes)],
      [2_500, () => crashAndRestart(stack, "covisit", crashes)],
      [4_000, () => crashAndRestart(stack, "profile", crashes)],
      [5_000, () => crashAndRestart(stack, "gateway", crashes)],
      [6_000, () => crashAndRestart(stack, "embedder", crashes)],
    ]);
    const summary = await replay;
    const sentByGateway = await browsers;
    expect(summary).toMatchObject({ sent: ref.clicks.length - gatewayClicks.length, rejected: 0, late: 0 });
    expect(summary.accepted).toBe(summary.sent);
    expect(summary.retries, "loadgen's summary counts the calls it sent again").toBeGreaterThan(0);
    expect(sentByGateway.retries, "clicks sent again after the gateway or ingest went down").toBeGreaterThan(0);
    crashes.push(`replay: loadgen retried ${summary.retries} calls, gateway clients ${sentByGateway.retries}`);

    await waitApplied(stack, ref.pages.length);
    await expectRecommendationsExact(stack, ref);
    await expectSimilarContentExact(stack, ref);
  }, 300_000);

  it("a covisit and a profile that die after applying a click but before acking it: the redelivery changes nothing", async () => {
    // RECSYS_CRASH_AFTER_EFFECTS=n: the process kills itself right after the effect of its n-th
    // message (the replay sends about 300, each a batch of clicks of one partition), before the ack.
    // The reference replayed again with --shift-time is a second, new copy of every
    // click, far from the first in time: every count doubles, and every user's mean stays the same.
    const exits = (["covisit", "profile"] as const).map(async (service) => {
      await stack.kill(service);
      const child = stack.spawn(service, { RECSYS_CRASH_AFTER_EFFECTS: "100" });
      const signal = await new Promise((r) => child.once("exit", (_code, sig) => r(sig)));
      crashes.push(`${service}: killed itself after the effect of its 100th message, before the ack (${String(signal)})`);
      await stack.start(service);
      return signal;
    });
    const summary = await loadgen(stack, ["replay", referenceClicksFile, "--rate", "0", "--shift-time"]);
    expect(summary).toMatchObject({ sent: ref.clicks.length, accepted: ref.clicks.length, duplicates: 0 });
    expect(await Promise.all(exits)).toEqual(["SIGKILL", "SIGKILL"]);

    await waitApplied(stack, ref.pages.length);
    // The restarted covisit was given clicks the dead one had applied, and found them done.
    expect(await metric(stack.url.covisit, 'recsys_covisit_clicks_total{outcome="duplicate"')).toBeGreaterThan(0);
    const doubled: ReferenceWorkload = {
      ...ref,
      coVisits: new Map([...ref.coVisits].map(([url, list]) => [url, list.map((r) => ({ ...r, frequency: 2 * r.frequency }))])),
    };
    await expectRecommendationsExact(stack, doubled);
    await expectSimilarContentExact(stack, ref);
    // profile's own record of the terms: every (user, page) clicked exactly twice as often as in the file.
    const want = new Map<string, number>();
    for (const c of ref.clicks) want.set(`${c.userid} ${c.url}`, (want.get(`${c.userid} ${c.url}`) ?? 0) + 2);
    const got = await userPageClicks(stack.namespace);
    expect(got.size).toBe(want.size);
    expect([...want].filter(([k, n]) => got.get(k) !== n)).toEqual([]);
  }, 300_000);
});

/** The value of the first sample whose name and labels start with `series`, from GET /metrics. */
async function metric(base: string, series: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(series));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function userPageClicks(namespace: string): Promise<Map<string, number>> {
  const client = new pg.Client({ connectionString: machine.postgres });
  await client.connect();
  try {
    const { rows } = await client.query<{ userid: string; url: string; clicks: string }>(
      `SELECT userid, url, clicks FROM ${namespace}_recsys.user_page_terms WHERE clicks > 0`,
    );
    return new Map(rows.map((r) => [`${r.userid} ${r.url}`, Number(r.clicks)]));
  } finally {
    await client.end();
  }
}
