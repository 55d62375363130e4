import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import type { Logger } from "@recsys/logging";
import { FieldError } from "@recsys/validation";
import {
  ClickResultSchema,
  IngestService,
  type ClickInput,
  type ClickResult,
} from "@recsys/contracts/ingest/v1/ingest";
import { toValidClick, type ValidClick } from "./clicks.js";
import type { ClickPublisher } from "./publisher.js";

export const MAX_CLICKS_PER_CALL = 10_000;

interface BatchOutcome {
  results: ClickResult[];
  accepted: number;
  rejected: number;
  duplicates: number;
  lastSequence: bigint;
}

export function ingestRoutes(publisher: ClickPublisher, logger: Logger) {
  /** Validates each click on its own; the valid ones are published even when others are rejected. */
  async function ingestBatch(clicks: ClickInput[]): Promise<BatchOutcome> {
    if (clicks.length === 0) throw new ConnectError("clicks: must not be empty", Code.InvalidArgument);
    if (clicks.length > MAX_CLICKS_PER_CALL) {
      throw new ConnectError(`clicks: at most ${MAX_CLICKS_PER_CALL} per call`, Code.InvalidArgument);
    }
    const now = Date.now();
    const results: ClickResult[] = new Array(clicks.length);
    const valid: ValidClick[] = [];
    const validAt: number[] = [];
    clicks.forEach((input, i) => {
      try {
        valid.push(toValidClick({ userid: input.userid, url: input.url, event_time: input.eventTime, event_id: input.eventId }, now));
        validAt.push(i);
      } catch (err) {
        if (!(err instanceof FieldError)) throw err;
        results[i] = create(ClickResultSchema, { outcome: { case: "rejected", value: { field: err.field, reason: err.reason } } });
      }
    });
    const rejected = clicks.length - valid.length;
    if (rejected > 0) logger.info({ rejected, first: results.find(Boolean)?.outcome.value }, "rejected clicks");

    let published;
    try {
      published = await publisher.publishAll(valid, now);
    } catch (err) {
      // Nothing is reported accepted unless JetStream stored it; the client retries with the same ids.
      logger.warn({ err: String(err), clicks: valid.length }, "publish failed");
      throw new ConnectError(`publishing to the bus failed: ${String(err)}`, Code.Unavailable);
    }
    let duplicates = 0;
    let lastSequence = 0n;
    published.forEach((p, j) => {
      const click = valid[j]!;
      if (p.duplicate) duplicates++;
      if (p.streamSequence > lastSequence) lastSequence = p.streamSequence;
      results[validAt[j]!] = create(ClickResultSchema, {
        outcome: {
          case: "accepted",
          value: {
            eventId: click.eventId,
            eventTime: new Date(click.eventTimeMs).toISOString(),
            streamSequence: p.streamSequence,
            duplicate: p.duplicate,
          },
        },
      });
    });
    return { results, accepted: valid.length, rejected, duplicates, lastSequence };
  }

  return (router: ConnectRouter) =>
    router.service(IngestService, {
      async publishClicks(req) {
        const { results } = await ingestBatch(req.clicks);
        return { results };
      },
      async streamClicks(requests) {
        const total = { accepted: 0n, rejected: 0n, duplicates: 0n, lastStreamSequence: 0n };
        for await (const req of requests) {
          const out = await ingestBatch(req.clicks);
          total.accepted += BigInt(out.accepted);
          total.rejected += BigInt(out.rejected);
          total.duplicates += BigInt(out.duplicates);
          if (out.lastSequence > total.lastStreamSequence) total.lastStreamSequence = out.lastSequence;
        }
        return total;
      },
    });
}
