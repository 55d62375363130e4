import { describe, expect, it } from "vitest";
import { allWindowsBefore, closedBefore, hopWindows, isLate, paneStart, windowStartsOf } from "./windows.js";

const w = hopWindows(300_000, 10_000);
const T = Date.parse("2024-01-02T00:00:00Z");

describe("hop windows aligned to the epoch", () => {
  it("puts a click in the pane starting at the multiple of the slide at or before it", () => {
    expect(paneStart(T, w)).toBe(T);
    expect(paneStart(T + 9_999, w)).toBe(T);
    expect(paneStart(T + 10_000, w)).toBe(T + 10_000);
    expect(paneStart(0, w)).toBe(0);
  });

  it("aligns times before the epoch downwards, not towards zero", () => {
    expect(paneStart(-1, w)).toBe(-10_000);
    expect(paneStart(-10_000, w)).toBe(-10_000);
    expect(paneStart(-10_001, w)).toBe(-20_000);
    expect(windowStartsOf(-1, w).at(-1)).toBe(-10_000);
    expect(windowStartsOf(-1, w)[0]).toBe(-300_000);
  });

  it("gives a click the 30 windows that hold it, as Flink's HOP(10 s, 5 min) does", () => {
    const t = T + 123_456;
    const starts = windowStartsOf(t, w);
    expect(starts).toHaveLength(30);
    expect(starts[0]).toBe(T + 120_000 - 290_000);
    expect(starts.at(-1)).toBe(T + 120_000);
    for (const s of starts) {
      expect(s % 10_000).toBe(0);
      expect(s <= t && t < s + 300_000).toBe(true);
    }
    // The windows just outside do not hold it.
    expect(starts[0]! - 10_000 + 300_000 <= t).toBe(true);
    expect(starts.at(-1)! + 10_000 > t).toBe(true);
  });

  it("puts a click on a window's end in the next window only", () => {
    const starts = windowStartsOf(T + 300_000, w);
    expect(starts).not.toContain(T);
    expect(starts[0]).toBe(T + 10_000);
  });

  it("gives windows as long as a slide one window a click", () => {
    const tumbling = hopWindows(60_000, 60_000);
    expect(windowStartsOf(T + 59_999, tumbling)).toEqual([T]);
  });

  it("closes a window once the watermark minus the lateness reaches its end", () => {
    const lateness = 300_000;
    // The window [T, T + 5 min) closes at watermark T + 10 min.
    expect(closedBefore(T + 600_000, lateness, w)).toBe(T + 10_000);
    expect(closedBefore(T + 599_999, lateness, w)).toBe(T);
    expect(closedBefore(T + 609_999, lateness, w)).toBe(T + 10_000);
  });

  it("emits every window holding data when idle: those starting at or before the watermark's pane", () => {
    expect(allWindowsBefore(T + 15_000, w)).toBe(T + 20_000);
    expect(allWindowsBefore(T + 10_000, w)).toBe(T + 20_000);
  });

  it("calls a click late only when its newest window has been emitted", () => {
    expect(isLate(T + 5_000, undefined, w)).toBe(false);
    expect(isLate(T + 5_000, T, w)).toBe(false);
    expect(isLate(T + 5_000, T + 10_000, w)).toBe(true);
    expect(isLate(T + 9_999, T + 10_000, w)).toBe(true);
    expect(isLate(T + 10_000, T + 10_000, w)).toBe(false);
  });

  it("refuses a size that is not a whole number of slides, and too many panes a window", () => {
    expect(() => hopWindows(300_000, 7_000)).toThrow(/WINDOW_SIZE_MS \(300000\) must be a whole multiple of WINDOW_SLIDE_MS \(7000\)/);
    expect(() => hopWindows(5_000, 10_000)).toThrow(/whole multiple/);
    expect(() => hopWindows(300_000, 0)).toThrow(/WINDOW_SLIDE_MS/);
    expect(() => hopWindows(86_400_000 * 2, 10_000)).toThrow(/at most 8640 panes/);
  });
});
