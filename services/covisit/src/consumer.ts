import { fromBinary } from "@bufbuild/protobuf";
import { ensureDurableConsumer, ensureStreams, headers, type Bus, type JsMsg } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import type { Logger } from "@recsys/logging";
import type { ApplyOutcome, CovisitStore } from "./redis-store.js";

export const DURABLE = "covisit";

export type ClickVerdict = ApplyOutcome | { status: "undecodable"; error: string };

/** The effect of one CLICKS message, without NATS: decode, then one atomic script. */
export async function applyClickMessage(data: Uint8Array, store: CovisitStore): Promise<ClickVerdict> {
  let click;
  try {
    click = fromBinary(ClickSchema, data);
  } catch (err) {
    return { status: "undecodable", error: String(err) };
  }
  if (!click.eventId || !click.userid || !click.url) return { status: "undecodable", error: "missing event_id, userid or url" };
  return store.applyClick({ eventId: click.eventId, userid: click.userid, url: click.url, eventTimeMs: Number(click.eventTimeMs) });
}

export interface ConsumerStats {
  applied: number;
  duplicates: number;
  late: number;
  undecodable: number;
}

/**
 * Consumes CLICKS with a durable consumer shared by every covisit replica. Each message is acked
 * only after its script ran (or after it was dead-lettered), so a crash redelivers it and the
 * script's event_id check makes the redelivery harmless. Up to `concurrency` scripts are in flight.
 */
export async function runClickConsumer(opts: {
  bus: Bus;
  store: CovisitStore;
  logger: Logger;
  concurrency: number;
  stats: ConsumerStats;
  signal: AbortSignal;
}): Promise<void> {
  const { bus, store, logger, stats } = opts;
  const inFlight = new Set<Promise<void>>();
  const handle = async (m: JsMsg) => {
    let verdict: ClickVerdict;
    try {
      verdict = await applyClickMessage(m.data, store);
    } catch (err) {
      // Redis is unreachable or failing: let JetStream redeliver later rather than lose the click.
      logger.warn({ err: String(err), seq: m.seq }, "click not applied, will be redelivered");
      m.nak(1_000);
      return;
    }
    if (verdict.status === "late" || verdict.status === "undecodable") {
      await deadLetter(bus, m, verdict.status === "late" ? `late: watermark ${new Date(verdict.watermarkMs).toISOString()}` : `undecodable: ${verdict.error}`);
    }
    if (verdict.status === "applied") stats.applied++;
    else if (verdict.status === "duplicate") stats.duplicates++;
    else if (verdict.status === "late") stats.late++;
    else stats.undecodable++;
    m.ack();
  };

  while (!opts.signal.aborted) {
    let messages;
    try {
      // (Re)created on every pass: the stream or consumer may have been deleted (stack:reset).
      const consumer = await openConsumer(bus, opts.concurrency);
      messages = await consumer.consume({ max_messages: 2 * opts.concurrency, abort_on_missing_resource: true });
    } catch (err) {
      logger.warn({ err: String(err) }, "cannot open the CLICKS consumer, retrying");
      await new Promise((r) => setTimeout(r, 1_000));
      continue;
    }
    const stop = () => messages.stop();
    opts.signal.addEventListener("abort", stop, { once: true });
    try {
      for await (const m of messages) {
        const p = handle(m).catch((err: unknown) => {
          logger.error({ err: String(err), seq: m.seq }, "click handling failed");
          m.nak(1_000);
        });
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        if (inFlight.size >= opts.concurrency) await Promise.race(inFlight);
      }
    } catch (err) {
      logger.warn({ err: String(err) }, "click consumer interrupted, resuming");
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      opts.signal.removeEventListener("abort", stop);
    }
  }
  await Promise.all(inFlight);
}

async function openConsumer(bus: Bus, concurrency: number) {
  const stream = bus.topology.clicksStream;
  await ensureStreams(bus.jsm, bus.topology);
  await ensureDurableConsumer(bus.jsm, stream, {
    durable_name: DURABLE,
    filter_subject: bus.topology.clicksSubjects,
    max_ack_pending: 4 * concurrency,
  });
  return bus.js.consumers.get(stream, DURABLE);
}

/** Keeps a click we could not count in DEAD_LETTERS, with why, instead of dropping it. */
async function deadLetter(bus: Bus, m: JsMsg, reason: string): Promise<void> {
  const h = headers();
  h.set("recsys-reason", reason);
  h.set("recsys-source-stream", bus.topology.clicksStream);
  h.set("recsys-source-sequence", String(m.seq));
  await bus.js.publish(bus.topology.deadLetterSubject("clicks"), m.data, { headers: h, msgID: `clicks-${m.seq}` });
}
