import { applicableClicks, clickDeadLetter, JetStreamApiError, readClicks, runDurableConsumer, type Bus, type Click, type Disposition, type ItemDeadLetter, type MsgHdrs } from "@recsys/bus";
import type { Logger } from "@recsys/logging";
import { Counter, registry } from "@recsys/metrics";
import { DEFAULT_MAX_BATCH, type ApplyOutcome, type CovisitStore } from "./redis-store.js";

export const DURABLE = "covisit";
export const DEAD_LETTER_SOURCE = "clicks";

/** What became of one click of a CLICKS message. */
export type ClickVerdict = ApplyOutcome | { status: "undecodable"; error: string };

/** A message's clicks, each with its verdict, or why the message cannot be read at all. */
export type MessageVerdict = { clicks: Click[]; verdicts: ClickVerdict[] } | { error: string };

/**
 * The effect of CLICKS messages, without NATS: every readable click of every message goes to
 * Redis, in order, `clicksPerScript` to one atomic script (Redis runs nothing else while a script
 * runs, so a script's size bounds how long a Recommendation may wait behind it). The scripts are
 * sent before the first wait: whatever the caller starts next reaches Redis after them.
 */
export async function applyClickMessages(messages: Array<{ data: Uint8Array; headers?: MsgHdrs }>, store: CovisitStore, clicksPerScript = DEFAULT_MAX_BATCH): Promise<MessageVerdict[]> {
  const decoded = messages.map(readClicks);
  const toApply = applicableClicks(decoded);
  // Every script goes out now, before this function first waits: batches taken one after the other
  // reach Redis in that order, so a user's clicks are applied in stream order (a later click first
  // would make the earlier one late).
  const scripts: Array<Promise<ApplyOutcome[]>> = [];
  for (let k = 0; k < toApply.length; k += clicksPerScript) scripts.push(store.applyClicks(toApply.slice(k, k + clicksPerScript)));
  const outcomes = (await Promise.all(scripts)).flat();
  let next = 0;
  return decoded.map((d) =>
    "error" in d ? d : { clicks: d.clicks, verdicts: d.checked.map((c): ClickVerdict => ("error" in c ? { status: "undecodable", error: c.error } : outcomes[next++]!)) },
  );
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

/** The settlement of one message from its clicks' verdicts, counted: late and unreadable clicks are dead-lettered alone. */
function dispositionOf(message: MessageVerdict, stats: ConsumerStats): Disposition {
  if ("error" in message) {
    clickOutcomes.inc({ outcome: "undecodable" });
    stats.undecodable++;
    return { kind: "dead-letter", reason: `undecodable: ${message.error}` };
  }
  const { clicks, verdicts } = message;
  // Left in the stream, unacked: a rebuild applies it with everything before it.
  if (verdicts.some((v) => v.status === "lost")) {
    clickOutcomes.inc({ outcome: "lost" }, verdicts.length);
    return { kind: "retry", delayMs: 5_000, reason: "Redis lost the co-visit counts: run pnpm covisit:rebuild" };
  }
  const deadLetters: ItemDeadLetter[] = [];
  verdicts.forEach((v, index) => {
    clickOutcomes.inc({ outcome: v.status });
    const letter = (reason: string) => deadLetters.push(clickDeadLetter(clicks, index, reason));
    switch (v.status) {
      case "applied":
        stats.applied++;
        break;
      case "duplicate":
        stats.duplicates++;
        break;
      case "late":
        stats.late++;
        letter(`late: watermark ${new Date(v.watermarkMs).toISOString()}`);
        break;
      case "undecodable":
        stats.undecodable++;
        letter(`undecodable: ${v.error}`);
        break;
    }
  });
  return { kind: "ack", deadLetters };
}

/**
 * Consumes CLICKS with a durable consumer shared by every covisit replica, in batches: the clicks
 * of what arrived while the previous batches ran, up to `maxBatch` messages, go to Redis in atomic
 * scripts of up to `maxBatch` clicks. Messages are acked only after their scripts ran (and their
 * late clicks were dead-lettered), so a crash redelivers them and the script's event_id check makes
 * the redelivery harmless. A Redis error leaves the batch for redelivery.
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
      return (await applyClickMessages(ms, store, opts.maxBatch)).map((v) => dispositionOf(v, stats));
    },
  });
}
