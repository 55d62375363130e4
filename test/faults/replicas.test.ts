import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf } from "../harness/clients.js";
import { expectRecommendationsExact, expectSimilarContentExact, referenceWorkload, waitApplied, type ReferenceWorkload } from "../harness/oracle.js";
import { referenceClicks, referencePages, startStack, type Replica, type TestStack } from "../harness/stack.js";
import { crashAndRestart, loadgen, timeline } from "./loadgen.js";

// Two covisit and two profile processes share each durable consumer: JetStream hands each message
// to one of them (covisit has one durable per partition, one message out at a time). covisit is safe so because each click is one atomic Lua script (see covisit.lua
// and the concurrency test in redis-store.test.ts); profile because each click is one transaction
// that locks the user's interest row.
let stack: TestStack;
let ref: ReferenceWorkload;
let covisit2: Replica;
let profile2: Replica;

beforeAll(async () => {
  ref = await referenceWorkload();
  // Production settings: a killed replica's unacked clicks come back after the 30 s ack wait, and
  // no newer click of their partition is applied before them, so none is late.
  stack = await startStack("replicas");
  covisit2 = await stack.addReplica("covisit");
  profile2 = await stack.addReplica("profile");
}, 120_000);
afterAll(async () => stack?.stop());

/** The sum of a counter's samples whose line starts with `series`, from GET /metrics. */
async function counter(base: string, series: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith(series))
    .reduce((sum, l) => sum + Number(l.split(" ").pop()), 0);
}

describe("two replicas of covisit and of profile on one durable consumer each", () => {
  it("share the work and give exact results, also when one replica of each is killed mid-replay", async () => {
    const pages = await loadgen(stack, ["content", referencePages, "--rate", "0", "--wait"]);
    expect(pages).toMatchObject({ accepted: 2596, pagesStored: 2596 });
    const replay = loadgen(stack, ["replay", referenceClicks, "--rate", "3000"]);
    const log: string[] = [];
    await timeline([
      [2_500, () => crashAndRestart(stack, "covisit", log)],
      [4_000, () => crashAndRestart(stack, "profile", log)],
    ]);
    expect(await replay).toMatchObject({ sent: ref.clicks.length, accepted: ref.clicks.length, rejected: 0 });
    await expect.poll(async () => (await fetch(`${stack.url.covisit}/healthz`)).ok).toBe(true);
    await waitApplied(stack, ref.pages.length);

    // Both replicas did part of the work (the restarted first one counts since its restart).
    const applied = [
      await counter(stack.url.covisit, 'recsys_covisit_clicks_total{outcome="applied"'),
      await counter(covisit2.url, 'recsys_covisit_clicks_total{outcome="applied"'),
    ];
    const folded = [
      await counter(
        stack.url.profile,
        `recsys_consumed_messages_total{stream="${stack.namespace.toUpperCase()}_CLICKS",consumer="profile-clicks",outcome="ack"`,
      ),
      await counter(profile2.url, `recsys_consumed_messages_total{stream="${stack.namespace.toUpperCase()}_CLICKS",consumer="profile-clicks",outcome="ack"`),
    ];
    console.info(`covisit applied per replica ${applied.join(" + ")}, profile acked clicks per replica ${folded.join(" + ")}; ${log.join("; ")}`);
    expect(Math.min(...applied)).toBeGreaterThan(0);
    expect(Math.min(...folded)).toBeGreaterThan(0);
    // No click was too late to pair.
    expect((await clientsOf(stack).covisit.progress({})).deadLetteredClicks).toBe(0n);

    await expectRecommendationsExact(stack, ref);
    await expectSimilarContentExact(stack, ref);
  }, 400_000);
});
