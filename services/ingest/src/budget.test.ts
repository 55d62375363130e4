import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ARRIVALS_PER_BUDGET, ClickBudget } from "./budget.js";

const T0 = Date.parse("2024-01-02T00:00:00Z");
const WINDOW = 10 * 60_000;
const click = (userid: string, eventId: string, t: number) => ({ userid, eventId, url: "https://e.org/a", eventTimeMs: t });

describe("ClickBudget", () => {
  it("refuses a user's click with the budget's worth of clicks within the window either side, naming userid with ResourceExhausted", () => {
    // The clicks arrive as they happen.
    const clock = { now: T0 + 180_000 };
    const budget = new ClickBudget(3, WINDOW, undefined, undefined, () => clock.now);
    const first = budget.admit([click("u", "a", T0), click("u", "b", T0 + 60_000), click("u", "c", T0 + 120_000), click("u", "d", T0 + 180_000)]);
    expect(first.refused.map((e) => e?.code)).toEqual([undefined, undefined, undefined, Code.ResourceExhausted]);
    expect(first.refused[3]).toMatchObject({ field: "userid" });
    // Before the first: still within 10 minutes of all three.
    expect(budget.admit([click("u", "e", T0 - 60_000)]).refused[0]?.code).toBe(Code.ResourceExhausted);
    // Other users have budgets of their own; 10 minutes and 1 ms after the third, the window is free again.
    expect(budget.admit([click("v", "a", T0)]).refused).toEqual([undefined]);
    clock.now = T0 + 120_000 + WINDOW + 1;
    expect(budget.admit([click("u", "f", T0 + 120_000 + WINDOW + 1)]).refused).toEqual([undefined]);
  });

  it("refuses the click past ARRIVALS_PER_BUDGET budgets of arrivals, whatever the event times, and gives them back at that rate", () => {
    const clock = { now: T0 };
    const budget = new ClickBudget(3, WINDOW, undefined, undefined, () => clock.now);
    const arrivals = 3 * ARRIVALS_PER_BUDGET;
    // Back-dated clicks, each in a window of event time of its own: covisit's rule alone would take them all.
    const backDated = (k: number) => click("u", `b${k}`, T0 - 7 * 24 * 3_600_000 + k * (WINDOW + 1));
    const first = budget.admit(Array.from({ length: arrivals + 1 }, (_, k) => backDated(k)));
    expect(first.refused.slice(0, arrivals)).toEqual(new Array(arrivals).fill(undefined));
    expect(first.refused[arrivals]).toMatchObject({ field: "userid", code: Code.ResourceExhausted });
    expect(first.refused[arrivals]!.reason).toMatch(/30 clicks arrived within 10 minutes, whatever their event times; retry in 20 s/);
    // A thirtieth of the window later, one more.
    clock.now += WINDOW / arrivals;
    expect(budget.admit([backDated(arrivals), backDated(arrivals + 1)]).refused.map((e) => e?.code)).toEqual([undefined, Code.ResourceExhausted]);
    // A publish that failed gives its arrival back.
    clock.now += WINDOW / arrivals;
    budget.admit([backDated(arrivals + 2)]).release();
    expect(budget.admit([backDated(arrivals + 3)]).refused).toEqual([undefined]);
    expect(budget.admit([backDated(arrivals + 4)]).refused[0]?.code).toBe(Code.ResourceExhausted);
  });

  it("counts a click sent again once, and gives back what a failed publish took", () => {
    const budget = new ClickBudget(2, WINDOW);
    expect(budget.admit([click("u", "a", T0), click("u", "a", T0)]).refused).toEqual([undefined, undefined]);
    const failed = budget.admit([click("u", "b", T0)]);
    expect(failed.refused).toEqual([undefined]);
    failed.release();
    expect(budget.admit([click("u", "c", T0)]).refused).toEqual([undefined]);
    expect(budget.admit([click("u", "d", T0)]).refused[0]?.code).toBe(Code.ResourceExhausted);
  });

  it("gives back only what a failed publish took: the user's earlier clicks it had forgotten count again", () => {
    const clock = { now: T0 + 90_000 };
    const budget = new ClickBudget(2, WINDOW, undefined, undefined, () => clock.now);
    budget.admit([click("u", "a", T0), click("u", "b", T0 + 60_000)]);
    expect(budget.admit([click("u", "c", T0 + 90_000)]).refused[0]?.code).toBe(Code.ResourceExhausted);
    // A click more than two windows later forgets a and b; its publish fails.
    clock.now = T0 + 2 * WINDOW + 120_000;
    const failed = budget.admit([click("u", "late", T0 + 2 * WINDOW + 120_000)]);
    expect(failed.refused).toEqual([undefined]);
    failed.release();
    expect(budget.admit([click("u", "d", T0 + 90_000)]).refused[0]?.code).toBe(Code.ResourceExhausted);
  });

  it("still counts a click whose first publish failed while a retry of it was under way, and the retry stored it", () => {
    const budget = new ClickBudget(2, WINDOW);
    const first = budget.admit([click("u", "a", T0)]);
    // The client gave up on the first call and sent the click again before the first publish failed.
    const retry = budget.admit([click("u", "a", T0)]);
    expect(retry.refused).toEqual([undefined]);
    first.release();
    retry.keep();
    // a is stored and counts: one more click fills the budget.
    expect(budget.admit([click("u", "b", T0)]).refused).toEqual([undefined]);
    expect(budget.admit([click("u", "c", T0)]).refused[0]?.code).toBe(Code.ResourceExhausted);
  });

  it("gives back a click that every call holding it failed to publish, and keeps one that any stored", () => {
    const budget = new ClickBudget(1, WINDOW);
    const [first, retry] = [budget.admit([click("u", "a", T0)]), budget.admit([click("u", "a", T0)])];
    first.release();
    retry.release();
    expect(budget.admit([click("u", "b", T0)]).refused).toEqual([undefined]);
    // Stored first, then a failed retry: it still counts.
    const budget2 = new ClickBudget(1, WINDOW);
    const [stored, failed] = [budget2.admit([click("u", "a", T0)]), budget2.admit([click("u", "a", T0)])];
    stored.keep();
    failed.release();
    expect(budget2.admit([click("u", "b", T0)]).refused[0]?.code).toBe(Code.ResourceExhausted);
  });

  it("keeps at most maxClicks clicks in all, forgetting the users seen longest ago", () => {
    const budget = new ClickBudget(3, WINDOW, 100, 5);
    budget.admit([click("u1", "a", T0), click("u1", "b", T0), click("u1", "c", T0)]);
    budget.admit([click("u2", "a", T0), click("u2", "b", T0)]);
    expect(budget.size).toBe(5);
    // A sixth click forgets u1 (seen longest ago) and its three.
    budget.admit([click("u3", "a", T0)]);
    expect(budget.size).toBe(3);
    expect(budget.admit([click("u1", "d", T0)]).refused).toEqual([undefined]);
    expect(budget.admit([click("u2", "c", T0)]).refused).toEqual([undefined]);
    expect(budget.admit([click("u2", "d", T0)]).refused[0]?.code).toBe(Code.ResourceExhausted);
    expect(budget.size).toBeLessThanOrEqual(5);
  });

  it("counts a click sent again, or another click under the same event id, once against the window but as an arrival each time", () => {
    const clock = { now: T0 };
    const budget = new ClickBudget(3, WINDOW, undefined, undefined, () => clock.now);
    const arrivals = 3 * ARRIVALS_PER_BUDGET;
    budget.admit([click("u", "a", T0)]).keep();
    // The same click 29 times more, and other urls under its id: accepted (the consumers drop them as duplicates) until the
    // arrivals are spent, though each is stored again.
    const again = budget.admit(Array.from({ length: arrivals }, (_, k) => ({ ...click("u", "a", T0), url: `https://e.org/${k}` })));
    expect(again.refused.slice(0, arrivals - 1)).toEqual(new Array(arrivals - 1).fill(undefined));
    expect(again.refused[arrivals - 1]?.reason).toMatch(/clicks arrived within 10 minutes, whatever their event times/);
    // The window still holds one click of u: two more are accepted once arrivals come back.
    clock.now += (2 * WINDOW) / arrivals;
    expect(budget.admit([click("u", "b", T0), click("u", "c", T0)]).refused).toEqual([undefined, undefined]);
  });

  it("keeps a user's arrivals owed when the user's clicks are forgotten to make room for others'", () => {
    const clock = { now: T0 };
    // Room for 5 clicks in all; u's 30 arrivals (three budgets of ten) spent on back-dated clicks (it keeps the last 3).
    const budget = new ClickBudget(3, WINDOW, 100, 5, () => clock.now);
    const arrivals = 3 * ARRIVALS_PER_BUDGET;
    const backDated = (k: number) => click("u", `b${k}`, T0 - 7 * 24 * 3_600_000 + k * (WINDOW + 1));
    budget.admit(Array.from({ length: arrivals }, (_, k) => backDated(k)));
    // Other users' clicks push u's out of the 5 kept.
    for (let k = 0; k < 20; k++) budget.admit([click(`v${k}`, "a", T0)]);
    expect(budget.size).toBeLessThanOrEqual(5);
    // u's next back-dated click is still over its arrivals: forgetting its clicks did not give back what it spent.
    expect(budget.admit([backDated(arrivals)]).refused[0]?.reason).toMatch(/clicks arrived within 10 minutes, whatever their event times/);
  });

  it("keeps at most maxUsers users", () => {
    const budget = new ClickBudget(1, WINDOW, 2);
    budget.admit([click("u1", "a", T0), click("u2", "a", T0), click("u3", "a", T0)]);
    // u1 was forgotten, u3 was not.
    expect(budget.admit([click("u1", "b", T0)]).refused).toEqual([undefined]);
    expect(budget.admit([click("u3", "b", T0)]).refused[0]?.code).toBe(Code.ResourceExhausted);
  });
});
