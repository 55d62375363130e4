/**
 * Hopping windows over event time, aligned to the epoch as Flink's HOP aligns them: a window
 * [start, start + size) starts at every multiple of the slide. Counts are kept per pane, the
 * slide-long interval [p, p + slide) aligned the same way; a window is the sum of its size / slide panes.
 */
export interface HopWindows {
  sizeMs: number;
  slideMs: number;
}

/** The most panes one window may span: a day of 10-second slides. More would make every emission sum that many rows a key. */
export const MAX_PANES_PER_WINDOW = 8_640;

/** The windows of a size and slide, or why not: the size must be a whole number of slides (each pane then lies wholly in a window or out of it). */
export function hopWindows(sizeMs: number, slideMs: number): HopWindows {
  if (!Number.isSafeInteger(slideMs) || slideMs < 1) throw new Error(`WINDOW_SLIDE_MS must be a positive whole number of milliseconds, not ${slideMs}`);
  if (!Number.isSafeInteger(sizeMs) || sizeMs < slideMs || sizeMs % slideMs !== 0)
    throw new Error(`WINDOW_SIZE_MS (${sizeMs}) must be a whole multiple of WINDOW_SLIDE_MS (${slideMs})`);
  if (sizeMs / slideMs > MAX_PANES_PER_WINDOW)
    throw new Error(`WINDOW_SIZE_MS / WINDOW_SLIDE_MS is ${sizeMs / slideMs}: at most ${MAX_PANES_PER_WINDOW} panes a window`);
  return { sizeMs, slideMs };
}

/** The start of the pane holding `tMs`: the greatest multiple of the slide not after it (before the epoch too). */
export function paneStart(tMs: number, w: HopWindows): number {
  return Math.floor(tMs / w.slideMs) * w.slideMs;
}

/** The starts of every window holding `tMs`, oldest first: size / slide of them. */
export function windowStartsOf(tMs: number, w: HopWindows): number[] {
  const last = paneStart(tMs, w);
  const n = w.sizeMs / w.slideMs;
  return Array.from({ length: n }, (_, k) => last - (n - 1 - k) * w.slideMs);
}

/**
 * The first window start that the watermark does not yet close: every window starting before it ends
 * at or before `watermarkMs - latenessMs`, so no click that is not late can still fall in it.
 */
export function closedBefore(watermarkMs: number, latenessMs: number, w: HopWindows): number {
  return paneStart(watermarkMs - latenessMs - w.sizeMs, w) + w.slideMs;
}

/** The first window start after every window that holds a click up to `watermarkMs`: what an idle stream emits up to. */
export function allWindowsBefore(watermarkMs: number, w: HopWindows): number {
  return paneStart(watermarkMs, w) + w.slideMs;
}

/** A click is late when every window holding it has been emitted: those start before `emittedBeforeMs`. */
export function isLate(tMs: number, emittedBeforeMs: number | undefined, w: HopWindows): boolean {
  return emittedBeforeMs !== undefined && paneStart(tMs, w) < emittedBeforeMs;
}
