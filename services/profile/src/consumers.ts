import { fromBinary } from "@bufbuild/protobuf";
import {
  applicableClicks,
  clickDeadLetter,
  consumerNames,
  readClicks,
  readVisibility,
  runDurableConsumer,
  type Bus,
  type ClickToApply,
  type ConsumedBy,
  type CrashAfterEffects,
  type DeadLetterWhy,
  type Disposition,
  type ItemDeadLetter,
  type MsgHdrs,
} from "@recsys/bus";
import { Counter, registry, type DependencyHealth } from "@recsys/metrics";
import {
  ContentEmbeddingSchema,
  InterestEmbeddingSchema,
  LikeSchema,
  type ContentEmbedding,
  type InterestEmbedding,
  type Like,
} from "@recsys/contracts/events/v1/events";
import type { Logger } from "@recsys/logging";
import type { ProfileStore } from "./pg-store.js";
import { isDataError, sqlState } from "./sql-state.js";
import type { ClickOutcome, InterestToApply, LikeToApply, PageEmbedding, PageVisibility, UserErasure } from "./types.js";
import { embeddingProblem } from "./vectors.js";

type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

export function decodeEmbedding(data: Uint8Array, dimension: number): Decoded<PageEmbedding> {
  let e: ContentEmbedding;
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

/** A CLICKS message: a ClickBatch (its content-type says so), one Click, or a UserDeleted; at its stream sequence. */
export interface ClickMessage {
  data: Uint8Array;
  headers?: MsgHdrs;
  /** Its CLICKS stream sequence: a user's erasure cuts the clicks of the messages before it. */
  seq: number;
}

export function decodeLike(data: Uint8Array): Decoded<LikeToApply> {
  let l: Like;
  try {
    l = fromBinary(LikeSchema, data);
  } catch (err) {
    return { ok: false, error: String(err) };
  }
  if (!l.eventId || !l.userid || !l.pageId) return { ok: false, error: "missing event_id, userid or page_id" };
  return {
    ok: true,
    value: { eventId: l.eventId, userid: l.userid, pageId: l.pageId, liked: l.liked, sourceTimeMs: l.sourceTimeMs, ingestTimeMs: l.ingestTimeMs },
  };
}

export function decodeInterest(data: Uint8Array, dimension: number): Decoded<InterestToApply> {
  let i: InterestEmbedding;
  try {
    i = fromBinary(InterestEmbeddingSchema, data);
  } catch (err) {
    return { ok: false, error: String(err) };
  }
  if (!i.eventId || !i.userid) return { ok: false, error: "missing event_id or userid" };
  const problem = embeddingProblem(i.embedding, dimension);
  if (problem) return { ok: false, error: problem };
  return { ok: true, value: { eventId: i.eventId, userid: i.userid, embedding: i.embedding, sourceTimeMs: i.sourceTimeMs, ingestTimeMs: i.ingestTimeMs } };
}

export function decodeVisibility(data: Uint8Array, seq: number): Decoded<PageVisibility> {
  const v = readVisibility(data);
  return "error" in v ? { ok: false, error: v.error } : { ok: true, value: { ...v, seq } };
}

/**
 * Decodes a message and runs its effect; undecodable means dead-lettered, a database error means
 * try again later, an expired event (older than its user's horizon of applied ids) is dead-lettered.
 */
async function applyDecoded<T>(decoded: Decoded<T>, apply: (value: T) => Promise<{ status: string } | unknown>): Promise<Disposition> {
  if (!decoded.ok) return { kind: "dead-letter", cause: "undecodable", reason: `undecodable: ${decoded.error}` };
  try {
    const outcome = await apply(decoded.value);
    if ((outcome as { status?: string } | undefined)?.status === "expired") return { kind: "dead-letter", ...EXPIRED };
    return { kind: "ack" };
  } catch (err) {
    return databaseFailure(err);
  }
}

const EXPIRED: DeadLetterWhy = {
  cause: "expired",
  reason: "expired: older than its user's latest event by more than DEDUP_RETENTION_MS, so its id may no longer be known",
};

export function applyLikeMessage(data: Uint8Array, store: ProfileStore): Promise<Disposition> {
  return applyDecoded(decodeLike(data), (like) => store.applyLike(like));
}

export function applyInterestMessage(data: Uint8Array, store: ProfileStore, dimension: number): Promise<Disposition> {
  return applyDecoded(decodeInterest(data, dimension), (interest) => store.applyInterest(interest));
}

/** The effect of one VISIBILITY message at stream sequence `seq`, without NATS: an older state than the stored one changes nothing. */
export function applyVisibilityMessage(data: Uint8Array, seq: number, store: ProfileStore): Promise<Disposition> {
  // A hiding is acked, and HidePage answered, only once the queries' replica has it too.
  return applyDecoded(decodeVisibility(data, seq), async (visibility) => {
    const outcome = await store.applyVisibility(visibility);
    await store.replicated();
    return outcome;
  });
}

/** The effect of one EMBEDDINGS message, without NATS. A database error means: try again later. */
export function applyEmbeddingMessage(data: Uint8Array, store: ProfileStore, dimension: number): Promise<Disposition> {
  return applyDecoded(decodeEmbedding(data, dimension), (page) => store.applyEmbedding(page));
}

/** The effect of one CLICKS message, without NATS. A database error means: try again later. */
export async function applyClickMessage(m: ClickMessage, store: ProfileStore): Promise<Disposition> {
  return (await applyClickMessages([m], store))[0]!;
}

const clickOutcomes = new Counter({
  name: "recsys_profile_clicks_total",
  help: "Clicks the profile-clicks consumer applied, by outcome: applied (in the user's interest), parked (its page not embedded yet), duplicate (its event id applied before), expired (dead-lettered: older than its user's horizon of applied ids), erased (of a message before its user's erasure)",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

const erasures = new Counter({
  name: "recsys_profile_erasures_total",
  help: "UserDeleted messages the profile-clicks consumer applied, by outcome: erased (the user's rows deleted), superseded (an erasure at its sequence or later recorded already: nothing changed)",
  labelNames: ["outcome"] as const,
  registers: [registry],
});

/** Clicks in one call of apply_clicks by default: where the catch-up peaked in a sweep of 64-1,024. */
export const DEFAULT_CLICKS_PER_CALL = 256;

/**
 * The effect of CLICKS messages, without NATS, one disposition per message in order; their clicks go `clicksPerCall` to a transaction.
 * The batch's erasures (UserDeleted) go first, each a transaction, then its clicks, each cut when its message comes before its user's
 * erasure: the state of applying them in stream order, in as few calls of apply_clicks as without erasures.
 * An error PostgreSQL answered may be one click's doing: a batch of messages throws to go one by one, a lone message's clicks go one by one.
 */
export async function applyClickMessages(
  messages: readonly ClickMessage[],
  store: ProfileStore,
  clicksPerCall = DEFAULT_CLICKS_PER_CALL,
  isVisit: (event: string) => boolean = () => true,
): Promise<Disposition[]> {
  const decoded = messages.map(readClicks);
  // An event type that is no visit (VISIT_EVENTS) moves no interest: acked without effect.
  const clicks = applicableClicks(decoded).filter((c) => isVisit(c.event));
  const seqOf = new Map<ClickToApply, number>();
  decoded.forEach((d, i) => {
    if (!("error" in d)) for (const c of d.checked) if (!("error" in c)) seqOf.set(c, messages[i]!.seq);
  });
  const erasing = decoded.flatMap((d, i): UserErasure[] =>
    "error" in d || !d.deletion ? [] : [{ userid: d.deletion.userid, seq: messages[i]!.seq, ingestTimeMs: d.deletion.ingestTimeMs }],
  );
  const at = (part: readonly ClickToApply[]) => part.map((c) => ({ ...c, seq: seqOf.get(c) }));
  const refused = new Set<ClickToApply>();
  const expired = new Set<ClickToApply>();
  const count = (applied: readonly ClickToApply[], outcomes: ClickOutcome[]) =>
    outcomes.forEach((o, i) => {
      clickOutcomes.inc({ outcome: o.status });
      if (o.status === "expired") expired.add(applied[i]!);
    });
  let failure: Disposition | undefined;
  try {
    for (const erasure of erasing) erasures.inc({ outcome: await store.eraseUser(erasure) });
    // An erasure is acked, and DeleteUser answered, only once the queries' replica has it too.
    if (erasing.length > 0) await store.replicated();
    for (let k = 0; k < clicks.length; k += clicksPerCall) {
      const part = clicks.slice(k, k + clicksPerCall);
      count(part, await store.applyClicks(at(part)));
    }
  } catch (err) {
    if (messages.length > 1 && sqlState(err)) throw err;
    if (clicks.length > 1 && sqlState(err)) {
      for (const c of clicks) {
        try {
          count([c], await store.applyClicks(at([c])));
        } catch (one) {
          if (!isDataError(one)) {
            failure = databaseFailure(one);
            break;
          }
          refused.add(c);
        }
      }
    } else failure = databaseFailure(err);
  }
  return decoded.map((d): Disposition => {
    if ("error" in d) return { kind: "dead-letter", cause: "undecodable", reason: `undecodable: ${d.error}` };
    if (failure?.kind === "retry") return failure;
    // An erasure PostgreSQL refused (a value it can never store) is kept whole.
    if (d.deletion && failure) return failure;
    const deadLetters = d.checked.flatMap((c, index): ItemDeadLetter[] => {
      if ("error" in c) return [clickDeadLetter(d.clicks, index, { cause: "undecodable", reason: `undecodable: ${c.error}` })];
      if (refused.has(c) || failure)
        return [clickDeadLetter(d.clicks, index, failure?.kind === "dead-letter" ? failure : { cause: "refused", reason: "refused by PostgreSQL" })];
      if (expired.has(c)) return [clickDeadLetter(d.clicks, index, EXPIRED)];
      return [];
    });
    // Nothing of the message could be applied, all for one reason: keep the message as it came.
    if (d.clicks.length > 0 && deadLetters.length === d.clicks.length && deadLetters.every((l) => l.reason === deadLetters[0]!.reason))
      return { kind: "dead-letter", cause: deadLetters[0]!.cause, reason: deadLetters[0]!.reason };
    return deadLetters.length > 0 ? { kind: "ack", deadLetters } : { kind: "ack" };
  });
}

function databaseFailure(err: unknown): Disposition {
  if (isDataError(err)) return { kind: "dead-letter", cause: "refused", reason: `refused by PostgreSQL: ${String(err)}` };
  return { kind: "retry", reason: `PostgreSQL: ${String(err)}` };
}

interface ConsumerOptions {
  bus: Bus;
  store: ProfileStore;
  logger: Logger;
  concurrency: number;
  /** Failing while PostgreSQL refuses writes for a passing reason (its messages wait for redelivery). */
  postgres: DependencyHealth;
  crashAfterEffects?: CrashAfterEffects;
  signal: AbortSignal;
}

/** What every profile consumer shares: its bus, its names, PostgreSQL's health, the crash hook. */
function common(opts: ConsumerOptions, kind: ConsumedBy<"profile">) {
  return {
    bus: opts.bus,
    ...consumerNames("profile", kind),
    concurrency: opts.concurrency,
    dependency: opts.postgres,
    crashAfterEffects: opts.crashAfterEffects,
    logger: opts.logger,
    signal: opts.signal,
  };
}

/**
 * EMBEDDINGS into `content`, with a durable consumer shared by every profile replica. Acked after
 * the transaction committed; a redelivery is harmless because only a newer version changes anything.
 */
export function runEmbeddingConsumer(opts: ConsumerOptions & { dimension: number }) {
  return runDurableConsumer({
    ...common(opts, "embeddings"),
    stream: opts.bus.topology.embeddingsStream,
    filterSubject: opts.bus.topology.embeddingsSubjects,
    handle: (m) => applyEmbeddingMessage(m.data, opts.store, opts.dimension),
  });
}

/**
 * CLICKS into interests (or parked), in batches of up to `maxBatch` messages that arrived meanwhile, `clicksPerCall` clicks to a transaction.
 * Acked after they committed; a redelivery is harmless because applied event ids are remembered.
 */
export function runClickConsumer(opts: ConsumerOptions & { maxBatch: number; clicksPerCall: number; isVisit: (event: string) => boolean; lingerMs?: number }) {
  return runDurableConsumer({
    ...common(opts, "clicks"),
    stream: opts.bus.topology.clicksStream,
    filterSubject: opts.bus.topology.clicksSubjects,
    maxBatch: opts.maxBatch,
    lingerMs: opts.lingerMs,
    handleBatch: (messages) => applyClickMessages(messages, opts.store, opts.clicksPerCall, opts.isVisit),
  });
}

/** Likes from ENGAGEMENT, with a durable consumer of their own; redelivery is harmless (applied event ids). */
export function runLikeConsumer(opts: ConsumerOptions) {
  return runDurableConsumer({
    ...common(opts, "likes"),
    stream: opts.bus.topology.engagementStream,
    filterSubject: opts.bus.topology.likesSubjects,
    handle: (m) => applyLikeMessage(m.data, opts.store),
  });
}

/**
 * VISIBILITY into page_visibility, with a durable consumer of its own; a url's states are versioned by stream sequence, so a
 * redelivery or an older state after a newer one changes nothing.
 */
export function runVisibilityConsumer(opts: ConsumerOptions) {
  return runDurableConsumer({
    ...common(opts, "visibility"),
    stream: opts.bus.topology.visibilityStream,
    filterSubject: opts.bus.topology.visibilitySubjects,
    handle: (m) => applyVisibilityMessage(m.data, m.seq, opts.store),
  });
}

/** Stated interests' embeddings into interests; redelivery is harmless (applied event ids). */
export function runInterestConsumer(opts: ConsumerOptions & { dimension: number }) {
  return runDurableConsumer({
    ...common(opts, "interest-embeddings"),
    stream: opts.bus.topology.interestEmbeddingsStream,
    filterSubject: opts.bus.topology.interestEmbeddingsSubjects,
    handle: (m) => applyInterestMessage(m.data, opts.store, opts.dimension),
  });
}
