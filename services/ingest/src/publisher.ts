import { create, toBinary, type DescMessage } from "@bufbuild/protobuf";
import {
  encodeClickBatch,
  encodeUserDeleted,
  encodeVisibility,
  interestEmbeddingMessage,
  isStreamFull,
  StreamFill,
  storedBytes,
  StreamFullError,
  typedHeaders,
  urlKey,
  userEventMessageId,
  type Bus,
  type MsgHdrs,
} from "@recsys/bus";
import { ClickSchema, InterestEmbeddingSchema } from "@recsys/contracts/events/v1/events";
import { Counter, registry } from "@recsys/metrics";

import { DEFAULT_EVENT_TYPE } from "@recsys/validation";
import type { ValidClick } from "./clicks.js";
import type { ValidInterest } from "./engagement.js";
import type { EventKind, TimedEvent } from "./event-kinds.js";
import { eventIdOf, partitionOf } from "./hashing.js";

export interface Published {
  streamSequence: bigint;
  duplicate: boolean;
}

interface Outgoing {
  subject: string;
  payload: Uint8Array;
  msgID: string;
  /** With the content-type that names the payload's protobuf type. */
  headers: MsgHdrs;
}

const publishedClicks = new Counter({
  name: "recsys_published_clicks_total",
  help: "Clicks stored in CLICKS (a message carries a partition's clicks of one call; clicks of a message the broker already had included)",
  registers: [registry],
});

/** The most clicks one CLICKS message carries. */
export const CLICKS_PER_MESSAGE = 256;
/** What a message's headers and subject may take of the server's max_payload, which bounds them and the payload together. */
const HEADERS_ROOM = 4 * 1024;
/** NATS' own max_payload when the server has not said (1 MiB). */
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

const utf8 = (s: string) => Buffer.byteLength(s, "utf8");
/**
 * At least the bytes a click takes in a ClickBatch, without encoding it: each string its UTF-8 and a tag and length of at most
 * 6 bytes, each number 11, each property its name and text and 20, and the click's own tag and length 6.
 */
export function clickBytesBound(c: ValidClick): number {
  let n = 6 + 4 * 6 + utf8(c.eventId) + utf8(c.userid) + utf8(c.url) + utf8(c.event) + 2 * 11;
  for (const [name, v] of Object.entries(c.properties)) n += 20 + utf8(name) + (typeof v === "string" ? utf8(v) : 8);
  return n;
}

/** Publishes events; resolves only once JetStream has stored (or already had) each one. */
export class EventPublisher {
  constructor(
    private readonly bus: Bus,
    private readonly partitions: number,
    /** Streams' fill, when they have limits: a full one refuses before anything is published. */
    private readonly fill?: StreamFill,
  ) {}

  /**
   * Clicks go out as one ClickBatch message per partition, in the order given, so a user's clicks stay in order on one subject.
   * The message id hashes the batch's (user, event id) pairs: a retry of the same batch is the same message to the broker's dedup.
   */
  async publishClicks(clicks: ValidClick[], ingestTimeMs: number): Promise<Published[]> {
    const byPartition = new Map<number, number[]>();
    clicks.forEach((c, i) => {
      const p = partitionOf(c.userid, this.partitions);
      const list = byPartition.get(p);
      if (list) list.push(i);
      else byPartition.set(p, [i]);
    });
    // A message holds at most CLICKS_PER_MESSAGE clicks, and fits the server's max_payload: 256 clicks with large properties
    // within a call's 1 MiB did not, and JetStream refused the whole call's publish, each retry the same.
    const maxBytes = (this.bus.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - HEADERS_ROOM;
    const messages: Array<{ partition: number; members: number[] }> = [];
    for (const [partition, members] of byPartition) {
      let current: number[] = [];
      let bytes = 0;
      for (const i of members) {
        const size = clickBytesBound(clicks[i]!);
        if (current.length === CLICKS_PER_MESSAGE || (current.length > 0 && bytes + size > maxBytes)) {
          messages.push({ partition, members: current });
          current = [];
          bytes = 0;
        }
        current.push(i);
        bytes += size;
      }
      messages.push({ partition, members: current });
    }
    const published = await this.publishAll(
      this.bus.topology.clicksStream,
      messages.map(({ partition, members }) => {
        const batch = encodeClickBatch(
          members.map((i) => {
            const c = clicks[i]!;
            return create(ClickSchema, {
              eventId: c.eventId,
              userid: c.userid,
              url: c.url,
              eventTimeMs: BigInt(c.eventTimeMs),
              ingestTimeMs: BigInt(ingestTimeMs),
              // "view" travels as the field's default: untyped clicks are the bytes they were.
              event: c.event === DEFAULT_EVENT_TYPE ? "" : c.event,
              properties: Object.fromEntries(
                Object.entries(c.properties).map(([name, v]) => [
                  name,
                  { kind: typeof v === "number" ? { case: "number" as const, value: v } : { case: "text" as const, value: v } },
                ]),
              ),
            });
          }),
        );
        return {
          subject: this.bus.topology.clicksSubject(partition),
          msgID:
            members.length === 1 ? clickMessageId(clicks[members[0]!]!) : `clicks-${eventIdOf(members.map((i) => [clicks[i]!.userid, clicks[i]!.eventId]))}`,
          headers: batch.headers,
          payload: batch.data,
        };
      }),
    );
    publishedClicks.inc(clicks.length);
    const out: Published[] = new Array(clicks.length);
    messages.forEach(({ members }, m) => members.forEach((i) => (out[i] = published[m]!)));
    return out;
  }

  /**
   * A user's erasure, as a message of its own in the user's CLICKS partition: every consumer meets it in order with the user's clicks.
   * Its id hashes (userid, ingest time): a retry of the call is a new erasure, which forgets nothing more than the first did.
   */
  async publishUserDeleted(userid: string, ingestTimeMs: number): Promise<Published & { eventId: string }> {
    const eventId = eventIdOf(["user-deleted", userid, ingestTimeMs]);
    const m = encodeUserDeleted({ eventId, userid, ingestTimeMs });
    const [published] = await this.publishAll(this.bus.topology.clicksStream, [
      { subject: this.bus.topology.clicksSubject(partitionOf(userid, this.partitions)), msgID: `user-deleted-${eventId}`, headers: m.headers, payload: m.data },
    ]);
    return { ...published!, eventId };
  }

  /** A page's visibility, on its url's subject of VISIBILITY (which keeps the latest message per subject). */
  async publishVisibility(url: string, hidden: boolean, ingestTimeMs: number): Promise<Published & { eventId: string }> {
    const eventId = eventIdOf(["visibility", url, hidden, ingestTimeMs]);
    const m = encodeVisibility({ eventId, url, hidden, ingestTimeMs });
    const [published] = await this.publishAll(this.bus.topology.visibilityStream, [
      { subject: this.bus.topology.visibilitySubject(urlKey(url)), msgID: `visibility-${eventId}`, headers: m.headers, payload: m.data },
    ]);
    return { ...published!, eventId };
  }

  /** The partition of a user's clicks. */
  partitionOf(userid: string): number {
    return partitionOf(userid, this.partitions);
  }

  /** One message per event, as `kind` says: its stream, subject, message id and payload. */
  async publishEvents<I, V extends TimedEvent, S extends DescMessage>(kind: EventKind<I, V, S>, events: V[], ingestTimeMs: number): Promise<Published[]> {
    if (kind.downstream) this.fill?.refuseIfFull(kind.downstream(this.bus.topology));
    return this.publishAll(
      kind.stream(this.bus.topology),
      events.map((e) => this.outgoing(kind, e, ingestTimeMs)),
    );
  }

  /** The bytes an event takes in its stream, as JetStream counts them (see `storedBytes`). */
  sizeOf<I, V extends TimedEvent, S extends DescMessage>(kind: EventKind<I, V, S>, event: V, ingestTimeMs: number): number {
    const o = this.outgoing(kind, event, ingestTimeMs);
    return storedBytes(o.subject, o.payload, o);
  }

  /**
   * The bytes the embedder will publish to INTEREST_EMBEDDINGS for a stated interest, as JetStream counts them: the embedder's
   * message (`interestEmbeddingMessage`) with a vector of `dimension` floats and room for a model name of 64 bytes.
   */
  interestEmbeddingSizeOf(i: ValidInterest, dimension: number, ingestTimeMs: number): number {
    const out = interestEmbeddingMessage(
      this.bus.topology,
      partitionOf(i.userid, this.partitions),
      create(InterestEmbeddingSchema, {
        eventId: i.eventId,
        userid: i.userid,
        embedding: new Array<number>(dimension).fill(1),
        sourceTimeMs: BigInt(i.sourceTimeMs),
        model: "m".repeat(64),
        ingestTimeMs: BigInt(ingestTimeMs),
      }),
    );
    return storedBytes(out.subject, out.payload, out);
  }

  private outgoing<I, V extends TimedEvent, S extends DescMessage>(kind: EventKind<I, V, S>, e: V, ingestTimeMs: number): Outgoing {
    return {
      subject: kind.subject(this.bus.topology, e, this.partitions),
      msgID: kind.messageId(e),
      headers: typedHeaders(kind.schema.typeName),
      payload: toBinary(kind.schema, kind.message(e, ingestTimeMs)),
    };
  }

  /**
   * All publishes go out before any ack is awaited: one round trip per batch, order kept per subject.
   * A full stream fails the call before anything goes out; refused by JetStream itself, some may be stored, and a retry with the same ids is safe.
   */
  private async publishAll(stream: string, out: Outgoing[]): Promise<Published[]> {
    const giveBack = this.fill?.take(stream, StreamFill.sizeOf(out));
    try {
      return await Promise.all(out.map((o) => this.publish(o)));
    } catch (err) {
      giveBack?.();
      if (!isStreamFull(err)) throw err;
      this.fill?.refusedByServer(stream);
      throw new StreamFullError(stream);
    }
  }

  private async publish(o: Outgoing): Promise<Published> {
    const ack = await this.bus.publish(o.subject, o.payload, { msgID: o.msgID, headers: o.headers, timeout: 10_000 });
    return { streamSequence: BigInt(ack.seq), duplicate: ack.duplicate };
  }
}

const clickMessageId = (c: ValidClick) => userEventMessageId("click", c.userid, c.eventId);
