import type { AnalyticsStore } from "./store.js";

/** For tests: every emitted window marked published, as the emitter does it after each publication, without NATS. */
export async function markAllPublished(store: AnalyticsStore): Promise<void> {
  for (;;) {
    const { windows, beforeMs } = await store.unpublished(20_000);
    if (beforeMs === undefined) return;
    await store.markPublished(
      beforeMs,
      windows.reduce((n, w) => n + w.rows.length, 0),
    );
  }
}
