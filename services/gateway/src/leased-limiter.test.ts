import { setTimeout as sleep } from "node:timers/promises";
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { describe, expect, it } from "vitest";
import { LeasedLimiter, MAX_LEASE, MAX_LEASED_CLIENTS } from "./leased-limiter.js";

/** The shared limiter, counting the calls made of it (each one a round trip to Redis in service). */
function sharedWindow(points: number, duration = 60) {
  const shared = new RateLimiterMemory({ points, duration });
  const consume = shared.consume.bind(shared);
  const counted = { calls: 0 };
  shared.consume = (key, n) => {
    counted.calls++;
    return consume(key, n);
  };
  /** The points the shared window has counted for `key`. */
  const spent = async (key: string) => (await shared.get(key))?.consumedPoints ?? 0;
  return { shared, counted, spent };
}

/** Calls `n` times on behalf of `key` through the limiters by turns, a few at once; how many were admitted and refused. */
async function call(limiters: LeasedLimiter[], key: string, n: number, together = 8) {
  let admitted = 0;
  let refused = 0;
  for (let i = 0; i < n; i += together) {
    await Promise.all(
      Array.from({ length: Math.min(together, n - i) }, (_, j) =>
        limiters[(i + j) % limiters.length]!.consume(key).then(
          () => admitted++,
          (err: unknown) => {
            expect(err).toBeInstanceOf(RateLimiterRes);
            expect((err as RateLimiterRes).msBeforeNext).toBeGreaterThan(0);
            refused++;
          },
        ),
      ),
    );
  }
  return { admitted, refused };
}

describe("LeasedLimiter", () => {
  it("asks the shared limiter once a lease for a busy client, and counts no call it did not admit", async () => {
    const { shared, counted, spent } = sharedWindow(1_000_000);
    const limiter = new LeasedLimiter(shared);
    expect(await call([limiter], "addr:busy", 10_000)).toEqual({ admitted: 10_000, refused: 0 });
    expect(counted.calls).toBeLessThan(10_000 / MAX_LEASE + 40);
    // Every admitted call is counted; at most one lease's points are held and not yet spent.
    expect(await spent("addr:busy")).toBeGreaterThanOrEqual(10_000);
    expect(await spent("addr:busy")).toBeLessThanOrEqual(10_000 + MAX_LEASE);
  });

  it("counts a client calling now and then call by call, as the shared limiter alone would", async () => {
    const { shared, counted, spent } = sharedWindow(600);
    const limiter = new LeasedLimiter(shared);
    for (let i = 0; i < 4; i++) {
      await limiter.consume("user:slow");
      await sleep(210);
    }
    expect(counted.calls).toBe(4);
    expect(await spent("user:slow")).toBe(4);
  });

  it("admits exactly the limit on one replica, then refuses with the shared window's wait", async () => {
    const { shared, spent } = sharedWindow(500);
    const limiter = new LeasedLimiter(shared);
    expect(await call([limiter], "key:k1", 700)).toEqual({ admitted: 500, refused: 200 });
    expect(await spent("key:k1")).toBe(700);
  });

  it("never admits more than the limit across replicas, and strands few points in their leases", async () => {
    const { shared } = sharedWindow(2_000);
    const replicas = [new LeasedLimiter(shared), new LeasedLimiter(shared), new LeasedLimiter(shared)];
    const { admitted } = await call(replicas, "key:shared", 3_000, 12);
    expect(admitted).toBeLessThanOrEqual(2_000);
    expect(admitted).toBeGreaterThanOrEqual(2_000 * 0.95);
  });

  it("spends no leased point after the window it came from", async () => {
    const { shared, counted, spent } = sharedWindow(1_000, 1);
    const limiter = new LeasedLimiter(shared);
    await call([limiter], "addr:windows", 100);
    expect(await spent("addr:windows")).toBeGreaterThan(100);
    await sleep(1_100);
    const before = counted.calls;
    await limiter.consume("addr:windows");
    expect(counted.calls).toBe(before + 1);
    expect(await spent("addr:windows")).toBeGreaterThanOrEqual(1);
  });

  it("keeps leases for a bounded number of clients", async () => {
    const { shared } = sharedWindow(600);
    const limiter = new LeasedLimiter(shared);
    for (let i = 0; i < MAX_LEASED_CLIENTS + 500; i++) await limiter.consume(`user:${i}`);
    expect(limiter.clients).toBe(MAX_LEASED_CLIENTS);
  });

  it("past the bound drops the client idle longest, not a busy one that came first", async () => {
    const { shared, counted, spent } = sharedWindow(1_000_000);
    const limiter = new LeasedLimiter(shared);
    // A busy client, first in: it calls until it holds leased points it has not spent yet.
    let admitted = 0;
    for (const batch of [16, 16, 16, 16]) admitted += (await call([limiter], "key:busy", batch)).admitted;
    while ((await spent("key:busy")) - admitted < 2) admitted += (await call([limiter], "key:busy", 1)).admitted;
    for (let i = 0; i < MAX_LEASED_CLIENTS / 2; i++) await limiter.consume(`user:a${i}`);
    // A call of the busy client in a later span of its demand, then as many new clients again: more than the bound in all.
    await sleep(110);
    await limiter.consume("key:busy");
    for (let i = 0; i < MAX_LEASED_CLIENTS / 2 + 1; i++) await limiter.consume(`user:b${i}`);
    expect(limiter.clients).toBe(MAX_LEASED_CLIENTS);
    // Its lease is still here: its next call spends a leased point, without a round trip to the shared limiter.
    const before = counted.calls;
    await limiter.consume("key:busy");
    expect(counted.calls).toBe(before);
  });
});
