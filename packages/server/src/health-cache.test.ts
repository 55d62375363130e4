import { afterEach, describe, expect, it, vi } from "vitest";
import { cachedFor } from "./rpc-server.js";

describe("cachedFor", () => {
  afterEach(() => vi.useRealTimers());

  it("probes once however many ask within the second, then again", async () => {
    vi.useFakeTimers();
    let probes = 0;
    let up = true;
    const healthy = cachedFor(1_000, async () => {
      probes++;
      return up;
    });
    expect(await Promise.all(Array.from({ length: 100 }, () => healthy()))).toEqual(Array(100).fill(true));
    up = false;
    vi.advanceTimersByTime(999);
    expect(await healthy()).toBe(true);
    expect(probes).toBe(1);
    vi.advanceTimersByTime(1);
    expect(await healthy()).toBe(false);
    expect(probes).toBe(2);
  });

  it("reads a probe that throws as not healthy", async () => {
    const healthy = cachedFor(1_000, () => Promise.reject(new Error("down")));
    expect(await healthy()).toBe(false);
  });
});
