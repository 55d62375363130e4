import { describe, expect, it } from "vitest";
import { pairedRounds } from "./anchors.js";
import type { LatencySummary } from "./open-loop.js";

const summary = (p99Ms: number): LatencySummary => ({ requests: 100, errors: 0, p50Ms: 1, p99Ms, maxMs: p99Ms, achievedPerSecond: 100 });

describe("pairedRounds", () => {
  it("runs the two sides by turns, the gateway first in even rounds, and answers each round's ratio of the p99s", async () => {
    const order: string[] = [];
    const gatewayP99 = [4, 30, 5, 6, 4];
    const bareP99 = [2, 3, 2, 3, 20];
    let bareRun = 0;
    const result = await pairedRounds(
      5,
      async (round) => {
        order.push(`gateway ${round}`);
        return summary(gatewayP99[round]!);
      },
      async () => {
        order.push("bare");
        return summary(bareP99[bareRun++]!);
      },
    );
    expect(order).toEqual(["gateway 0", "bare", "bare", "gateway 1", "gateway 2", "bare", "bare", "gateway 3", "gateway 4", "bare"]);
    expect(result.gateway.map((s) => s.p99Ms)).toEqual(gatewayP99);
    expect(result.bare.map((s) => s.p99Ms)).toEqual(bareP99);
    // A slow spell on either side (the gateway's 30 ms in round 1, the bare server's 20 ms in round 4) stays in its own round.
    expect(result.ratios).toEqual([2, 10, 2.5, 2, 0.2]);
  });
});
