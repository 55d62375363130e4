import { setTimeout as sleep } from "node:timers/promises";
import { AckPolicy, DeliverPolicy, type Consumer, type ConsumerConfig, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import type { Logger } from "@recsys/logging";
import { withBatchSpan } from "@recsys/tracing";
import { consumedMessages, deadLettered as deadLetteredCount, watchConsumerLag, type DependencyHealth } from "@recsys/metrics";
import { DEFAULT_ACK_WAIT_MS, type Bus } from "./connection.js";
import { deadLetter, deadLetterItem, type DeadLetterWhy, type ItemDeadLetter } from "./dead-letters.js";
import { isNotFound } from "./jetstream-errors.js";
import { ensureStreams } from "./topology.js";

/** What to do with a message after its effect ran. */
export type Disposition =
  /** Done; items of it that could not take effect are kept in DEAD_LETTERS first. */
  | { kind: "ack"; deadLetters?: ItemDeadLetter[] }
  /** The effect failed for a passing reason (a database down): redeliver later. */
  | { kind: "retry"; delayMs?: number; reason: string }
  /** The message can never take effect: keep it in DEAD_LETTERS with why, then ack. */
  | ({ kind: "dead-letter" } & DeadLetterWhy);

interface CommonOptions {
  bus: Bus;
  stream: string;
  durable: string;
  filterSubject: string;
  /** The subject suffix of dead letters: dlq.<source>. */
  deadLetterSource: string;
  logger: Logger;
  signal: AbortSignal;
  /**
   * A message whose effect threw this many times is a poison message: it goes to DEAD_LETTERS so
   * the consumer keeps going. An explicit "retry" (a dependency down) is never given up. Default 10.
   */
  maxDeliveries?: number;
  /**
   * Delivery in stream order per partition: one durable per partition subject (`<durable>-p<n>`), one message out at a time,
   * so that a redelivery (after a crash, a retry) comes before anything newer of its partition.
   */
  inOrder?: { partitions: number; subject(partition: number): string };
  /** Told of every settlement: whether the store the effects write to is failing (a retry) or working. */
  dependency?: DependencyHealth;
  /** The fault tests' crash point, shared by every consumer of the process; none by default. */
  crashAfterEffects?: CrashAfterEffects;
  /**
   * For a consumer off the latency path: a message that finds it caught up (nothing behind it in its durable) waits this long
   * before its effect runs, so that what arrives meanwhile goes with it, and the effect does not run in the same milliseconds as
   * the click's own acknowledgement and covisit's count, on the same cores. A backlog goes at once. 0 (the default): at once.
   */
  lingerMs?: number;
}

export type DurableConsumerOptions = CommonOptions &
  (
    | {
        /** Messages whose effects may run at once. */
        concurrency: number;
        handle(m: JsMsg): Promise<Disposition>;
      }
    | {
        /** Batches whose effects may run at once. */
        concurrency: number;
        /** The most messages one batch takes. */
        maxBatch: number;
        /**
         * The effect of what arrived while the previous batches ran, one disposition per message, in order.
         * A throw sends each message of the batch through alone, so that one poison message cannot hold back the others.
         */
        handleBatch(messages: JsMsg[]): Promise<Disposition[]>;
      }
  );

export const DEFAULT_MAX_DELIVERIES = 10;

/** The wait before redelivering a message that could not take effect: doubling from 0.5 s, at most 30 s. */
export function retryBackoffMs(deliveryCount: number): number {
  return Math.min(30_000, 500 * 2 ** Math.min(6, Math.max(0, deliveryCount - 1)));
}

/** The durable of one partition of an in-order consumer. */
export function partitionDurable(durable: string, partition: number): string {
  return `${durable}-p${partition}`;
}

/** The durables a consumer runs with these options, and the subject each takes. */
export function durablesOf(opts: { durable: string; filterSubject: string; inOrder?: { partitions: number; subject(p: number): string } }) {
  if (!opts.inOrder) return [{ durable: opts.durable, filterSubject: opts.filterSubject }];
  return Array.from({ length: opts.inOrder.partitions }, (_, p) => ({ durable: partitionDurable(opts.durable, p), filterSubject: opts.inOrder!.subject(p) }));
}
/** A pull request lives this long: a consumer that died is no longer seen waiting after it. */
export const PULL_EXPIRES_MS = 5_000;

export class ConsumerRunningError extends Error {}

/**
 * The consumers of `stream` that `ours` names, once none of them has a pull request waiting (within `waitMs`): a running process
 * always has one, a stopped or crashed one's expire within PULL_EXPIRES_MS. Throws ConsumerRunningError naming `who` otherwise.
 */
export async function idleConsumers(bus: Bus, stream: string, ours: (name: string) => boolean, who: string, waitMs = 2 * PULL_EXPIRES_MS) {
  const infos = async () => {
    try {
      return (await bus.jsm.consumers.list(stream).next()).filter((c) => ours(c.name));
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  };
  const waiting = (cs: Array<{ num_waiting: number }>) => cs.reduce((n, c) => n + c.num_waiting, 0);
  let consumers = await infos();
  const deadline = Date.now() + waitMs;
  while (waiting(consumers) > 0 && Date.now() < deadline) {
    await sleep(250);
    consumers = await infos();
  }
  if (waiting(consumers) > 0) throw new ConsumerRunningError(`${who} is consuming ${stream} (${waiting(consumers)} pulls waiting): stop every ${who} first`);
  return consumers;
}

/** The sequence of the first message a stream holds: after its last one when it holds none (JetStream reports 0 for a new stream). */
export function firstHeldSequence(state: { messages: number; first_seq: number; last_seq: number }): number {
  return state.messages === 0 ? state.last_seq + 1 : state.first_seq;
}

/**
 * The first sequence `stream` holds when its retention (or a purge) took the messages before it and none of `durables` exists yet:
 * a consumer created now would begin there, without them. undefined while the stream holds its first message, or a durable exists.
 */
export async function headGoneBeforeConsumer(bus: Bus, stream: string, durables: string[]): Promise<number | undefined> {
  const firstSeq = firstHeldSequence((await bus.jsm.streams.info(stream)).state);
  if (firstSeq <= 1) return undefined;
  for (const durable of durables) {
    try {
      await bus.jsm.consumers.info(stream, durable);
      return undefined;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }
  return firstSeq;
}

/**
 * Logs where a durable not made yet will start on a stream whose retention took its first messages (see headGoneBeforeConsumer):
 * for a service with no rebuild from the archive, which starts rather than refuse. `age` names the setting, `what` what starts there.
 */
export async function warnIfHeadGone(bus: Bus, logger: Logger, stream: string, durable: string, age: string, what: string): Promise<void> {
  const firstHeld = await headGoneBeforeConsumer(bus, stream, [durable]);
  if (firstHeld !== undefined)
    logger.warn({ stream, firstSeq: firstHeld }, `${stream} no longer holds its messages 1-${firstHeld - 1} (${age}): ${what} from ${firstHeld} on`);
}

/**
 * The fault tests' crash point: the process kills itself after the effect of its n-th message's batch, before the ack (the worst moment).
 * One per process: its consumers count their effects together.
 */
export class CrashAfterEffects {
  private effects = 0;

  /** `after` 0 never crashes. */
  constructor(private readonly after: number) {}

  /** Counts the effects of `messages` that just ran, and crashes once there were `after` of them. */
  ran(messages: number, logger: Logger, stream: string): void {
    this.effects += messages;
    if (this.after > 0 && this.effects >= this.after) {
      logger.warn({ stream, effects: this.effects }, "RECSYS_CRASH_AFTER_EFFECTS reached: killing this process before the ack");
      process.kill(process.pid, "SIGKILL");
    }
  }
}

/**
 * Runs a durable pull consumer until `signal` aborts; a message is acked only after its effect returned, so effects must be idempotent.
 * The consumer (and its stream) are re-created on every pass, so a deleted stream heals itself.
 */
export async function runDurableConsumer(opts: DurableConsumerOptions): Promise<void> {
  const { bus, logger } = opts;
  const batched = "handleBatch" in opts;
  const maxBatch = batched ? opts.maxBatch : 1;
  const handleBatch = batched ? (messages: JsMsg[]) => opts.handleBatch(messages) : async (messages: JsMsg[]) => [await opts.handle(messages[0]!)];
  const maxDeliveries = opts.maxDeliveries ?? DEFAULT_MAX_DELIVERIES;
  const spanName = `${opts.stream} ${opts.durable}`;
  const debug = logger.isLevelEnabled("debug");
  const durables = durablesOf(opts);
  watchConsumerLag(async () => ({
    stream: opts.stream,
    consumer: opts.durable,
    ...(await consumerProgress(
      bus,
      opts.stream,
      durables.map((d) => d.durable),
    )),
  }));
  const count = (outcome: string) => consumedMessages.inc({ stream: opts.stream, consumer: opts.durable, outcome });

  /** The batch's effect, in one span; the error when it threw (each message then goes alone). */
  const effectOf = async (batch: JsMsg[]): Promise<Disposition[] | Error> => {
    try {
      return await withBatchSpan(
        spanName,
        batch.map((m) => m.headers),
        async (traceIds) => {
          const done = await handleBatch(batch);
          if (done.length !== batch.length) throw new Error(`${batch.length} messages, ${done.length} dispositions`);
          if (debug) {
            // The message's own trace id wins over the batch span's, so each line follows its click.
            batch.forEach((m, i) =>
              logger.debug(
                {
                  stream: opts.stream,
                  consumer: opts.durable,
                  seq: m.seq,
                  disposition: done[i]!.kind,
                  batch: batch.length,
                  ...(traceIds[i] ? { trace_id: traceIds[i] } : {}),
                },
                "message handled",
              ),
            );
          }
          return done;
        },
      );
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  };

  const settle = async (m: JsMsg, d: Disposition) => {
    if (d.kind === "retry") {
      const delayMs = d.delayMs ?? retryBackoffMs(m.info.deliveryCount);
      logger.warn({ stream: opts.stream, seq: m.seq, reason: d.reason, deliveries: m.info.deliveryCount, delayMs }, "message not applied, will be redelivered");
      opts.dependency?.failed(d.reason);
      m.nak(delayMs);
      count("retry");
      return;
    }
    // An applied message is a write that worked; a dead letter (an undecodable message) may not have
    // reached the store at all, so it says nothing about whether the store is back.
    if (d.kind === "ack") opts.dependency?.recovered();
    const letters: Array<DeadLetterWhy | ItemDeadLetter> = d.kind === "dead-letter" ? [{ cause: d.cause, reason: d.reason }] : (d.deadLetters ?? []);
    if (letters.length > 0) {
      try {
        if (d.kind === "dead-letter") await deadLetter(bus, m, opts.stream, opts.deadLetterSource, d);
        else await Promise.all(d.deadLetters!.map((item) => deadLetterItem(bus, m, opts.stream, opts.deadLetterSource, item)));
      } catch (err) {
        m.nak(retryBackoffMs(m.info.deliveryCount));
        count("retry");
        logger.warn({ err: String(err), seq: m.seq }, "dead letter not stored, will be redelivered");
        return;
      }
      for (const l of letters) {
        deadLetteredCount.inc({ source: opts.deadLetterSource, cause: l.cause });
        logger.warn({ stream: opts.stream, seq: m.seq, reason: l.reason, ...("index" in l ? { item: l.index } : {}) }, "dead-lettered");
      }
    }
    m.ack();
    count(d.kind === "dead-letter" ? "dead_letter" : "ack");
  };

  const run = async (batch: JsMsg[]) => {
    const done = await effectOf(batch);
    if (!(done instanceof Error)) {
      opts.crashAfterEffects?.ran(batch.length, logger, opts.stream);
      await Promise.all(batch.map((m, i) => settle(m, done[i]!)));
      return;
    }
    if (batch.length > 1) {
      // Which message made the batch throw is unknown: each goes again alone (effects are idempotent).
      logger.warn({ stream: opts.stream, err: String(done), batch: batch.length }, "batch failed, applying its messages one by one");
      for (const m of batch) await run([m]);
      return;
    }
    const m = batch[0]!;
    const deliveries = m.info.deliveryCount;
    await settle(
      m,
      deliveries >= maxDeliveries
        ? { kind: "dead-letter", cause: "poison", reason: `failed ${deliveries} deliveries, last: ${String(done)}` }
        : { kind: "retry", reason: String(done) },
    );
  };

  // Messages wait here until a worker is free; a free worker takes up to maxBatch of them at once.
  const waiting: JsMsg[] = [];
  const running = new Set<Promise<void>>();
  // Workers start on the next turn of the event loop ("soon"), so that messages already received go together, or after the
  // linger ("later") when the consumer had caught up.
  let scheduled: "no" | "soon" | "later" = "no";
  let lingering: NodeJS.Timeout | undefined;
  const lingerMs = opts.lingerMs ?? 0;
  const schedule = (m: JsMsg) => {
    if (lingerMs > 0 && m.info.pending === 0) {
      if (scheduled === "no") {
        scheduled = "later";
        lingering = setTimeout(startWorkers, lingerMs);
      }
      return;
    }
    if (scheduled === "soon") return;
    clearTimeout(lingering);
    scheduled = "soon";
    setImmediate(startWorkers);
  };
  const startWorkers = () => {
    scheduled = "no";
    clearTimeout(lingering);
    while (waiting.length > 0 && running.size < opts.concurrency) {
      const p: Promise<void> = run(waiting.splice(0, maxBatch)).finally(() => {
        running.delete(p);
        startWorkers();
      });
      running.add(p);
    }
  };

  const consumeFrom = async ({ durable, filterSubject }: { durable: string; filterSubject: string }) => {
    while (!opts.signal.aborted) {
      let messages: Awaited<ReturnType<Consumer["consume"]>>;
      try {
        await ensureStreams(bus.jsm, bus.topology);
        await ensureDurableConsumer(bus.jsm, opts.stream, {
          durable_name: durable,
          filter_subject: filterSubject,
          max_ack_pending: opts.inOrder ? 1 : 4 * opts.concurrency * maxBatch,
          ack_wait: nanos(bus.ackWaitMs),
        });
        const consumer = await bus.js.consumers.get(opts.stream, durable);
        messages = await consumer.consume({
          max_messages: opts.inOrder ? 2 : 2 * opts.concurrency * maxBatch,
          expires: PULL_EXPIRES_MS,
          abort_on_missing_resource: true,
        });
      } catch (err) {
        logger.warn({ err: String(err), stream: opts.stream, durable }, "cannot open the consumer, retrying");
        await sleep(1_000);
        continue;
      }
      const stop = () => messages.stop();
      opts.signal.addEventListener("abort", stop, { once: true });
      try {
        for await (const m of messages) {
          waiting.push(m);
          schedule(m);
          // Enough for every worker's next batch: wait for one to finish before taking more.
          while (waiting.length >= opts.concurrency * maxBatch && running.size > 0) await Promise.race(running);
        }
      } catch (err) {
        logger.warn({ err: String(err), stream: opts.stream, durable }, "consumer interrupted, resuming");
        await sleep(1_000);
      } finally {
        opts.signal.removeEventListener("abort", stop);
      }
    }
  };
  await Promise.all(durables.map(consumeFrom));
  while (waiting.length > 0 || running.size > 0) {
    startWorkers();
    await Promise.all(running);
  }
}

/**
 * Where a consumer stands: every message up to `ackFloor` is done; for an in-order consumer, the least of its durables' floors,
 * a durable with nothing pending or unacked counting as done up to the stream's last message as it was before any durable was read.
 */
export async function consumerProgress(bus: Bus, stream: string, durable: string | string[]) {
  const names = typeof durable === "string" ? [durable] : durable;
  const last = names.length > 1 ? BigInt((await bus.jsm.streams.info(stream)).state.last_seq) : 0n;
  const infos = await Promise.all(names.map((d) => bus.jsm.consumers.info(stream, d)));
  let ackFloor: bigint | undefined;
  let pending = 0n;
  let ackPending = 0n;
  for (const info of infos) {
    const idle = names.length > 1 && info.num_pending === 0 && info.num_ack_pending === 0;
    // With nothing awaiting its ack, a consumer has handled all it was delivered; one created to start at a sequence (after a
    // rebuild) reports its ack floor as 0 until it acks a message, though it was never to take those before it.
    const handled = info.num_ack_pending === 0 ? Math.max(info.ack_floor.stream_seq, info.delivered.stream_seq) : info.ack_floor.stream_seq;
    const floor = idle ? last : BigInt(handled);
    ackFloor = ackFloor === undefined || floor < ackFloor ? floor : ackFloor;
    pending += BigInt(info.num_pending);
    ackPending += BigInt(info.num_ack_pending);
  }
  return { ackFloor: ackFloor ?? 0n, pending, ackPending };
}

/** A durable pull consumer with explicit acks, created or updated idempotently. */
export async function ensureDurableConsumer(jsm: JetStreamManager, stream: string, cfg: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
  const full: Partial<ConsumerConfig> = {
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(DEFAULT_ACK_WAIT_MS),
    ...cfg,
  };
  try {
    await jsm.consumers.info(stream, cfg.durable_name);
    // Where delivery starts is fixed at creation (a consumer may start past a sequence); the rest follows cfg.
    const { deliver_policy: _policy, opt_start_seq: _start, ...changeable } = full;
    await jsm.consumers.update(stream, cfg.durable_name, changeable);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.consumers.add(stream, full);
  }
}

/** Whether a NATS subject falls under a filter (`*` one token, `>` the rest). */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const t = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return t.length > i;
    if (i >= t.length || (f[i] !== "*" && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/**
 * Waits until every consumer of `durables` on `stream` that takes `subject` has applied the message at `seq` (acked it), for at most
 * `timeoutMs`; answers the durables that had not. A durable is found by its name or as partition durables (`<name>-p<n>`, partitionDurable);
 * one that does not exist (its service not deployed) is not waited for.
 */
export async function waitApplied(bus: Bus, stream: string, seq: number, subject: string, durables: string[], timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  const baseOf = (name: string) => durables.find((d) => name === d || (name.startsWith(`${d}-p`) && /^\d+$/.test(name.slice(d.length + 2))));
  const consumers = (await bus.jsm.consumers.list(stream).next())
    .filter((c) => baseOf(c.name) !== undefined)
    .filter((c) => {
      const filters = c.config.filter_subjects ?? (c.config.filter_subject ? [c.config.filter_subject] : []);
      return filters.length === 0 || filters.some((f) => subjectMatches(f, subject));
    })
    .map((c) => c.name);
  const applied = async (name: string) => {
    try {
      const info = await bus.jsm.consumers.info(stream, name);
      return info.ack_floor.stream_seq >= seq;
    } catch (err) {
      if (isNotFound(err)) return true;
      throw err;
    }
  };
  let waiting = consumers;
  for (;;) {
    const done = await Promise.all(waiting.map(applied));
    waiting = waiting.filter((_, i) => !done[i]);
    if (waiting.length === 0 || Date.now() >= deadline) return [...new Set(waiting.map((n) => baseOf(n)!))];
    await sleep(Math.min(10, Math.max(0, deadline - Date.now())));
  }
}
