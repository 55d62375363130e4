import {
  applicableClicks,
  clickDeadLetter,
  readClicks,
  runDurableConsumer,
  type Bus,
  type CrashAfterEffects,
  type Disposition,
  type ItemDeadLetter,
  type MsgHdrs,
} from "@recsys/bus";
import { Counter, registry, type DependencyHealth } from "@recsys/metrics";
import type { AnalyticsStore, ClickOutcome } from "./store.js";
import { clicksConsumer, inStreamOrder } from "./durable.js";
import { emitDue, type EmissionOptions } from "./emitter.js";
import type { WatermarkLog } from "./watermark-log.js";

const clickOutcomes = new Counter({
  name: "recsys_analytics_clicks_total",
  help: "Clicks analytics took from CLICKS, by outcome: applied (counted in its pane), duplicate, late (every window holding it was emitted: dead-lettered), undecodable",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

type Verdict = ClickOutcome | { undecodable: string };

/** The effect of CLICKS messages, without NATS: every readable click in one transaction; one verdict list per message (or why it cannot be read). */
export async function applyClickMessages(
  messages: Array<{ data: Uint8Array; headers?: MsgHdrs }>,
  store: AnalyticsStore,
  watermarks?: WatermarkLog,
): Promise<Array<{ clicks: Parameters<typeof clickDeadLetter>[0]; verdicts: Verdict[] } | { error: string }>> {
  const decoded = messages.map(readClicks);
  const { outcomes, watermarkMs } = await store.applyClicks(applicableClicks(decoded));
  if (watermarkMs !== undefined) watermarks?.record(watermarkMs, Date.now());
  let next = 0;
  return decoded.map((d) =>
    "error" in d ? d : { clicks: d.clicks, verdicts: d.checked.map((c): Verdict => ("error" in c ? { undecodable: c.error } : outcomes[next++]!)) },
  );
}

/** The effect of CLICKS messages as the consumer takes them: their clicks applied, then the windows that closed emitted. */
export async function applyAndEmit(messages: Array<{ data: Uint8Array; headers?: MsgHdrs }>, emission: EmissionOptions) {
  const verdicts = await applyClickMessages(messages, emission.store, emission.watermarks);
  await emitDue(emission, null);
  return verdicts;
}

function dispositionOf(message: Awaited<ReturnType<typeof applyClickMessages>>[number]): Disposition {
  if ("error" in message) {
    clickOutcomes.inc({ outcome: "undecodable" });
    return { kind: "dead-letter", cause: "undecodable", reason: `undecodable: ${message.error}` };
  }
  const deadLetters: ItemDeadLetter[] = [];
  message.verdicts.forEach((v, index) => {
    if (typeof v === "string") {
      clickOutcomes.inc({ outcome: v });
      if (v === "late")
        deadLetters.push(
          clickDeadLetter(message.clicks, index, {
            cause: "late",
            reason: `late: every window holding its event time ${new Date(Number(message.clicks[index]!.eventTimeMs)).toISOString()} was emitted`,
          }),
        );
    } else {
      clickOutcomes.inc({ outcome: "undecodable" });
      deadLetters.push(clickDeadLetter(message.clicks, index, { cause: "undecodable", reason: `undecodable: ${v.undecodable}` }));
    }
  });
  return { kind: "ack", deadLetters };
}

/**
 * Consumes CLICKS in stream order, one message at a time, even across crashes (a redelivery comes before anything newer): the
 * watermark then moves only as fast as the stream's own order, never past clicks a crash left unacked. Acked after the transaction
 * and the emission of the windows it closed.
 */
export function runClickConsumer(opts: {
  bus: Bus;
  /** Emission runs after each message, before its ack: state never holds more than the lateness and a window behind the watermark. */
  emission: EmissionOptions;
  postgres: DependencyHealth;
  crashAfterEffects?: CrashAfterEffects;
  signal: AbortSignal;
}) {
  const { bus } = opts;
  const { logger } = opts.emission;
  return runDurableConsumer({
    bus,
    stream: bus.topology.clicksStream,
    ...clicksConsumer,
    filterSubject: bus.topology.clicksSubjects,
    inOrder: inStreamOrder(bus),
    dependency: opts.postgres,
    concurrency: 1,
    maxBatch: 1,
    crashAfterEffects: opts.crashAfterEffects,
    logger,
    signal: opts.signal,
    async handleBatch(messages) {
      let verdicts: Awaited<ReturnType<typeof applyClickMessages>>;
      try {
        verdicts = await applyAndEmit(messages, opts.emission);
      } catch (err) {
        return messages.map((): Disposition => ({ kind: "retry", reason: `PostgreSQL: ${String(err)}` }));
      }
      return verdicts.map(dispositionOf);
    },
  });
}
