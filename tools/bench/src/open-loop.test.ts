import { describe, expect, it } from "vitest";
import { percentiles, runOpenLoop } from "./open-loop.js";

describe("runOpenLoop", () => {
  it("charges a stall to every request that was due during it, not only to the one that waited", async () => {
    // A server that answers at once, except that one answer takes 200 ms and blocks this process
    // (a closed loop would send nothing meanwhile and record a single slow request).
    const summary = await runOpenLoop({
      rate: 100,
      durationMs: 1_000,
      async request(i) {
        if (i === 10) {
          const until = performance.now() + 200;
          while (performance.now() < until);
        }
      },
    });
    expect(summary.requests).toBe(100);
    expect(summary.errors).toBe(0);
    // Requests 10..29 were due during the 200 ms stall: ~20% of them waited for it, so the p99
    // sees it, while the median does not.
    expect(summary.p99Ms).toBeGreaterThan(100);
    expect(summary.p50Ms).toBeLessThan(50);
  });

  it("never records less than the time a request was out, even when it went out before its due time", async () => {
    // Every answer takes at least 5 ms; due times are 1.25 ms apart, closer than a timer can wait,
    // so most requests go out up to a millisecond early, and none can be answered in under 5 ms.
    const summary = await runOpenLoop({
      rate: 800,
      durationMs: 250,
      async request() {
        const until = performance.now() + 5;
        while (performance.now() < until) await new Promise((r) => setImmediate(r));
      },
    });
    expect(summary.errors).toBe(0);
    expect(summary.p50Ms).toBeGreaterThanOrEqual(5);
  });

  it("counts failed requests as errors, out of the latencies", async () => {
    const summary = await runOpenLoop({ rate: 200, durationMs: 100, request: async (i) => (i % 2 ? Promise.reject(new Error("no")) : undefined) });
    expect(summary).toMatchObject({ requests: 20, errors: 10 });
  });
});

describe("percentiles", () => {
  it("reads p50 and p99 of millisecond values", () => {
    const values = Array.from({ length: 1000 }, (_, i) => i + 1);
    const p = percentiles(values);
    expect(p.p50Ms).toBeCloseTo(500, -1);
    expect(p.p99Ms).toBeCloseTo(990, -1);
    expect(p.maxMs).toBeCloseTo(1000, -1);
  });
});
