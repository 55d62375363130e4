import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClickBatchSchema, ClickSchema, UserDeletedSchema, type Click } from "@recsys/contracts/events/v1/events";
import { headers, type MsgHdrs } from "@nats-io/transport-node";
import { DEFAULT_EVENT_TYPE } from "@recsys/validation";
import type { DeadLetterWhy, ItemDeadLetter } from "./dead-letters.js";

export type { Click };

const CONTENT_TYPE = "content-type";
const typeOf = (messageType: string) => `application/x-protobuf; messageType=${messageType}`;
export const CLICK_BATCH_CONTENT_TYPE = typeOf(ClickBatchSchema.typeName);
export const CLICK_CONTENT_TYPE = typeOf(ClickSchema.typeName);
export const USER_DELETED_CONTENT_TYPE = typeOf(UserDeletedSchema.typeName);

/** A user's erasure as it travels on CLICKS (UserDeleted), in the user's partition. */
export interface UserDeletion {
  eventId: string;
  userid: string;
  ingestTimeMs: number;
}

/** The CLICKS message of an erasure. */
export function encodeUserDeleted(d: UserDeletion): { data: Uint8Array; headers: MsgHdrs } {
  const message = create(UserDeletedSchema, { eventId: d.eventId, userid: d.userid, ingestTimeMs: BigInt(d.ingestTimeMs) });
  return { data: toBinary(UserDeletedSchema, message), headers: typedHeaders(UserDeletedSchema.typeName) };
}

/** Whether a CLICKS message is an erasure (UserDeleted) rather than clicks. */
export function isUserDeleted(m: { headers?: MsgHdrs }): boolean {
  return m.headers?.get(CONTENT_TYPE) === USER_DELETED_CONTENT_TYPE;
}

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

/** Click `index` of a CLICKS message, kept alone in DEAD_LETTERS with why, under its user (a click without one: under its message). */
export function clickDeadLetter(clicks: Click[], index: number, why: DeadLetterWhy): ItemDeadLetter {
  const click = clicks[index]!;
  return {
    index,
    data: toBinary(ClickSchema, click),
    contentType: CLICK_CONTENT_TYPE,
    cause: why.cause,
    reason: why.reason,
    userid: click.userid || undefined,
  };
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
 * not), or why the message cannot be read at all. An erasure (UserDeleted) reads as no clicks and its `deletion`.
 */
export type ReadClicks = { clicks: Click[]; checked: Array<ClickToApply | { error: string }>; deletion?: UserDeletion } | { error: string };

export function readClicks(m: { data: Uint8Array; headers?: MsgHdrs }): ReadClicks {
  if (isUserDeleted(m)) {
    try {
      const d = fromBinary(UserDeletedSchema, m.data);
      if (!d.userid) return { error: "UserDeleted without userid" };
      return { clicks: [], checked: [], deletion: { eventId: d.eventId, userid: d.userid, ingestTimeMs: Number(d.ingestTimeMs) } };
    } catch (err) {
      return { error: String(err) };
    }
  }
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
