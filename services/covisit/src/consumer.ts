import { setTimeout as sleep } from "node:timers/promises";
import {
  AckPolicy,
  DeliverPolicy,
  clickDeadLetter,
  consumerNames,
  durablesOf,
  isNotFound,
  PULL_EXPIRES_MS,
  readClicks,
  runDurableConsumer,
  type Bus,
  type Click,
  type ClickToApply,
  type CrashAfterEffects,
  type DeadLetterCause,
  type Disposition,
  type ItemDeadLetter,
  type MsgHdrs,
} from "@recsys/bus";
import type { Logger } from "@recsys/logging";
import { Counter, registry, type DependencyHealth } from "@recsys/metrics";
import { COVISIT_WINDOW_IN_WORDS } from "@recsys/validation";
import { DEFAULT_MAX_BATCH, type ApplyOutcome, type CovisitStore, type EraseOutcome, type SequencedClick } from "./redis-store.js";

/** covisit's CLICKS consumer: the base of its partition durables, and the name of the single durable of earlier versions. */
export const clicksConsumer = consumerNames("covisit", "clicks");

/** What became of one click of a CLICKS message: `ignored` for an event type that is no visit (VISIT_EVENTS). */
export type ClickVerdict = ApplyOutcome | { status: "undecodable"; error: string } | { status: "ignored" };

/** A message's clicks, each with its verdict, and for a UserDeleted what its erasure did; or why the message cannot be read at all. */
export type MessageVerdict = { clicks: Click[]; verdicts: ClickVerdict[]; erasure?: EraseOutcome } | { error: string };

/**
 * The effect of CLICKS messages (with their stream sequences), without NATS: their readable clicks go to Redis in order,
 * `clicksPerScript` to an atomic script, and a UserDeleted's erasure runs after the clicks before it and before those after it.
 * A failed script stops the rest: a user's later clicks applied while earlier ones wait for a retry would make those late.
 * The rebuild applies archived messages through here too, so an erasure takes effect at its place in both.
 */
export async function applyClickMessages(
  messages: Array<{ seq: number; data: Uint8Array; headers?: MsgHdrs }>,
  store: CovisitStore,
  clicksPerScript = DEFAULT_MAX_BATCH,
  isVisit: (event: string) => boolean = () => true,
): Promise<MessageVerdict[]> {
  const decoded = messages.map(readClicks);
  const outcomes: ApplyOutcome[] = [];
  const erasures = new Map<number, EraseOutcome>();
  let waiting: SequencedClick[] = [];
  const applyWaiting = async () => {
    for (let k = 0; k < waiting.length; k += clicksPerScript) outcomes.push(...(await store.applyClicks(waiting.slice(k, k + clicksPerScript))));
    waiting = [];
  };
  for (const [i, d] of decoded.entries()) {
    if ("error" in d) continue;
    const streamSeq = messages[i]!.seq;
    if (d.deletion) {
      await applyWaiting();
      erasures.set(i, await store.forgetUser(d.deletion.userid, streamSeq));
      continue;
    }
    for (const c of d.checked) if (!("error" in c) && isVisit(c.event)) waiting.push({ ...c, streamSeq });
  }
  await applyWaiting();
  let next = 0;
  const verdictOf = (c: ClickToApply | { error: string }): ClickVerdict => {
    if ("error" in c) return { status: "undecodable", error: c.error };
    return isVisit(c.event) ? outcomes[next++]! : { status: "ignored" };
  };
  return decoded.map((d, i) => {
    if ("error" in d) return d;
    const erasure = erasures.get(i);
    return { clicks: d.clicks, verdicts: d.checked.map(verdictOf), ...(erasure ? { erasure } : {}) };
  });
}

const clickOutcomes = new Counter({
  name: "recsys_covisit_clicks_total",
  help: "Clicks this process took from CLICKS, by outcome: applied, duplicate, late and budget (dead-lettered: too late to pair exactly, over the user's click budget), lost (Redis lost the counts), erased (a redelivered click of an erased user), undecodable, ignored (not a visit)",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

const erasureOutcomes = new Counter({
  name: "recsys_covisit_erasures_total",
  help: "UserDeleted messages this process took from CLICKS, by outcome: erased, duplicate (an erasure at that sequence or later was applied), lost (Redis lost the counts)",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

/** The durables covisit consumes CLICKS with: one per partition, each in stream order. */
export function clickDurables(bus: Bus, partitions: number) {
  return durablesOf({
    durable: clicksConsumer.durable,
    filterSubject: bus.topology.clicksSubjects,
    inOrder: { partitions, subject: (p) => bus.topology.clicksSubject(p) },
  });
}

async function consumerInfo(bus: Bus, durable: string) {
  try {
    return await bus.jsm.consumers.info(bus.topology.clicksStream, durable);
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Whether any of covisit's durables (or the single one of earlier versions) ever delivered a click: if not, the counts start now. */
export async function consumerNeverDelivered(bus: Bus, partitions: number): Promise<boolean> {
  const infos = await Promise.all([clicksConsumer.durable, ...clickDurables(bus, partitions).map((d) => d.durable)].map((d) => consumerInfo(bus, d)));
  return infos.every((info) => !info || info.delivered.stream_seq === 0);
}

/**
 * Replaces the single durable `covisit` of earlier versions with partition durables that start after its ack floor.
 * Every covisit of the earlier version must be stopped first, as for a rebuild.
 */
export async function adoptSingleDurable(bus: Bus, partitions: number, logger: Logger, waitMs = 2 * PULL_EXPIRES_MS): Promise<void> {
  let single = await consumerInfo(bus, clicksConsumer.durable);
  if (!single) return;
  // A covisit of the earlier version still pulling would recreate its durable after we delete it
  // and count every click again with its own script: wait for it to stop, else refuse to start.
  const deadline = Date.now() + waitMs;
  while (single && single.num_waiting > 0 && Date.now() < deadline) {
    await sleep(250);
    single = await consumerInfo(bus, clicksConsumer.durable);
  }
  if (!single) return;
  if (single.num_waiting > 0)
    throw new Error(
      `a covisit of an earlier version is consuming ${bus.topology.clicksStream} with the durable ${clicksConsumer.durable}: stop every covisit of that version first`,
    );
  const floor = single.ack_floor.stream_seq;
  for (const { durable, filterSubject } of clickDurables(bus, partitions)) {
    if (await consumerInfo(bus, durable)) continue;
    await bus.jsm.consumers.add(bus.topology.clicksStream, {
      durable_name: durable,
      filter_subject: filterSubject,
      ack_policy: AckPolicy.Explicit,
      ...(floor > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 } : { deliver_policy: DeliverPolicy.All }),
    });
  }
  await bus.jsm.consumers.delete(bus.topology.clicksStream, clicksConsumer.durable);
  logger.warn({ ackFloor: floor, partitions }, `CLICKS consumer ${clicksConsumer.durable} replaced by one durable per partition, starting after its ack floor`);
}

export interface ConsumerStats {
  applied: number;
  duplicates: number;
  /** Users forgotten (UserDeleted applied). */
  erasures: number;
  late: number;
  overBudget: number;
  undecodable: number;
}

/** The settlement of one message from its clicks' verdicts, counted: late and unreadable clicks are dead-lettered alone. */
function dispositionOf(message: MessageVerdict, stats: ConsumerStats): Disposition {
  if ("error" in message) {
    clickOutcomes.inc({ outcome: "undecodable" });
    stats.undecodable++;
    return { kind: "dead-letter", cause: "undecodable", reason: `undecodable: ${message.error}` };
  }
  const { clicks, verdicts, erasure } = message;
  if (erasure) erasureOutcomes.inc({ outcome: erasure });
  if (erasure === "erased") stats.erasures++;
  // Left in the stream, unacked: a rebuild applies it with everything before it.
  if (erasure === "lost" || verdicts.some((v) => v.status === "lost")) {
    clickOutcomes.inc({ outcome: "lost" }, verdicts.length);
    return { kind: "retry", delayMs: 5_000, reason: "Redis lost the co-visit counts: run pnpm covisit:rebuild" };
  }
  const deadLetters: ItemDeadLetter[] = [];
  verdicts.forEach((v, index) => {
    clickOutcomes.inc({ outcome: v.status });
    const letter = (cause: DeadLetterCause, reason: string) => deadLetters.push(clickDeadLetter(clicks, index, { cause, reason }));
    switch (v.status) {
      case "applied":
        stats.applied++;
        break;
      case "duplicate":
        stats.duplicates++;
        break;
      case "late":
        stats.late++;
        letter("late", `late: watermark ${new Date(v.watermarkMs).toISOString()}`);
        break;
      case "budget":
        stats.overBudget++;
        letter("budget", `budget: the user has ${v.near} clicks within ${COVISIT_WINDOW_IN_WORDS} of this one`);
        break;
      case "undecodable":
        stats.undecodable++;
        letter("undecodable", `undecodable: ${v.error}`);
        break;
    }
  });
  return { kind: "ack", deadLetters };
}

/**
 * Consumes CLICKS with one durable per partition, one message out at a time, so a user's clicks reach Redis in stream order even across crashes.
 * Acked only after their scripts ran; a Redis error waits for redelivery as long as it lasts, never in DEAD_LETTERS (see the README).
 */
export function runClickConsumer(opts: {
  bus: Bus;
  store: CovisitStore;
  redis: DependencyHealth;
  logger: Logger;
  partitions: number;
  concurrency: number;
  maxBatch: number;
  stats: ConsumerStats;
  /** Which event types count (VISIT_EVENTS); the others are acked without effect. */
  isVisit: (event: string) => boolean;
  crashAfterEffects?: CrashAfterEffects;
  signal: AbortSignal;
}) {
  const { store, stats, bus } = opts;
  return runDurableConsumer({
    bus,
    stream: bus.topology.clicksStream,
    ...clicksConsumer,
    filterSubject: bus.topology.clicksSubjects,
    inOrder: { partitions: opts.partitions, subject: (p) => bus.topology.clicksSubject(p) },
    dependency: opts.redis,
    concurrency: opts.concurrency,
    maxBatch: opts.maxBatch,
    crashAfterEffects: opts.crashAfterEffects,
    logger: opts.logger,
    signal: opts.signal,
    async handleBatch(messages) {
      let verdicts: MessageVerdict[];
      try {
        verdicts = await applyClickMessages(messages, store, opts.maxBatch, opts.isVisit);
      } catch (err) {
        return messages.map((): Disposition => ({ kind: "retry", reason: `Redis: ${String(err)}` }));
      }
      return verdicts.map((v) => dispositionOf(v, stats));
    },
  });
}
