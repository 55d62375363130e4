import { setTimeout as sleep } from "node:timers/promises";
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
  type ClickToApply,
  type ReadClicks,
} from "@recsys/bus";
import { isDataError } from "@recsys/postgres";
import { Counter, registry, type DependencyHealth } from "@recsys/metrics";
import type { AnalyticsStore, ClickOutcome } from "./store.js";
import { clicksConsumer, inStreamOrder } from "./durable.js";
import { emitDue, type EmissionOptions } from "./emitter.js";
import type { WatermarkLog } from "./watermark-log.js";

const clickOutcomes = new Counter({
  name: "recsys_analytics_clicks_total",
  help: "Clicks analytics took from CLICKS, by outcome: applied (counted in its pane), duplicate, late (every window holding it was emitted: dead-lettered), undecodable, refused (a value PostgreSQL can never store: dead-lettered)",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

const erasures = new Counter({
  name: "recsys_analytics_erasures_total",
  help: "Users erased (UserDeleted on CLICKS): their rows forgotten by ClickMetrics, their clicks kept in the aggregates only",
  registers: [registry],
});

type Verdict = ClickOutcome | { undecodable: string } | { refused: string };
type MessageVerdicts = { clicks: Parameters<typeof clickDeadLetter>[0]; verdicts: Verdict[] } | { erased: string } | { error: string };

/**
 * How an erasure meets publication. The service waits (up to `waitPublishedMs`, then throws so the message is redelivered) until
 * every emitted window is on CLICK_METRICS before changing rows; a rebuild publishes nothing while it applies, and passes none.
 */
export interface ErasureOptions {
  waitPublishedMs?: number;
}

export class PublicationBehindError extends Error {}

const isErasure = (d: ReadClicks) => !("error" in d) && d.deletion !== undefined;

async function erase(store: AnalyticsStore, userid: string, opts: ErasureOptions): Promise<void> {
  const deadline = Date.now() + (opts.waitPublishedMs ?? 0);
  while (!(await store.eraseUser(userid, opts.waitPublishedMs !== undefined))) {
    if (Date.now() >= deadline)
      throw new PublicationBehindError(`emitted windows not yet on CLICK_METRICS after ${opts.waitPublishedMs} ms: the erasure of a user waits for them`);
    await sleep(25);
  }
  erasures.inc();
}

/**
 * A run's clicks in one transaction. When PostgreSQL refuses a value it can never store (a url from before validation bounded its
 * bytes, say), retrying would hold the partition behind it for good: the run's clicks are then applied one at a time, in order,
 * and only those refused are, each its own verdict. A crash between them redelivers the message, whose applied clicks are then
 * duplicates.
 */
async function applyRun(store: AnalyticsStore, clicks: ClickToApply[]): Promise<{ outcomes: Array<ClickOutcome | { refused: string }>; watermarkMs?: number }> {
  try {
    return await store.applyClicks(clicks);
  } catch (err) {
    if (!isDataError(err) || clicks.length === 0) throw err;
  }
  const outcomes: Array<ClickOutcome | { refused: string }> = [];
  let watermarkMs: number | undefined;
  for (const click of clicks) {
    try {
      const one = await store.applyClicks([click]);
      outcomes.push(one.outcomes[0]!);
      watermarkMs = one.watermarkMs ?? watermarkMs;
    } catch (err) {
      if (!isDataError(err)) throw err;
      outcomes.push({ refused: `refused by PostgreSQL: ${String(err)}` });
    }
  }
  return { outcomes, watermarkMs };
}

/**
 * The effect of CLICKS messages, without NATS, in stream order: the readable clicks of consecutive click messages in one
 * transaction, an erasure (UserDeleted) in its own between them; one verdict list per message (or the user erased, or why it
 * cannot be read).
 */
export async function applyClickMessages(
  messages: Array<{ data: Uint8Array; headers?: MsgHdrs }>,
  store: AnalyticsStore,
  watermarks?: WatermarkLog,
  erasure: ErasureOptions = {},
): Promise<MessageVerdicts[]> {
  const decoded = messages.map(readClicks);
  const results: MessageVerdicts[] = [];
  for (let i = 0; i < decoded.length; ) {
    const d = decoded[i]!;
    if (!("error" in d) && d.deletion) {
      await erase(store, d.deletion.userid, erasure);
      results.push({ erased: d.deletion.userid });
      i++;
      continue;
    }
    let end = i;
    while (end < decoded.length && !isErasure(decoded[end]!)) end++;
    const run = decoded.slice(i, end);
    const { outcomes, watermarkMs } = await applyRun(store, applicableClicks(run));
    if (watermarkMs !== undefined) watermarks?.record(watermarkMs, Date.now());
    let next = 0;
    for (const r of run)
      results.push(
        "error" in r ? r : { clicks: r.clicks, verdicts: r.checked.map((c): Verdict => ("error" in c ? { undecodable: c.error } : outcomes[next++]!)) },
      );
    i = end;
  }
  return results;
}

/** The effect of CLICKS messages as the consumer takes them: their clicks applied (users erased), then the windows that closed emitted. */
export async function applyAndEmit(messages: Array<{ data: Uint8Array; headers?: MsgHdrs }>, emission: EmissionOptions, erasure: ErasureOptions = {}) {
  const verdicts = await applyClickMessages(messages, emission.store, emission.watermarks, erasure);
  await emitDue(emission, null);
  return verdicts;
}

/** What becomes of a CLICKS message once applied: acked, with its late, undecodable and refused clicks dead-lettered. */
export function dispositionOf(message: MessageVerdicts): Disposition {
  if ("erased" in message) return { kind: "ack" };
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
    } else if ("refused" in v) {
      clickOutcomes.inc({ outcome: "refused" });
      deadLetters.push(clickDeadLetter(message.clicks, index, { cause: "refused", reason: v.refused }));
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
 * and the emission of the windows it closed. An erasure (UserDeleted) is applied in its place and acked, never dead-lettered.
 */
export function runClickConsumer(opts: {
  bus: Bus;
  /** Emission runs after each message, before its ack: state never holds more than the lateness and a window behind the watermark. */
  emission: EmissionOptions;
  postgres: DependencyHealth;
  crashAfterEffects?: CrashAfterEffects;
  /** How long an erasure waits for the emitted windows to be published before its message is redelivered. */
  erasureWaitMs: number;
  /** A message that finds its partition caught up waits this long before it is applied (see runDurableConsumer); 0: at once. */
  lingerMs?: number;
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
    lingerMs: opts.lingerMs,
    logger,
    signal: opts.signal,
    async handleBatch(messages) {
      let verdicts: MessageVerdicts[];
      try {
        verdicts = await applyAndEmit(messages, opts.emission, { waitPublishedMs: opts.erasureWaitMs });
      } catch (err) {
        const reason = err instanceof PublicationBehindError ? err.message : `PostgreSQL: ${String(err)}`;
        return messages.map((): Disposition => ({ kind: "retry", reason }));
      }
      return verdicts.map(dispositionOf);
    },
  });
}
