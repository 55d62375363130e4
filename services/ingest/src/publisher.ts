import { create, toBinary } from "@bufbuild/protobuf";
import { ensureStreams, headers, type Bus } from "@recsys/bus";
import { ClickSchema, ContentPageSchema, LikeSchema, StatedInterestSchema } from "@recsys/contracts/events/v1/events";
import type { ValidClick } from "./clicks.js";
import { partitionOf } from "./hashing.js";
import type { ValidInterest, ValidLike } from "./engagement.js";
import { pagePartitionOf, type ValidPage } from "./pages.js";

export interface Published {
  streamSequence: bigint;
  duplicate: boolean;
}

interface Outgoing {
  subject: string;
  payload: Uint8Array;
  msgID: string;
  messageType: string;
}

/** Publishes events; resolves only once JetStream has stored (or already had) each one. */
export class EventPublisher {
  constructor(
    private readonly bus: Bus,
    private readonly partitions: number,
  ) {}

  publishClicks(clicks: ValidClick[], ingestTimeMs: number): Promise<Published[]> {
    return this.publishAll(
      clicks.map((c) => ({
        subject: this.bus.topology.clicksSubject(partitionOf(c.userid, this.partitions)),
        msgID: c.eventId,
        messageType: "recsys.events.v1.Click",
        payload: toBinary(
          ClickSchema,
          create(ClickSchema, { eventId: c.eventId, userid: c.userid, url: c.url, eventTimeMs: BigInt(c.eventTimeMs), ingestTimeMs: BigInt(ingestTimeMs) }),
        ),
      })),
    );
  }

  publishPages(pages: ValidPage[], ingestTimeMs: number): Promise<Published[]> {
    return this.publishAll(
      pages.map((p) => ({
        subject: this.bus.topology.contentSubject(pagePartitionOf(p.url, this.partitions)),
        msgID: p.eventId,
        messageType: "recsys.events.v1.ContentPage",
        payload: toBinary(
          ContentPageSchema,
          create(ContentPageSchema, {
            eventId: p.eventId,
            url: p.url,
            id: p.id,
            title: p.title,
            text: p.text,
            sourceTimeMs: BigInt(p.sourceTimeMs),
            ingestTimeMs: BigInt(ingestTimeMs),
          }),
        ),
      })),
    );
  }

  publishLikes(likes: ValidLike[], ingestTimeMs: number): Promise<Published[]> {
    return this.publishAll(
      likes.map((l) => ({
        subject: this.bus.topology.likesSubject(partitionOf(l.userid, this.partitions)),
        msgID: `like-${l.eventId}`,
        messageType: "recsys.events.v1.Like",
        payload: toBinary(
          LikeSchema,
          create(LikeSchema, { eventId: l.eventId, userid: l.userid, pageId: l.pageId, liked: l.liked, sourceTimeMs: BigInt(l.sourceTimeMs), ingestTimeMs: BigInt(ingestTimeMs) }),
        ),
      })),
    );
  }

  publishInterests(interests: ValidInterest[], ingestTimeMs: number): Promise<Published[]> {
    return this.publishAll(
      interests.map((i) => ({
        subject: this.bus.topology.statedInterestsSubject(partitionOf(i.userid, this.partitions)),
        msgID: `interest-${i.eventId}`,
        messageType: "recsys.events.v1.StatedInterest",
        payload: toBinary(
          StatedInterestSchema,
          create(StatedInterestSchema, { eventId: i.eventId, userid: i.userid, text: i.text, sourceTimeMs: BigInt(i.sourceTimeMs), ingestTimeMs: BigInt(ingestTimeMs) }),
        ),
      })),
    );
  }

  /** All publishes go out before any ack is awaited: one round trip per batch, order kept per subject. */
  private async publishAll(out: Outgoing[]): Promise<Published[]> {
    try {
      return await Promise.all(out.map((o) => this.publish(o)));
    } catch (err) {
      if (!isNoStream(err)) throw err;
      // The stream was deleted under us (stack:reset): recreate it and publish again, same ids.
      await ensureStreams(this.bus.jsm, this.bus.topology);
      return Promise.all(out.map((o) => this.publish(o)));
    }
  }

  private async publish(o: Outgoing): Promise<Published> {
    const h = headers();
    h.set("content-type", `application/x-protobuf; messageType=${o.messageType}`);
    const ack = await this.bus.publish(o.subject, o.payload, { msgID: o.msgID, headers: h, timeout: 10_000 });
    return { streamSequence: BigInt(ack.seq), duplicate: ack.duplicate };
  }
}

function isNoStream(err: unknown): boolean {
  return /no responders|stream not found|503/i.test(String(err));
}
