import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClickBatchSchema, ClickSchema, type Click } from "@recsys/contracts/events/v1/events";
import { headers, type MsgHdrs } from "@nats-io/transport-node";
import { DEFAULT_EVENT_TYPE } from "@recsys/validation";
import type { DeadLetterWhy, ItemDeadLetter } from "./dead-letters.js";

export type { Click };

const CONTENT_TYPE = "content-type";
const typeOf = (messageType: string) => `application/x-protobuf; messageType=${messageType}`;
export const CLICK_BATCH_CONTENT_TYPE = typeOf(ClickBatchSchema.typeName);
export const CLICK_CONTENT_TYPE = typeOf(ClickSchema.typeName);

/** The headers of a message of this protobuf type: its content-type names the type. */
export function typedHeaders(messageType: string): MsgHdrs {
  const h = headers();
  h.set(CONTENT_TYPE, typeOf(messageType));
  return h;
}

/** One CLICKS message for clicks of one partition, in order. */
export function encodeClickBatch(clicks: Click[]): { data: Uint8Array; headers: MsgHdrs } {
  return { data: toBinary(ClickBatchSchema, create(ClickBatchSchema, { clicks })), headers: typedHeaders(ClickBatchSchema.typeName) };
}

/** Click `index` of a CLICKS message, kept alone in DEAD_LETTERS with why. */
export function clickDeadLetter(clicks: Click[], index: number, why: DeadLetterWhy): ItemDeadLetter {
  return { index, data: toBinary(ClickSchema, clicks[index]!), contentType: CLICK_CONTENT_TYPE, cause: why.cause, reason: why.reason };
}

/**
 * The clicks a CLICKS message carries, in order: those of a ClickBatch (its content-type says so),
 * else the one Click it is. Throws when the bytes do not decode as that type.
 */
export function clicksOf(m: { data: Uint8Array; headers?: MsgHdrs }): Click[] {
  if (m.headers?.get(CONTENT_TYPE) === CLICK_BATCH_CONTENT_TYPE) return fromBinary(ClickBatchSchema, m.data).clicks;
  return [fromBinary(ClickSchema, m.data)];
}

/** What a consumer applies of a click. */
export interface ClickToApply {
  eventId: string;
  userid: string;
  url: string;
  eventTimeMs: number;
  /** The event type; DEFAULT_EVENT_TYPE when the click names none. */
  event: string;
}

/**
 * A CLICKS message read: its clicks, each checked for the fields every consumer needs (or why
 * not), or why the message cannot be read at all.
 */
export type ReadClicks = { clicks: Click[]; checked: Array<ClickToApply | { error: string }> } | { error: string };

export function readClicks(m: { data: Uint8Array; headers?: MsgHdrs }): ReadClicks {
  let clicks: Click[];
  try {
    clicks = clicksOf(m);
  } catch (err) {
    return { error: String(err) };
  }
  return {
    clicks,
    checked: clicks.map((c) =>
      !c.eventId || !c.userid || !c.url
        ? { error: "missing event_id, userid or url" }
        : { eventId: c.eventId, userid: c.userid, url: c.url, eventTimeMs: Number(c.eventTimeMs), event: c.event || DEFAULT_EVENT_TYPE },
    ),
  };
}

/** The clicks to apply of CLICKS messages read, in order: every checked click of every readable message. */
export function applicableClicks(read: ReadClicks[]): ClickToApply[] {
  return read.flatMap((d) => ("error" in d ? [] : d.checked.filter((c): c is ClickToApply => !("error" in c))));
}
