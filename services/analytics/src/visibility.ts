import { readVisibility, runDurableConsumer, type Bus, type Disposition } from "@recsys/bus";
import type { Logger } from "@recsys/logging";
import { isDataError } from "@recsys/postgres";
import type { DependencyHealth } from "@recsys/metrics";
import { visibilityConsumer } from "./durable.js";
import type { AnalyticsStore } from "./store.js";

/**
 * The effect of a VISIBILITY message (PageVisibility), without NATS: the url's state kept, versioned by the message's stream
 * sequence, so a redelivered or older state never replaces a newer one. Undecodable or without url, or refused by PostgreSQL for a
 * value it can never store: dead-lettered.
 */
export async function applyVisibilityMessage(m: { data: Uint8Array; seq: number }, store: AnalyticsStore): Promise<Disposition> {
  const v = readVisibility(m.data);
  if ("error" in v) return { kind: "dead-letter", cause: "undecodable", reason: `undecodable: ${v.error}` };
  try {
    await store.applyVisibility({ url: v.url, hidden: v.hidden, seq: m.seq });
  } catch (err) {
    // A value PostgreSQL can never store (a url from before validation bounded its bytes): retrying would not help.
    if (isDataError(err)) return { kind: "dead-letter", cause: "refused", reason: `refused by PostgreSQL: ${String(err)}` };
    throw err;
  }
  return { kind: "ack" };
}

/** Consumes VISIBILITY (a compacted stream: each url's latest state) into the urls Trending leaves out. */
export function runVisibilityConsumer(opts: { bus: Bus; store: AnalyticsStore; postgres: DependencyHealth; logger: Logger; signal: AbortSignal }) {
  const { bus } = opts;
  return runDurableConsumer({
    bus,
    stream: bus.topology.visibilityStream,
    ...visibilityConsumer,
    filterSubject: bus.topology.visibilitySubjects,
    dependency: opts.postgres,
    concurrency: 4,
    logger: opts.logger,
    signal: opts.signal,
    async handle(m) {
      try {
        return await applyVisibilityMessage(m, opts.store);
      } catch (err) {
        return { kind: "retry", reason: `PostgreSQL: ${String(err)}` };
      }
    },
  });
}
