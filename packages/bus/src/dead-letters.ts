import type { JsMsg } from "@nats-io/jetstream";
import { headers } from "@nats-io/transport-node";
import type { Bus } from "./connection.js";

/**
 * Why a message can never take effect, in a word: the `recsys-cause` header of its letter and the
 * `cause` label of `recsys_dead_lettered_total`. A poison message is one whose effect kept throwing.
 */
export type DeadLetterCause = "late" | "undecodable" | "budget" | "expired" | "refused" | "poison";

/** Why a message or an item of one can never take effect: the cause, and the reason in words. */
export interface DeadLetterWhy {
  cause: DeadLetterCause;
  reason: string;
}

/** One item of a message (a click of a batch) that can never take effect, kept with why. */
export interface ItemDeadLetter extends DeadLetterWhy {
  /** Its position in the message. */
  index: number;
  data: Uint8Array;
  contentType: string;
  /** Whose item it is (a click's userid): the letter is filed under that user, whose letters alone make room for it. */
  userid?: string;
}

function deadLetterHeaders(stream: string, m: JsMsg, why: DeadLetterWhy, contentType: string | undefined) {
  const h = headers();
  h.set("recsys-reason", why.reason);
  h.set("recsys-cause", why.cause);
  h.set("recsys-source-stream", stream);
  h.set("recsys-source-subject", m.subject);
  h.set("recsys-source-sequence", String(m.seq));
  if (contentType) h.set("content-type", contentType);
  return h;
}

/** Keeps a message we could not apply in DEAD_LETTERS, with why, instead of dropping it. */
export async function deadLetter(bus: Bus, m: JsMsg, stream: string, source: string, why: DeadLetterWhy): Promise<void> {
  const h = deadLetterHeaders(stream, m, why, m.headers?.get("content-type") || undefined);
  await bus.publish(bus.topology.deadLetterSubject(source, { sequence: m.seq }), m.data, { headers: h, msgID: `${source}-${m.seq}` });
}

/** Keeps one item of a message in DEAD_LETTERS, with why and where it came from. */
export async function deadLetterItem(bus: Bus, m: JsMsg, stream: string, source: string, item: ItemDeadLetter): Promise<void> {
  const h = deadLetterHeaders(stream, m, item, item.contentType);
  h.set("recsys-source-item", String(item.index));
  const subject = bus.topology.deadLetterSubject(source, item.userid === undefined ? { sequence: m.seq } : { userid: item.userid });
  await bus.publish(subject, item.data, { headers: h, msgID: `${source}-${m.seq}-${item.index}` });
}

/** How many letters DEAD_LETTERS holds from one source: those filed by user or message, and any filed under the source alone before. */
export async function deadLettered(bus: Bus, source: string): Promise<bigint> {
  const stream = bus.topology.deadLetterStream;
  const prefix = bus.topology.deadLetterSubject(source);
  let n = 0n;
  for (const filter of [prefix, `${prefix}.>`]) {
    const info = await bus.jsm.streams.info(stream, { subjects_filter: filter });
    for (const count of Object.values(info.state.subjects ?? {})) n += BigInt(count);
  }
  return n;
}
