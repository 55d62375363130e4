import { create, type DescMessage } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "@recsys/logging";
import { checkUrl, checkUserid, FieldError, orInvalidArgument } from "@recsys/validation";
import { ClickResultSchema, IngestService, type ClickInput, type ClickResult } from "@recsys/contracts/ingest/v1/ingest";
import type { ClickBudget } from "./budget.js";
import type { EngagementBudget } from "./engagement-budget.js";
import { toValidClick, type ValidClick } from "./clicks.js";
import { INTERESTS, LIKES, PAGES, type EventKind, type TimedEvent } from "./event-kinds.js";
import { consumerNames, StreamFullError, urlKey, waitApplied, type Bus } from "@recsys/bus";
import type { EventPublisher, Published } from "./publisher.js";

export const MAX_CLICKS_PER_CALL = 10_000;

type Outcome<V> = { ok: true; value: V; published: Published } | { ok: false; error: FieldError };

/**
 * Validates each item on its own, then publishes the valid ones even when others are rejected.
 * Nothing is reported accepted unless JetStream stored it: a bus failure fails the whole call, retried with the same ids.
 */
async function validateThenPublish<I, V>(opts: {
  field: string;
  items: I[];
  max: number;
  validate: (item: I, nowMs: number) => V;
  /**
   * Limits on valid items taken together (a user's click or engagement budget): refused ones get their error; then `keep` once
   * the rest are published (with what the publish said of each), or `release` to undo them.
   */
  admit?: (valid: V[], nowMs: number) => { refused: Array<FieldError | undefined>; release(): void; keep(published: Published[]): void };
  publish: (valid: V[], nowMs: number) => Promise<Published[]>;
  logger: Logger;
}): Promise<Outcome<V>[]> {
  const { field, items, logger } = opts;
  if (items.length === 0) throw new ConnectError(`${field}: must not be empty`, Code.InvalidArgument);
  if (items.length > opts.max) throw new ConnectError(`${field}: at most ${opts.max} per call`, Code.InvalidArgument);
  const now = Date.now();
  const outcomes: Outcome<V>[] = new Array(items.length);
  let valid: V[] = [];
  let validAt: number[] = [];
  items.forEach((item, i) => {
    try {
      valid.push(opts.validate(item, now));
      validAt.push(i);
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      outcomes[i] = { ok: false, error: err };
    }
  });
  const admitted = opts.admit?.(valid, now);
  if (admitted) {
    admitted.refused.forEach((error, j) => {
      if (error) outcomes[validAt[j]!] = { ok: false, error };
    });
    validAt = validAt.filter((_, j) => !admitted.refused[j]);
    valid = valid.filter((_, j) => !admitted.refused[j]);
  }
  const rejected = items.length - valid.length;
  if (rejected > 0) {
    const first = outcomes.find((o) => o && !o.ok) as { error: FieldError };
    logger.info({ rejected, first: first.error.message }, `rejected ${field}`);
  }
  let published: Published[];
  try {
    published = await opts.publish(valid, now);
  } catch (err) {
    admitted?.release();
    if (err instanceof StreamFullError) {
      logger.warn({ stream: err.stream, [field]: valid.length }, "stream full, call refused");
      throw new ConnectError(`${field}: ${err.message}; a retry with the same event ids later is safe`, Code.ResourceExhausted);
    }
    logger.warn({ err: String(err), [field]: valid.length }, "publish failed");
    throw new ConnectError(`publishing to the bus failed: ${String(err)}`, Code.Unavailable);
  }
  admitted?.keep(published);
  published.forEach((p, j) => (outcomes[validAt[j]!] = { ok: true, value: valid[j]!, published: p }));
  return outcomes;
}

/** The result of an event versioned by its source time (a page, a like, an interest), as the wire has it. */
function timedResult<V extends TimedEvent>(o: Outcome<V>) {
  return {
    outcome: o.ok
      ? {
          case: "accepted" as const,
          value: {
            eventId: o.value.eventId,
            sourceTime: new Date(o.value.sourceTimeMs).toISOString(),
            streamSequence: o.published.streamSequence,
            duplicate: o.published.duplicate,
          },
        }
      : { case: "rejected" as const, value: rejection(o.error) },
  };
}

function rejection(error: FieldError) {
  return { field: error.field, reason: error.reason, code: error.code };
}

/**
 * @param limits.maxClockSkewMs how far ahead of this service's clock an event's time may be; later ones are refused, naming the field.
 * @param limits.budget each user's click budget, checked before publishing.
 */
/**
 * An admin event (an erasure, a page's visibility) published, then awaited: answered once the consumers that keep its effect
 * have applied it, or after `waitMs` with those that had not.
 */
async function publishAndWait(
  what: string,
  logger: Logger,
  publish: () => Promise<{ eventId: string; streamSequence: bigint }>,
  wait: (seq: number) => Promise<string[]>,
) {
  let published: { eventId: string; streamSequence: bigint };
  try {
    published = await publish();
  } catch (err) {
    if (err instanceof StreamFullError) throw new ConnectError(`${err.message}; a retry later is safe`, Code.ResourceExhausted);
    logger.warn({ err: String(err), what }, "publish failed");
    throw new ConnectError(`publishing to the bus failed: ${String(err)}`, Code.Unavailable);
  }
  const pending = await wait(Number(published.streamSequence));
  if (pending.length > 0) logger.warn({ what, pending, seq: Number(published.streamSequence) }, "answered before every consumer applied it");
  return { eventId: published.eventId, streamSequence: published.streamSequence, pending };
}

/** The consumers whose state an erasure changes (on CLICKS) and those that recommend pages (on VISIBILITY). */
const ERASURE_CONSUMERS = [consumerNames("covisit", "clicks"), consumerNames("profile", "clicks"), consumerNames("analytics", "clicks")].map((c) => c.durable);
const VISIBILITY_CONSUMERS = [consumerNames("covisit", "visibility"), consumerNames("profile", "visibility"), consumerNames("analytics", "visibility")].map(
  (c) => c.durable,
);

export function ingestRoutes(
  publisher: EventPublisher,
  logger: Logger,
  limits: {
    maxClockSkewMs: number;
    budget: ClickBudget;
    /** Likes and stated interests per user, with the embeddings of the interests (of `embeddingDimension` floats). */
    engagementBudget: EngagementBudget;
    embeddingDimension: number;
  },
  /** Where admin events are awaited, and for how long at most. */
  applied?: { bus: Bus; waitMs: number },
) {
  const { maxClockSkewMs, budget, engagementBudget } = limits;
  const waitFor = (stream: (bus: Bus) => string, subject: (bus: Bus) => string, durables: string[]) => (seq: number) =>
    applied ? waitApplied(applied.bus, stream(applied.bus), seq, subject(applied.bus), durables, applied.waitMs) : Promise.resolve([]);
  async function ingestClicks(clicks: ClickInput[]) {
    const outcomes = await validateThenPublish<ClickInput, ValidClick>({
      field: "clicks",
      items: clicks,
      max: MAX_CLICKS_PER_CALL,
      validate: (c, now) =>
        toValidClick(
          {
            userid: c.userid,
            url: c.url,
            event_time: c.eventTime,
            event_id: c.eventId,
            event: c.event,
            properties: Object.fromEntries(Object.entries(c.properties).map(([name, v]) => [name, v.kind])),
          },
          now,
          maxClockSkewMs,
        ),
      admit: (valid) => budget.admit(valid),
      publish: (valid, now) => publisher.publishClicks(valid, now),
      logger,
    });
    return outcomes.map(
      (o): ClickResult =>
        create(ClickResultSchema, {
          outcome: o.ok
            ? {
                case: "accepted",
                value: {
                  eventId: o.value.eventId,
                  eventTime: new Date(o.value.eventTimeMs).toISOString(),
                  streamSequence: o.published.streamSequence,
                  duplicate: o.published.duplicate,
                },
              }
            : { case: "rejected", value: rejection(o.error) },
        }),
    );
  }

  /**
   * Pages, likes, interests: checked and published as their kind says; likes and interests within their user's budget, each
   * costing what it takes in its stream and `alsoStored` (what it makes another service store: an interest's embedding).
   */
  async function ingestEvents<I, V extends TimedEvent, S extends DescMessage>(
    kind: EventKind<I, V, S>,
    items: I[],
    budgeted?: { userid: (event: V) => string; alsoStored: (event: V, nowMs: number) => number },
  ) {
    const outcomes = await validateThenPublish<I, V>({
      field: kind.field,
      items,
      max: kind.maxPerCall,
      validate: (item, now) => kind.validate(item, now, maxClockSkewMs),
      admit:
        budgeted &&
        ((valid, now) =>
          engagementBudget.admit(valid.map((e) => ({ userid: budgeted.userid(e), bytes: publisher.sizeOf(kind, e, now) + budgeted.alsoStored(e, now) })))),
      publish: (valid, now) => publisher.publishEvents(kind, valid, now),
      logger,
    });
    return { results: outcomes.map(timedResult) };
  }

  // Every RPC of the service, so a new one without a handler does not build.
  const handlers: ServiceImpl<typeof IngestService> = {
    async publishClicks(req) {
      return { results: await ingestClicks(req.clicks) };
    },
    async streamClicks(requests) {
      const total = { accepted: 0n, rejected: 0n, duplicates: 0n, lastStreamSequence: 0n };
      for await (const req of requests) {
        for (const r of await ingestClicks(req.clicks)) {
          if (r.outcome.case === "rejected") total.rejected++;
          else if (r.outcome.case === "accepted") {
            total.accepted++;
            if (r.outcome.value.duplicate) total.duplicates++;
            if (r.outcome.value.streamSequence > total.lastStreamSequence) total.lastStreamSequence = r.outcome.value.streamSequence;
          }
        }
      }
      return total;
    },
    publishContent: (req) => ingestEvents(PAGES, req.pages),
    publishLikes: (req) => ingestEvents(LIKES, req.likes, { userid: (l) => l.userid, alsoStored: () => 0 }),
    publishInterests: (req) =>
      ingestEvents(INTERESTS, req.interests, {
        userid: (i) => i.userid,
        alsoStored: (i, now) => publisher.interestEmbeddingSizeOf(i, limits.embeddingDimension, now),
      }),
    async deleteUser(req) {
      const userid = orInvalidArgument(() => checkUserid(req.userid));
      const partition = publisher.partitionOf(userid);
      const r = await publishAndWait(
        "user-deleted",
        logger,
        () => publisher.publishUserDeleted(userid, Date.now()),
        waitFor(
          (bus) => bus.topology.clicksStream,
          (bus) => bus.topology.clicksSubject(partition),
          ERASURE_CONSUMERS,
        ),
      );
      logger.info({ userid, eventId: r.eventId, seq: Number(r.streamSequence) }, "user erased");
      return r;
    },
    async setPageVisibility(req) {
      const url = orInvalidArgument(() => checkUrl(req.url));
      const r = await publishAndWait(
        "visibility",
        logger,
        () => publisher.publishVisibility(url, req.hidden, Date.now()),
        waitFor(
          (bus) => bus.topology.visibilityStream,
          (bus) => bus.topology.visibilitySubject(urlKey(url)),
          VISIBILITY_CONSUMERS,
        ),
      );
      logger.info({ url, hidden: req.hidden, eventId: r.eventId }, req.hidden ? "page hidden" : "page shown");
      return r;
    },
  };
  return (router: ConnectRouter) => router.service(IngestService, handlers);
}
