/** The most watermark advances remembered: enough for every window still open, with the default settings many times over. */
const MAX_ENTRIES = 10_000;

/**
 * When the watermark reached each value (wall clock), so that emission can tell how long a window waited after the watermark closed it.
 * Bounded: the oldest entries go first.
 */
export class WatermarkLog {
  private entries: Array<{ watermarkMs: number; atMs: number }> = [];

  record(watermarkMs: number, atMs: number): void {
    const last = this.entries.at(-1);
    if (last && last.watermarkMs >= watermarkMs) return;
    this.entries.push({ watermarkMs, atMs });
    if (this.entries.length > MAX_ENTRIES) this.entries.splice(0, this.entries.length - MAX_ENTRIES);
  }

  /** The newest watermark recorded. */
  newest(): number | undefined {
    return this.entries.at(-1)?.watermarkMs;
  }

  /** When the watermark first reached `watermarkMs`, or undefined if this process did not see it; forgets what came before. */
  reachedAt(watermarkMs: number): number | undefined {
    const i = this.entries.findIndex((e) => e.watermarkMs >= watermarkMs);
    if (i < 0) return undefined;
    this.entries.splice(0, i);
    return this.entries[0]!.atMs;
  }
}
