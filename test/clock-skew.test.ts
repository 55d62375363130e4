import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientsOf, outcome } from "./harness/clients.js";
import { clicksLastSequence, writesStored } from "./harness/oracle.js";
import { startStack, type TestStack } from "./harness/stack.js";

// A device whose clock runs a day ahead must not make every real event of its user, or every
// real update of a page, look old: ingest refuses times more than a few minutes (2 by default)
// ahead of its own clock. A refusal is checked softly, so that the test goes on to show what
// the event would have done had it been taken.

let stack: TestStack;
let c: ReturnType<typeof clientsOf>;

const HOUR = 3_600_000;
const ahead = (ms: number) => new Date(Date.now() + ms).toISOString();

async function clicksApplied() {
  const last = await clicksLastSequence(stack);
  await expect.poll(async () => (await c.covisit.progress({})).ackFloorStreamSequence, { timeout: 30_000, interval: 100 }).toBeGreaterThanOrEqual(last);
}

beforeAll(async () => {
  stack = await startStack("clockskew");
  c = clientsOf(stack);
});
afterAll(async () => stack?.stop());

describe("a time ahead of ingest's clock", () => {
  const A = "https://e.org/skew/a";
  const B = "https://e.org/skew/b";

  it("refuses a click dated 23 hours ahead, naming event_time, and the user's real clicks then count", async () => {
    const before = await writesStored(stack);
    expect
      .soft(await outcome(c.gateway.clickstream({ event: { userid: "V", url: A, eventTime: ahead(23 * HOUR) } })))
      .toMatch(/^InvalidArgument: event\.event_time: .*ahead/);
    expect.soft(await writesStored(stack)).toEqual(before);

    await c.gateway.clickstream({ event: { userid: "V", url: A, eventTime: ahead(-1_000) } });
    await c.gateway.clickstream({ event: { userid: "V", url: B, eventTime: ahead(0) } });
    await clicksApplied();
    expect((await c.gateway.recommendation({ url: A })).items.map((i) => [i.recommendation, Number(i.frequency)])).toEqual([[B, 1]]);
    expect((await c.covisit.progress({})).deadLetteredClicks).toBe(0n);
  });

  it("accepts a click a minute ahead and refuses one three minutes ahead (the default limit is 2 minutes)", async () => {
    const res = await c.ingest.publishClicks({
      clicks: [
        { userid: "W", url: A, eventTime: ahead(60_000) },
        { userid: "W", url: B, eventTime: ahead(3 * 60_000) },
      ],
    });
    expect(res.results.map((r) => (r.outcome.case === "rejected" ? r.outcome.value.field : r.outcome.case))).toEqual(["accepted", "event_time"]);
  });

  it("refuses a page version dated 23 hours ahead, naming source_time, and the page's real update then applies", async () => {
    const url = "https://e.org/skew/page";
    const before = await writesStored(stack);
    const tomorrow = { url, id: "7001", title: "Skew", text: "The version from tomorrow." };
    expect
      .soft(await outcome(c.gateway.content({ event: { ...tomorrow, sourceTime: ahead(23 * HOUR) } })))
      .toMatch(/^InvalidArgument: event\.source_time: .*ahead/);
    expect.soft(await writesStored(stack)).toEqual(before);

    await c.gateway.content({ event: { url, id: "7001", title: "Skew", text: "The version of today.", sourceTime: ahead(0) } });
    await expect
      .poll(async () => (await c.gateway.events({ limit: 10 })).items.filter((e) => e.url === url).map((e) => e.abstract), { timeout: 30_000, interval: 100 })
      .toEqual(["The version of today."]);
  });

  it("refuses a like and an interest dated 23 hours ahead, naming source_time, and the user's real like then applies", async () => {
    const before = await writesStored(stack);
    const unlike = await c.ingest.publishLikes({ likes: [{ userid: "V", pageId: "7001", liked: false, sourceTime: ahead(23 * HOUR) }] });
    const interest = await c.ingest.publishInterests({ interests: [{ userid: "V", text: "bicycles", sourceTime: ahead(23 * HOUR) }] });
    const refusal = (r: { outcome: { case: string | undefined; value?: unknown } }) =>
      r.outcome.case === "rejected" ? (r.outcome.value as { field: string; reason: string }) : r.outcome.case;
    expect.soft(refusal(unlike.results[0]!)).toMatchObject({ field: "source_time", reason: expect.stringMatching(/ahead/) });
    expect.soft(refusal(interest.results[0]!)).toMatchObject({ field: "source_time", reason: expect.stringMatching(/ahead/) });
    expect.soft(await writesStored(stack)).toEqual(before);

    // Had the unlike from tomorrow been kept, this like of today would lose to it.
    await c.gateway.likes({ liked: { userid: "V", eventId: "7001", liked: true } });
    await expect.poll(async () => (await c.gateway.eventsLiked({ userid: "V" })).items.map((e) => e.id), { timeout: 30_000, interval: 100 }).toEqual(["7001"]);
  });
});
