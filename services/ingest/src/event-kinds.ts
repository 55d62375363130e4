import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { userEventMessageId, type Bus } from "@recsys/bus";
import { ContentPageSchema, LikeSchema, StatedInterestSchema } from "@recsys/contracts/events/v1/events";
import type { ContentInput, InterestInput, LikeInput } from "@recsys/contracts/ingest/v1/ingest";
import { toValidInterest, toValidLike, type ValidInterest, type ValidLike } from "./engagement.js";
import { partitionOf } from "./hashing.js";
import { pagePartitionOf, toValidPage, type ValidPage } from "./pages.js";

export const MAX_PAGES_PER_CALL = 1_000;
export const MAX_ENGAGEMENTS_PER_CALL = 10_000;

/** An event versioned by its source time: a later version of the same thing wins. */
export interface TimedEvent {
  eventId: string;
  sourceTimeMs: number;
}

type Topology = Bus["topology"];

/**
 * A kind of event ingest publishes one message per event (a page, a like, an interest): a new kind is one of these and its RPC.
 * Clicks are batched per partition and budgeted per user, so they have a path of their own.
 */
export interface EventKind<Input, Valid extends TimedEvent, Schema extends DescMessage> {
  /** The call's list, as refusals and logs name it. */
  field: string;
  maxPerCall: number;
  /** One item as the wire has it, checked; throws FieldError naming the field. */
  validate(input: Input, nowMs: number, maxClockSkewMs: number): Valid;
  stream(topology: Topology): string;
  /** The stream another service writes what each event makes (the embedder's embeddings): while it is full, the events are refused. */
  downstream?(topology: Topology): string;
  /** Events that must be consumed in order share a subject. */
  subject(topology: Topology, event: Valid, partitions: number): string;
  /** The broker's dedup id: the same event sent again is the same message. */
  messageId(event: Valid): string;
  schema: Schema;
  /** The payload (built with `create`, which refuses a misspelled field). */
  message(event: Valid, ingestTimeMs: number): MessageShape<Schema>;
}

export const PAGES: EventKind<ContentInput, ValidPage, typeof ContentPageSchema> = {
  field: "pages",
  maxPerCall: MAX_PAGES_PER_CALL,
  validate: (p, nowMs, maxClockSkewMs) => toValidPage({ url: p.url, id: p.id, title: p.title, text: p.text, source_time: p.sourceTime }, nowMs, maxClockSkewMs),
  stream: (topology) => topology.contentStream,
  downstream: (topology) => topology.embeddingsStream,
  subject: (topology, p, partitions) => topology.contentSubject(pagePartitionOf(p.url, partitions)),
  messageId: (p) => p.eventId,
  schema: ContentPageSchema,
  message: (p, ingestTimeMs) =>
    create(ContentPageSchema, {
      eventId: p.eventId,
      url: p.url,
      id: p.id,
      title: p.title,
      text: p.text,
      sourceTimeMs: BigInt(p.sourceTimeMs),
      ingestTimeMs: BigInt(ingestTimeMs),
    }),
};

export const LIKES: EventKind<LikeInput, ValidLike, typeof LikeSchema> = {
  field: "likes",
  maxPerCall: MAX_ENGAGEMENTS_PER_CALL,
  validate: (l, nowMs, maxClockSkewMs) =>
    toValidLike({ userid: l.userid, page_id: l.pageId, liked: l.liked, source_time: l.sourceTime, event_id: l.eventId }, nowMs, maxClockSkewMs),
  stream: (topology) => topology.engagementStream,
  subject: (topology, l, partitions) => topology.likesSubject(partitionOf(l.userid, partitions)),
  messageId: (l) => userEventMessageId("like", l.userid, l.eventId),
  schema: LikeSchema,
  message: (l, ingestTimeMs) =>
    create(LikeSchema, {
      eventId: l.eventId,
      userid: l.userid,
      pageId: l.pageId,
      liked: l.liked,
      sourceTimeMs: BigInt(l.sourceTimeMs),
      ingestTimeMs: BigInt(ingestTimeMs),
    }),
};

export const INTERESTS: EventKind<InterestInput, ValidInterest, typeof StatedInterestSchema> = {
  field: "interests",
  maxPerCall: MAX_ENGAGEMENTS_PER_CALL,
  validate: (i, nowMs, maxClockSkewMs) =>
    toValidInterest({ userid: i.userid, text: i.text, source_time: i.sourceTime, event_id: i.eventId }, nowMs, maxClockSkewMs),
  stream: (topology) => topology.engagementStream,
  downstream: (topology) => topology.interestEmbeddingsStream,
  subject: (topology, i, partitions) => topology.statedInterestsSubject(partitionOf(i.userid, partitions)),
  messageId: (i) => userEventMessageId("interest", i.userid, i.eventId),
  schema: StatedInterestSchema,
  message: (i, ingestTimeMs) =>
    create(StatedInterestSchema, {
      eventId: i.eventId,
      userid: i.userid,
      text: i.text,
      sourceTimeMs: BigInt(i.sourceTimeMs),
      ingestTimeMs: BigInt(ingestTimeMs),
    }),
};
