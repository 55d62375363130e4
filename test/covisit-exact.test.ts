import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replay } from "@recsys/loadgen/replay";
import { clientsOf } from "./harness/clients.js";
import { replayOptions } from "./harness/replay.js";
import { clicksLastSequence, expectRecommendationsExact, loseRedisData, referenceWorkload, type ReferenceWorkload } from "./harness/oracle.js";
import type { RawClick } from "./harness/reference.js";
import { referenceClicks, repoRoot, startStack, type TestStack } from "./harness/stack.js";

let ref: ReferenceWorkload;
const expectEqualsReference = (stack: TestStack) => expectRecommendationsExact(stack, ref);

beforeAll(async () => {
  ref = await referenceWorkload();
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
    for (const list of ref.coVisits.values()) {
      pairs += list.length;
      for (const r of list) coVisits += r.frequency;
    }
    expect({ clicks: ref.clicks.length, pairs, coVisits }).toEqual({ clicks: 19_855, pairs: 118_303, coVisits: 143_325 });
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

  it("rebuilds every count from the CLICKS stream after Redis lost its data", async () => {
    const rebuild = () => spawnSync(process.execPath, [join(repoRoot, "services/covisit/dist/rebuild-cli.js")], { env: stack.env, encoding: "utf8" });
    // A running covisit would apply new clicks before old ones: the command refuses and deletes nothing.
    const refused = rebuild();
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/stop every covisit first/);
    expect(await redisKeys(stack.namespace)).toBeGreaterThan(0);

    await stack.kill("covisit");
    // The data loss: Redis keeps nothing on disk here, so a restart leaves it empty.
    await loseRedisData(stack);
    const last = await clicksLastSequence(stack);
    const done = rebuild();
    expect(done.status, done.stderr).toBe(0);
    expect(done.stdout).toMatch(new RegExp(`apply the clicks of the ${last} messages`));
    await stack.start("covisit");
    await expect
      .poll(async () => (await clientsOf(stack).covisit.progress({})).ackFloorStreamSequence, { timeout: 120_000, interval: 200 })
      .toBeGreaterThanOrEqual(last);
    await expectEqualsReference(stack);
  });
});

async function redisKeys(namespace: string): Promise<number> {
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
  try {
    return (await redis.keys(`${namespace}:recsys:*`)).length;
  } finally {
    redis.disconnect();
  }
}

describe("clicks arriving out of order", () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await startStack("disorder");
  });
  afterAll(async () => stack?.stop());

  it("gives the same counts when clicks are shuffled by up to the allowed lateness (5 minutes)", async () => {
    // Each click moves by a random delay in [0, 5 min); sorting by the delayed time puts a click
    // after clicks up to 5 minutes newer, never more: no click is later than the lateness allows.
    // The seed keeps the test repeatable.
    let seed = 42;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    const shuffled: RawClick[] = ref.clicks
      .map((c) => ({ c, key: Date.parse(c.event_time) + random() * 300_000 }))
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
