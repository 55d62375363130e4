import { fromBinary } from "@bufbuild/protobuf";
import { JetStreamApiError, runDurableConsumer, type Bus, type Disposition } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import type { Logger } from "@recsys/logging";
import { Counter, registry } from "@recsys/metrics";
import type { ApplyOutcome, ClickToApply, CovisitStore } from "./redis-store.js";

export const DURABLE = "covisit";
export const DEAD_LETTER_SOURCE = "clicks";

export type ClickVerdict = ApplyOutcome | { status: "undecodable"; error: string };

/** A CLICKS message decoded, or why it cannot be. */
export function decodeClick(data: Uint8Array): ClickToApply | { error: string } {
  let click;
  try {
    click = fromBinary(ClickSchema, data);
  } catch (err) {
    return { error: String(err) };
  }
  if (!click.eventId || !click.userid || !click.url) return { error: "missing event_id, userid or url" };
  return { eventId: click.eventId, userid: click.userid, url: click.url, eventTimeMs: Number(click.eventTimeMs) };
}

/** The effect of CLICKS messages, without NATS: decode each, then one atomic script for all that decode. */
export async function applyClickMessages(data: Uint8Array[], store: CovisitStore): Promise<ClickVerdict[]> {
  const decoded = data.map(decodeClick);
  const clicks = decoded.filter((d): d is ClickToApply => !("error" in d));
  const outcomes = await store.applyClicks(clicks);
  let next = 0;
  return decoded.map((d) => ("error" in d ? { status: "undecodable", error: d.error } : outcomes[next++]!));
}

const clickOutcomes = new Counter({
  name: "recsys_covisit_clicks_total",
  help: "Clicks this process took from CLICKS, by outcome: applied, duplicate, late (dead-lettered), lost (Redis lost the counts), undecodable",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

/** Whether the durable consumer has ever delivered a click: if not, the counts start now. */
export async function consumerNeverDelivered(bus: Bus): Promise<boolean> {
  try {
    const info = await bus.jsm.consumers.info(bus.topology.clicksStream, DURABLE);
    return info.delivered.stream_seq === 0;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.status === 404) return true;
    throw err;
  }
}

export interface ConsumerStats {
  applied: number;
  duplicates: number;
  late: number;
  undecodable: number;
}

/** The settlement of one click's verdict, counted. */
function dispositionOf(verdict: ClickVerdict, stats: ConsumerStats): Disposition {
  clickOutcomes.inc({ outcome: verdict.status });
  switch (verdict.status) {
    case "applied":
      stats.applied++;
      return { kind: "ack" };
    case "duplicate":
      stats.duplicates++;
      return { kind: "ack" };
    case "late":
      stats.late++;
      return { kind: "dead-letter", reason: `late: watermark ${new Date(verdict.watermarkMs).toISOString()}` };
    case "lost":
      // Left in the stream, unacked: a rebuild applies it with everything before it.
      return { kind: "retry", delayMs: 5_000, reason: "Redis lost the co-visit counts: run pnpm covisit:rebuild" };
    case "undecodable":
      stats.undecodable++;
      return { kind: "dead-letter", reason: `undecodable: ${verdict.error}` };
  }
}

/**
 * Consumes CLICKS with a durable consumer shared by every covisit replica, in batches: what arrived
 * while the previous batches ran, up to `maxBatch`, goes to Redis as one atomic script. Messages are
 * acked only after their script ran (or after they were dead-lettered), so a crash redelivers them
 * and the script's event_id check makes the redelivery harmless. A Redis error leaves the batch for
 * redelivery.
 */
export function runClickConsumer(opts: { bus: Bus; store: CovisitStore; logger: Logger; concurrency: number; maxBatch: number; stats: ConsumerStats; signal: AbortSignal }) {
  const { store, stats } = opts;
  return runDurableConsumer({
    bus: opts.bus,
    stream: opts.bus.topology.clicksStream,
    durable: DURABLE,
    filterSubject: opts.bus.topology.clicksSubjects,
    concurrency: opts.concurrency,
    maxBatch: opts.maxBatch,
    deadLetterSource: DEAD_LETTER_SOURCE,
    logger: opts.logger,
    signal: opts.signal,
    async handleBatch(ms) {
      const verdicts = await applyClickMessages(
        ms.map((m) => m.data),
        store,
      );
      return verdicts.map((v) => dispositionOf(v, stats));
    },
  });
}
