import { setTimeout as sleep } from "node:timers/promises";
import { consumerNames, isNotFound, readVisibility, runDurableConsumer, type Bus, type CrashAfterEffects, type Disposition } from "@recsys/bus";
import type { Logger } from "@recsys/logging";
import { Counter, registry, type DependencyHealth } from "@recsys/metrics";
import type { CovisitStore } from "./redis-store.js";

/** covisit's VISIBILITY consumer: one durable, any order (a url's states are versioned by stream sequence). */
export const visibilityConsumer = consumerNames("covisit", "visibility");

const visibilityOutcomes = new Counter({
  name: "recsys_covisit_visibility_total",
  help: "PageVisibility messages this process took from VISIBILITY, by outcome: applied, stale (a later state of the url was applied), undecodable",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

/** The effect of one VISIBILITY message at stream sequence `seq`, without NATS: an older state than the one applied changes nothing. */
export async function applyVisibilityMessage(m: { seq: number; data: Uint8Array }, store: CovisitStore): Promise<Disposition> {
  const v = readVisibility(m.data);
  if ("error" in v) {
    visibilityOutcomes.inc({ outcome: "undecodable" });
    return { kind: "dead-letter", cause: "undecodable", reason: `undecodable: ${v.error}` };
  }
  try {
    visibilityOutcomes.inc({ outcome: await store.applyVisibility(v.url, v.hidden, m.seq) });
    return { kind: "ack" };
  } catch (err) {
    return { kind: "retry", reason: `Redis: ${String(err)}` };
  }
}

/** Whether covisit's VISIBILITY durable exists: without it, Redis holds no hidden page yet (a first start, or after a rebuild). */
export async function visibilityConsumerExists(bus: Bus): Promise<boolean> {
  try {
    await bus.jsm.consumers.info(bus.topology.visibilityStream, visibilityConsumer.durable);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

/**
 * Waits until covisit's VISIBILITY durable has applied every message the stream holds now (each url's latest state), so that a
 * covisit that starts from the first message serves no hidden page. Returns when `signal` aborts too.
 */
export async function visibilityCaughtUp(bus: Bus, logger: Logger, signal: AbortSignal): Promise<void> {
  const stream = bus.topology.visibilityStream;
  let lastSeq: number;
  try {
    const { state } = await bus.jsm.streams.info(stream);
    if (state.messages === 0) return;
    lastSeq = state.last_seq;
  } catch (err) {
    // No stream yet: nothing was ever hidden.
    if (isNotFound(err)) return;
    throw err;
  }
  let nextLog = Date.now() + 10_000;
  while (!signal.aborted) {
    const info = await bus.jsm.consumers.info(stream, visibilityConsumer.durable).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (info && (info.ack_floor.stream_seq >= lastSeq || (info.num_pending === 0 && info.num_ack_pending === 0))) return;
    if (Date.now() >= nextLog) {
      logger.warn({ stream, lastSeq, ackFloor: info?.ack_floor.stream_seq ?? 0 }, "still reading the hidden pages: not serving until every one is applied");
      nextLog = Date.now() + 10_000;
    }
    await sleep(100);
  }
}

/**
 * Consumes VISIBILITY with one durable, acked after the script ran; a Redis error waits for redelivery as long as it lasts. The durable
 * starts from the stream's first message: the compacted stream holds each url's latest state, so a new durable reads every hidden page.
 */
export function runVisibilityConsumer(opts: {
  bus: Bus;
  store: CovisitStore;
  redis: DependencyHealth;
  logger: Logger;
  concurrency: number;
  crashAfterEffects?: CrashAfterEffects;
  signal: AbortSignal;
}) {
  const { bus, store } = opts;
  return runDurableConsumer({
    bus,
    stream: bus.topology.visibilityStream,
    ...visibilityConsumer,
    filterSubject: bus.topology.visibilitySubjects,
    dependency: opts.redis,
    concurrency: opts.concurrency,
    crashAfterEffects: opts.crashAfterEffects,
    logger: opts.logger,
    signal: opts.signal,
    handle: (m) => applyVisibilityMessage(m, store),
  });
}
