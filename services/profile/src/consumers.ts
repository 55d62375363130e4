import { fromBinary } from "@bufbuild/protobuf";
import { runDurableConsumer, type Bus, type Disposition } from "@recsys/bus";
import { ClickSchema, ContentEmbeddingSchema } from "@recsys/contracts/events/v1/events";
import type { Logger } from "@recsys/logging";
import { isDataError, type ClickToApply, type PageEmbedding, type ProfileStore } from "./pg-store.js";
import { embeddingProblem } from "./vectors.js";

export const EMBEDDINGS_DURABLE = "profile-embeddings";
export const CLICKS_DURABLE = "profile-clicks";
export const EMBEDDINGS_DEAD_LETTER_SOURCE = "embeddings";
// Not "clicks": covisit files its own refusals there, and each consumer's count should be its own.
export const CLICKS_DEAD_LETTER_SOURCE = "profile-clicks";

type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

export function decodeEmbedding(data: Uint8Array, dimension: number): Decoded<PageEmbedding> {
  let e;
  try {
    e = fromBinary(ContentEmbeddingSchema, data);
  } catch (err) {
    return { ok: false, error: String(err) };
  }
  if (!e.url) return { ok: false, error: "missing url" };
  const problem = embeddingProblem(e.embedding, dimension);
  if (problem) return { ok: false, error: problem };
  return { ok: true, value: { url: e.url, id: e.id, title: e.title, text: e.text, embedding: e.embedding, version: e.version, model: e.model } };
}

export function decodeClick(data: Uint8Array): Decoded<ClickToApply> {
  let c;
  try {
    c = fromBinary(ClickSchema, data);
  } catch (err) {
    return { ok: false, error: String(err) };
  }
  if (!c.eventId || !c.userid || !c.url) return { ok: false, error: "missing event_id, userid or url" };
  return { ok: true, value: { eventId: c.eventId, userid: c.userid, url: c.url, eventTimeMs: Number(c.eventTimeMs) } };
}

/** The effect of one EMBEDDINGS message, without NATS. A database error means: try again later. */
export async function applyEmbeddingMessage(data: Uint8Array, store: ProfileStore, dimension: number): Promise<Disposition> {
  const decoded = decodeEmbedding(data, dimension);
  if (!decoded.ok) return { kind: "dead-letter", reason: `undecodable: ${decoded.error}` };
  try {
    await store.applyEmbedding(decoded.value);
    return { kind: "ack" };
  } catch (err) {
    return databaseFailure(err);
  }
}

/** The effect of one CLICKS message, without NATS. A database error means: try again later. */
export async function applyClickMessage(data: Uint8Array, store: ProfileStore): Promise<Disposition> {
  const decoded = decodeClick(data);
  if (!decoded.ok) return { kind: "dead-letter", reason: `undecodable: ${decoded.error}` };
  try {
    await store.applyClick(decoded.value);
    return { kind: "ack" };
  } catch (err) {
    return databaseFailure(err);
  }
}

function databaseFailure(err: unknown): Disposition {
  if (isDataError(err)) return { kind: "dead-letter", reason: `refused by PostgreSQL: ${String(err)}` };
  return { kind: "retry", reason: `PostgreSQL: ${String(err)}` };
}

interface ConsumerOptions {
  bus: Bus;
  store: ProfileStore;
  logger: Logger;
  concurrency: number;
  signal: AbortSignal;
}

/**
 * EMBEDDINGS into `content`, with a durable consumer shared by every profile replica. Acked after
 * the transaction committed; a redelivery is harmless because only a newer version changes anything.
 */
export function runEmbeddingConsumer(opts: ConsumerOptions & { dimension: number }) {
  return runDurableConsumer({
    bus: opts.bus,
    stream: opts.bus.topology.embeddingsStream,
    durable: EMBEDDINGS_DURABLE,
    filterSubject: opts.bus.topology.embeddingsSubjects,
    concurrency: opts.concurrency,
    deadLetterSource: EMBEDDINGS_DEAD_LETTER_SOURCE,
    logger: opts.logger,
    signal: opts.signal,
    handle: (m) => applyEmbeddingMessage(m.data, opts.store, opts.dimension),
  });
}

/**
 * CLICKS into interests (or parked), with a durable consumer of its own. Acked after the
 * transaction committed; a redelivery is harmless because applied event ids are remembered.
 */
export function runClickConsumer(opts: ConsumerOptions) {
  return runDurableConsumer({
    bus: opts.bus,
    stream: opts.bus.topology.clicksStream,
    durable: CLICKS_DURABLE,
    filterSubject: opts.bus.topology.clicksSubjects,
    concurrency: opts.concurrency,
    deadLetterSource: CLICKS_DEAD_LETTER_SOURCE,
    logger: opts.logger,
    signal: opts.signal,
    handle: (m) => applyClickMessage(m.data, opts.store),
  });
}
