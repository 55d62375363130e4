import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { sendPaced, type ItemResult } from "./sender.js";

interface Item {
  user: string;
  n: number;
}

async function* itemsOf(list: Item[]) {
  yield* list;
}

describe("sendPaced", () => {
  it("keeps each key's items in file order however the calls overlap, never more calls in flight than asked", async () => {
    const list: Item[] = Array.from({ length: 600 }, (_, n) => ({ user: `u${(n * 7) % 13}`, n }));
    const arrived: Item[] = [];
    let inFlight = 0;
    let most = 0;
    let seed = 3;
    const summary = await sendPaced({
      items: itemsOf(list),
      rate: 0,
      batchSize: 10,
      concurrency: 4,
      keyOf: (i) => i.user,
      async send(batch): Promise<ItemResult[]> {
        most = Math.max(most, ++inFlight);
        // Calls answer in a scrambled order: a later call often finishes first.
        await sleep((seed = (seed * 48271) % 2147483647) % 7);
        arrived.push(...batch);
        inFlight--;
        return batch.map((_, i) => ({ accepted: true, duplicate: false, streamSequence: BigInt(arrived.length - batch.length + i + 1) }));
      },
    });
    expect(summary).toMatchObject({ sent: 600, accepted: 600, rejected: 0, retries: 0 });
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(4);
    expect(arrived).toHaveLength(600);
    for (const user of new Set(list.map((i) => i.user))) {
      const order = arrived.filter((i) => i.user === user).map((i) => i.n);
      expect(order, user).toEqual([...order].sort((a, b) => a - b));
    }
  });

  it("sends a batch again, unchanged, after a call fails in a way that may have left it half done; reports rejected items by file line", async () => {
    const calls: Item[][] = [];
    const summary = await sendPaced({
      items: itemsOf([
        { user: "a", n: 1 },
        { user: "a", n: 2 },
        { user: "a", n: 3 },
      ]),
      rate: 0,
      batchSize: 3,
      concurrency: 1,
      keyOf: (i) => i.user,
      async send(batch): Promise<ItemResult[]> {
        calls.push(batch);
        if (calls.length === 1) throw new ConnectError("stream reset", Code.Canceled);
        return batch.map((i) =>
          i.n === 2
            ? { accepted: false, field: "userid", reason: "bad" }
            : { accepted: true, duplicate: calls.length > 1 && i.n === 1, streamSequence: BigInt(i.n) },
        );
      },
    });
    expect(calls).toHaveLength(2);
    expect(calls[1]).toEqual(calls[0]);
    expect(summary).toMatchObject({ sent: 3, accepted: 2, rejected: 1, duplicates: 1, retries: 1, rejections: [{ line: 2, field: "userid", reason: "bad" }] });
  });
});
