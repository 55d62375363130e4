import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { EngagementBudget } from "./engagement-budget.js";

const HOUR = 3_600_000;
const stored = { streamSequence: 1n, duplicate: false };
const duplicate = { streamSequence: 1n, duplicate: true };

/** A budget of 1,000 bytes an hour on a clock the test moves. */
function budgetAt(t0 = 0, maxUsers?: number) {
  const clock = { now: t0 };
  return { clock, budget: new EngagementBudget(1_000, HOUR, maxUsers, () => clock.now) };
}
const codes = (r: ReturnType<EngagementBudget["admit"]>) => r.refused.map((e) => e?.code);

describe("EngagementBudget", () => {
  it("takes a user's whole budget at once, refuses the event over it naming userid with ResourceExhausted, and leaves other users alone", () => {
    const { budget } = budgetAt();
    const first = budget.admit([
      { userid: "u", bytes: 400 },
      { userid: "u", bytes: 600 },
      { userid: "u", bytes: 1 },
      { userid: "v", bytes: 1_000 },
    ]);
    expect(codes(first)).toEqual([undefined, undefined, Code.ResourceExhausted, undefined]);
    expect(first.refused[2]).toMatchObject({ field: "userid" });
    expect(first.refused[2]!.reason).toMatch(/at most 1000 bytes of likes and stated interests an hour.*retry in 4 s/);
  });

  it("gives the budget back at its rate: a tenth of it after a tenth of the hour, all of it after the hour", () => {
    const { clock, budget } = budgetAt();
    budget.admit([{ userid: "u", bytes: 1_000 }]).keep([stored]);
    clock.now += HOUR / 10;
    expect(codes(budget.admit([{ userid: "u", bytes: 101 }]))).toEqual([Code.ResourceExhausted]);
    expect(codes(budget.admit([{ userid: "u", bytes: 100 }]))).toEqual([undefined]);
    clock.now += 2 * HOUR;
    // Paid off: two hours idle do not add up to more than one budget.
    expect(
      codes(
        budget.admit([
          { userid: "u", bytes: 1_000 },
          { userid: "u", bytes: 1 },
        ]),
      ),
    ).toEqual([undefined, Code.ResourceExhausted]);
  });

  it("gives back all a failed publish took, and what duplicates took (JetStream stored nothing for them)", () => {
    const { budget } = budgetAt();
    budget.admit([{ userid: "u", bytes: 900 }]).release();
    const second = budget.admit([
      { userid: "u", bytes: 2_000 },
      { userid: "u", bytes: 500 },
      { userid: "u", bytes: 500 },
    ]);
    expect(codes(second)).toEqual([Code.ResourceExhausted, undefined, undefined]);
    // Its two admitted events, in order: the second was a duplicate.
    second.keep([stored, duplicate]);
    expect(
      codes(
        budget.admit([
          { userid: "u", bytes: 500 },
          { userid: "u", bytes: 1 },
        ]),
      ),
    ).toEqual([undefined, Code.ResourceExhausted]);
  });

  it("refuses an event larger than the whole budget, and keeps at most maxUsers users, forgetting paid-off ones first", () => {
    const { clock, budget } = budgetAt(0, 3);
    expect(codes(budget.admit([{ userid: "u", bytes: 1_001 }]))).toEqual([Code.ResourceExhausted]);
    budget.admit([
      { userid: "a", bytes: 10 },
      { userid: "b", bytes: 1_000 },
      { userid: "c", bytes: 1_000 },
    ]);
    expect(budget.size).toBe(3);
    // a's 10 bytes are paid off after 36 s: it goes when d comes, b and c stay full.
    clock.now += 36_000;
    budget.admit([{ userid: "d", bytes: 1 }]);
    expect(budget.size).toBe(3);
    expect(codes(budget.admit([{ userid: "b", bytes: 100 }]))).toEqual([Code.ResourceExhausted]);
    // Past maxUsers with every user still owing, the one seen longest ago goes: c, b being seen just now.
    budget.admit([{ userid: "e", bytes: 1 }]);
    expect(budget.size).toBe(3);
    expect(codes(budget.admit([{ userid: "c", bytes: 1_000 }]))).toEqual([undefined]);
  });
});
