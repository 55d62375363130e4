import type { JsMsg } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import type { Logger } from "@recsys/logging";
import { withMessageSpan } from "@recsys/tracing";
import { consumedMessages, deadLetterCause, deadLettered as deadLetteredCount, watchConsumerLag } from "@recsys/metrics";
import { ensureDurableConsumer, ensureStreams, nanos, type Bus } from "./index.js";

/** What to do with a message after its effect ran. */
export type Disposition =
  | { kind: "ack" }
  /** The effect failed for a passing reason (a database down): redeliver later. */
  | { kind: "retry"; delayMs?: number; reason: string }
  /** The message can never take effect: keep it in DEAD_LETTERS with the reason, then ack. */
  | { kind: "dead-letter"; reason: string };

export interface DurableConsumerOptions {
  bus: Bus;
  stream: string;
  durable: string;
  filterSubject: string;
  /** Messages whose effects may run at once. */
  concurrency: number;
  /** The subject suffix of dead letters: dlq.<source>. */
  deadLetterSource: string;
  logger: Logger;
  signal: AbortSignal;
  /**
   * A message whose effect threw this many times is a poison message: it goes to DEAD_LETTERS so
   * the consumer keeps going. An explicit "retry" (a dependency down) is never given up. Default 10.
   */
  maxDeliveries?: number;
  handle(m: JsMsg): Promise<Disposition>;
}

export const DEFAULT_MAX_DELIVERIES = 10;
/** A pull request lives this long: a consumer that died is no longer seen waiting after it. */
export const PULL_EXPIRES_MS = 5_000;

/**
 * A fault-injection point for the fault tests: with RECSYS_CRASH_AFTER_EFFECTS=n the process kills
 * itself after the n-th effect, before that message is acked, as a crash at the worst moment would.
 */
const crashAfterEffects = Number(process.env.RECSYS_CRASH_AFTER_EFFECTS ?? 0);
let effects = 0;

/**
 * Runs a durable pull consumer until `signal` aborts. Each message is acked only after `handle`
 * returned, so a crash redelivers it: `handle` must be idempotent. A throw counts as a retry, up
 * to `maxDeliveries` deliveries; then the message is dead-lettered with the error.
 * The consumer (and its stream) are re-created on every pass, so a deleted stream heals itself.
 */
export async function runDurableConsumer(opts: DurableConsumerOptions): Promise<void> {
  const { bus, logger } = opts;
  const inFlight = new Set<Promise<void>>();
  watchConsumerLag(async () => ({ stream: opts.stream, consumer: opts.durable, ...(await consumerProgress(bus, opts.stream, opts.durable)) }));
  const count = (outcome: string) => consumedMessages.inc({ stream: opts.stream, consumer: opts.durable, outcome });
  const settle = async (m: JsMsg) => {
    let d: Disposition;
    try {
      d = await withMessageSpan(`${opts.stream} ${opts.durable}`, m.headers, async () => {
        const done = await opts.handle(m);
        logger.debug({ stream: opts.stream, consumer: opts.durable, seq: m.seq, disposition: done.kind }, "message handled");
        return done;
      });
      if (crashAfterEffects > 0 && ++effects >= crashAfterEffects) {
        logger.warn({ stream: opts.stream, seq: m.seq, effects }, "RECSYS_CRASH_AFTER_EFFECTS reached: killing this process before the ack");
        process.kill(process.pid, "SIGKILL");
      }
    } catch (err) {
      const deliveries = m.info.deliveryCount;
      d =
        deliveries >= (opts.maxDeliveries ?? DEFAULT_MAX_DELIVERIES)
          ? { kind: "dead-letter", reason: `failed ${deliveries} deliveries, last: ${String(err)}` }
          : { kind: "retry", reason: String(err) };
    }
    if (d.kind === "retry") {
      logger.warn({ stream: opts.stream, seq: m.seq, reason: d.reason }, "message not applied, will be redelivered");
      m.nak(d.delayMs ?? 1_000);
      count("retry");
      return;
    }
    if (d.kind === "dead-letter") {
      try {
        await deadLetter(bus, m, opts.stream, opts.deadLetterSource, d.reason);
      } catch (err) {
        m.nak(1_000);
        count("retry");
        logger.warn({ err: String(err), seq: m.seq }, "dead letter not stored, will be redelivered");
        return;
      }
      deadLetteredCount.inc({ source: opts.deadLetterSource, cause: deadLetterCause(d.reason) });
      logger.warn({ stream: opts.stream, seq: m.seq, reason: d.reason }, "message dead-lettered");
    }
    m.ack();
    count(d.kind === "dead-letter" ? "dead_letter" : "ack");
  };

  while (!opts.signal.aborted) {
    let messages;
    try {
      await ensureStreams(bus.jsm, bus.topology);
      await ensureDurableConsumer(bus.jsm, opts.stream, {
        durable_name: opts.durable,
        filter_subject: opts.filterSubject,
        max_ack_pending: 4 * opts.concurrency,
        ack_wait: nanos(bus.ackWaitMs),
      });
      const consumer = await bus.js.consumers.get(opts.stream, opts.durable);
      messages = await consumer.consume({ max_messages: 2 * opts.concurrency, expires: PULL_EXPIRES_MS, abort_on_missing_resource: true });
    } catch (err) {
      logger.warn({ err: String(err), stream: opts.stream }, "cannot open the consumer, retrying");
      await sleep(1_000);
      continue;
    }
    const stop = () => messages.stop();
    opts.signal.addEventListener("abort", stop, { once: true });
    try {
      for await (const m of messages) {
        const p = settle(m);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        if (inFlight.size >= opts.concurrency) await Promise.race(inFlight);
      }
    } catch (err) {
      logger.warn({ err: String(err), stream: opts.stream }, "consumer interrupted, resuming");
      await sleep(1_000);
    } finally {
      opts.signal.removeEventListener("abort", stop);
    }
  }
  await Promise.all(inFlight);
}

/** Keeps a message we could not apply in DEAD_LETTERS, with why, instead of dropping it. */
export async function deadLetter(bus: Bus, m: JsMsg, stream: string, source: string, reason: string): Promise<void> {
  const h = headers();
  h.set("recsys-reason", reason);
  h.set("recsys-source-stream", stream);
  h.set("recsys-source-sequence", String(m.seq));
  await bus.publish(bus.topology.deadLetterSubject(source), m.data, { headers: h, msgID: `${source}-${m.seq}` });
}

/** Where a durable consumer stands: every message up to `ackFloor` is done. */
export async function consumerProgress(bus: Bus, stream: string, durable: string) {
  const info = await bus.jsm.consumers.info(stream, durable);
  return { ackFloor: BigInt(info.ack_floor.stream_seq), pending: BigInt(info.num_pending), ackPending: BigInt(info.num_ack_pending) };
}

/** How many messages were dead-lettered from one source. */
export async function deadLettered(bus: Bus, source: string): Promise<bigint> {
  const subject = bus.topology.deadLetterSubject(source);
  const info = await bus.jsm.streams.info(bus.topology.deadLetterStream, { subjects_filter: subject });
  return BigInt(info.state.subjects?.[subject] ?? 0);
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}
