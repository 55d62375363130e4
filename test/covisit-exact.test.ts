import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replay, type ReplayOptions } from "@recsys/loadgen/replay";
import { clientsOf, recommendationsFor } from "./harness/clients.js";
import { readClicks, referenceCoVisits, type RawClick } from "./harness/reference.js";
import { referenceClicks, startStack, type TestStack } from "./harness/stack.js";

const LIMIT = 1000;
const clicks = readClicks(referenceClicks);
const allUrls = [...new Set(clicks.map((c) => c.url))].sort();
let reference: Awaited<ReturnType<typeof referenceCoVisits>>;

function replayOptions(stack: TestStack, file: string): ReplayOptions {
  return { file, rate: 0, target: stack.url.ingest, covisit: stack.url.covisit, wait: true, shiftTime: false, batchSize: 500, concurrency: 2, waitTimeoutMs: 120_000 };
}

/** Compares every url's answer with the SQL, cut at the same depth; returns the number of co-visits seen. */
async function expectEqualsReference(stack: TestStack) {
  const got = await recommendationsFor(clientsOf(stack).gateway, allUrls, LIMIT);
  let mismatches = 0;
  for (const url of allUrls) {
    const want = (reference.get(url) ?? []).slice(0, LIMIT);
    const have = got.get(url) ?? [];
    if (JSON.stringify(have) !== JSON.stringify(want)) {
      if (mismatches++ < 3) expect.soft(have, url).toEqual(want);
    }
  }
  expect(mismatches, `${mismatches} urls differ from the reference SQL`).toBe(0);
}

beforeAll(async () => {
  reference = await referenceCoVisits(clicks);
});

describe("the reference replay through the real stack", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack("exact");
  });
  afterAll(async () => stack?.stop());

  it("the SQL oracle sees the reference data as documented", () => {
    let pairs = 0;
    let coVisits = 0;
    for (const list of reference.values()) {
      pairs += list.length;
      for (const r of list) coVisits += r.frequency;
    }
    expect({ clicks: clicks.length, pairs, coVisits }).toEqual({ clicks: 19_855, pairs: 118_303, coVisits: 143_325 });
  });

  it("answers Recommendation for every url exactly as the reference SQL", async () => {
    const summary = await replay(replayOptions(stack, referenceClicks));
    expect(summary).toMatchObject({ sent: 19_855, accepted: 19_855, rejected: 0, late: 0 });
    await expectEqualsReference(stack);
  });

  it("changes nothing when the same file is replayed again", async () => {
    const summary = await replay(replayOptions(stack, referenceClicks));
    expect(summary).toMatchObject({ sent: 19_855, accepted: 19_855, duplicates: 19_855 });
    await expectEqualsReference(stack);
  });
});

describe("clicks arriving out of order", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack("disorder");
  });
  afterAll(async () => stack?.stop());

  it("gives the same counts when clicks are shuffled by up to a minute", async () => {
    // Each click moves by a random delay of 0..60 s; sorting by the delayed time disorders the
    // file by at most a minute, and the seed keeps the test repeatable.
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const shuffled: RawClick[] = clicks
      .map((c) => ({ c, key: Date.parse(c.event_time) + random() * 60_000 }))
      .sort((a, b) => a.key - b.key)
      .map((x) => x.c);
    let displaced = 0;
    shuffled.forEach((c, i) => {
      if (i > 0 && Date.parse(c.event_time) < Date.parse(shuffled[i - 1]!.event_time)) displaced++;
    });
    expect(displaced).toBeGreaterThan(1_000);
    const file = join(mkdtempSync(join(tmpdir(), "recsys-")), "shuffled.json");
    writeFileSync(file, shuffled.map((c) => JSON.stringify(c)).join("\n"));

    const summary = await replay(replayOptions(stack, file));
    expect(summary).toMatchObject({ sent: 19_855, accepted: 19_855, late: 0 });
    await expectEqualsReference(stack);
  });
});
