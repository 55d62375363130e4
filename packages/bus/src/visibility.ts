import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { PageVisibilitySchema } from "@recsys/contracts/events/v1/events";
import type { MsgHdrs } from "@nats-io/transport-node";
import { typedHeaders } from "./clicks.js";

/** A page's visibility as it travels on VISIBILITY (PageVisibility). */
export interface Visibility {
  url: string;
  hidden: boolean;
}

/** The VISIBILITY message of a page's state. */
export function encodeVisibility(v: Visibility & { eventId: string; ingestTimeMs: number }): { data: Uint8Array; headers: MsgHdrs } {
  const message = create(PageVisibilitySchema, { eventId: v.eventId, url: v.url, hidden: v.hidden, ingestTimeMs: BigInt(v.ingestTimeMs) });
  return { data: toBinary(PageVisibilitySchema, message), headers: typedHeaders(PageVisibilitySchema.typeName) };
}

/** A VISIBILITY message read: the url and its state, or why it cannot be (undecodable, or without url). */
export function readVisibility(data: Uint8Array): Visibility | { error: string } {
  try {
    const v = fromBinary(PageVisibilitySchema, data);
    return v.url ? { url: v.url, hidden: v.hidden } : { error: "missing url" };
  } catch (err) {
    return { error: String(err) };
  }
}
