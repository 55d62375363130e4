import { create, toBinary } from "@bufbuild/protobuf";
import { ensureStreams, headers, type Bus } from "@recsys/bus";
import { ClickSchema } from "@recsys/contracts/events/v1/events";
import { partitionOf, type ValidClick } from "./clicks.js";

export interface Published {
  streamSequence: bigint;
  duplicate: boolean;
}

/** Publishes clicks to CLICKS; resolves only once JetStream has stored (or already had) each one. */
export class ClickPublisher {
  constructor(
    private readonly bus: Bus,
    private readonly partitions: number,
  ) {}

  /** All publishes go out before any ack is awaited: one round trip per batch, order kept per subject. */
  async publishAll(clicks: ValidClick[], ingestTimeMs: number): Promise<Published[]> {
    try {
      return await Promise.all(clicks.map((c) => this.publish(c, ingestTimeMs)));
    } catch (err) {
      if (!isNoStream(err)) throw err;
      // The stream was deleted under us (stack:reset): recreate it and publish again, same ids.
      await ensureStreams(this.bus.jsm, this.bus.topology);
      return Promise.all(clicks.map((c) => this.publish(c, ingestTimeMs)));
    }
  }

  private async publish(click: ValidClick, ingestTimeMs: number): Promise<Published> {
    const payload = toBinary(
      ClickSchema,
      create(ClickSchema, {
        eventId: click.eventId,
        userid: click.userid,
        url: click.url,
        eventTimeMs: BigInt(click.eventTimeMs),
        ingestTimeMs: BigInt(ingestTimeMs),
      }),
    );
    const h = headers();
    h.set("content-type", "application/x-protobuf; messageType=recsys.events.v1.Click");
    const ack = await this.bus.js.publish(this.bus.topology.clicksSubject(partitionOf(click.userid, this.partitions)), payload, {
      msgID: click.eventId,
      headers: h,
      timeout: 10_000,
    });
    return { streamSequence: BigInt(ack.seq), duplicate: ack.duplicate };
  }
}

function isNoStream(err: unknown): boolean {
  return /no responders|stream not found|503/i.test(String(err));
}
