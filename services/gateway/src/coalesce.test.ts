import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { coalesce, type BatchAnswer } from "./coalesce.js";

/** A fake batch RPC that answers after `ms`, recording the batches it got. */
function fakeBackend(ms: number) {
  const batches: number[][] = [];
  let open = 0;
  let mostOpen = 0;
  const batch = async (requests: readonly number[]): Promise<Array<BatchAnswer<string>>> => {
    batches.push([...requests]);
    mostOpen = Math.max(mostOpen, ++open);
    await sleep(ms);
    open--;
    return requests.map((n) =>
      n < 0
        ? { outcome: { case: "refused", value: { code: Code.InvalidArgument, message: `n: ${n} is negative` } } }
        : { outcome: { case: "response", value: `answer ${n}` } },
    );
  };
  return { batch, batches, mostOpen: () => mostOpen };
}

describe("coalesce", () => {
  it("sends a lone call at once, on its own", async () => {
    const backend = fakeBackend(1);
    const call = coalesce({ maxBatch: 64, maxOutstanding: 1000, maxInFlight: 2, batch: backend.batch });
    const t0 = performance.now();
    expect(await call(7)).toBe("answer 7");
    expect(performance.now() - t0).toBeLessThan(50);
    expect(backend.batches).toEqual([[7]]);
  });

  it("gathers calls made while every batch call is out, keeps maxInFlight and maxBatch, and answers each its own", async () => {
    const backend = fakeBackend(20);
    const call = coalesce({ maxBatch: 10, maxOutstanding: 1000, maxInFlight: 2, batch: backend.batch });
    const first = [call(0), call(1)];
    await sleep(5);
    // Both batch calls are out now: these 25 wait and go in batches of at most 10.
    const rest = Array.from({ length: 25 }, (_, i) => call(i + 2));
    expect(await Promise.all([...first, ...rest])).toEqual(Array.from({ length: 27 }, (_, i) => `answer ${i}`));
    expect(backend.mostOpen()).toBeLessThanOrEqual(2);
    expect(Math.max(...backend.batches.map((b) => b.length))).toBeLessThanOrEqual(10);
    expect(backend.batches.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: 27 }, (_, i) => i));
    // 25 waiting calls in batches of 10: three backend calls, not 25.
    expect(backend.batches.length).toBeLessThanOrEqual(5);
  });

  it("gives a refused call its own error and the others their answers", async () => {
    const call = coalesce({ maxBatch: 10, maxOutstanding: 1000, maxInFlight: 1, batch: fakeBackend(5).batch });
    const results = await Promise.allSettled([call(1), call(-2), call(3)]);
    expect(results[0]).toEqual({ status: "fulfilled", value: "answer 1" });
    expect(results[2]).toEqual({ status: "fulfilled", value: "answer 3" });
    const refused = (results[1] as PromiseRejectedResult).reason as ConnectError;
    expect(refused).toBeInstanceOf(ConnectError);
    expect(refused.code).toBe(Code.InvalidArgument);
    expect(refused.rawMessage).toBe("n: -2 is negative");
  });

  it("fails every call of a batch whose backend call failed, and goes on with the next", async () => {
    let fail = true;
    const call = coalesce<number, string>({
      maxBatch: 10,
      maxOutstanding: 1000,
      maxInFlight: 1,
      batch: async (requests) => {
        if (fail) throw new ConnectError("backend down", Code.Unavailable);
        return requests.map((n) => ({ outcome: { case: "response", value: `answer ${n}` } }));
      },
    });
    const failed = await Promise.allSettled([call(1), call(2)]);
    expect(failed.map((r) => r.status === "rejected" && ConnectError.from(r.reason).code)).toEqual([Code.Unavailable, Code.Unavailable]);
    fail = false;
    expect(await call(3)).toBe("answer 3");
  });

  it("sheds calls past its bound with ResourceExhausted at once, and takes calls again as answers come", async () => {
    const backend = fakeBackend(50);
    const call = coalesce({ maxBatch: 10, maxOutstanding: 20, maxInFlight: 1, batch: backend.batch });
    const first = Array.from({ length: 20 }, (_, i) => call(i));
    const t0 = performance.now();
    const shed = await call(99).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(performance.now() - t0).toBeLessThan(20);
    expect(shed?.code).toBe(Code.ResourceExhausted);
    expect(shed?.rawMessage).toMatch(/^gateway busy: 20 calls/);
    expect(await Promise.all(first)).toHaveLength(20);
    expect(backend.batches.flat()).not.toContain(99);
    expect(await call(100)).toBe("answer 100");
  });
});
