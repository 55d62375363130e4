import { createHash } from "node:crypto";
import { nanos } from "@nats-io/transport-node";
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import type { Logger } from "@recsys/logging";
import { isNotFound, isPermissionDenied, isStreamNameInUse } from "./jetstream-errors.js";

/**
 * The broker drops a message whose Nats-Msg-Id it saw within this window (a client's retry); the
 * consumers' own idempotency covers everything older.
 */
export const DUPLICATE_WINDOW_MS = 10 * 60_000;

/**
 * The size of every stream. A full event stream refuses new messages and never drops old ones to make room (the consumers and the
 * archive need them); CLICKS, CONTENT, ENGAGEMENT and INTEREST_EMBEDDINGS drop theirs past an age, so their size bounds a rate.
 * DEAD_LETTERS drops its oldest letters instead (past the size or the age): a consumer must never stall because its letters cannot be kept.
 */
export interface StreamLimits {
  clicksMaxBytes: number;
  /** CLICKS' messages older than this are deleted: the archive keeps them. */
  clicksMaxAgeMs: number;
  contentMaxBytes: number;
  /** CONTENT's page versions older than this are deleted: the archive keeps them, EMBEDDINGS each url's newest embedding. */
  contentMaxAgeMs: number;
  embeddingsMaxBytes: number;
  engagementMaxBytes: number;
  /** ENGAGEMENT's messages older than this are deleted: the archive keeps them, profile their effect. */
  engagementMaxAgeMs: number;
  interestEmbeddingsMaxBytes: number;
  interestEmbeddingsMaxAgeMs: number;
  deadLettersMaxBytes: number;
  deadLettersMaxAgeMs: number;
  /** Letters kept per subject of DEAD_LETTERS: per user and consumer, or per message of no user (see deadLetterSubject). */
  deadLettersPerUser: number;
  clickMetricsMaxBytes: number;
  visibilityMaxBytes: number;
  /** Copies of each stream on as many JetStream servers (1: a single server). */
  replicas: number;
}

/** The limits from the settings every service shares (see commonEnv). */
export function streamLimitsFrom(config: {
  CLICKS_MAX_BYTES: number;
  CLICKS_MAX_AGE_MS: number;
  CONTENT_MAX_BYTES: number;
  CONTENT_MAX_AGE_MS: number;
  EMBEDDINGS_MAX_BYTES: number;
  ENGAGEMENT_MAX_BYTES: number;
  ENGAGEMENT_MAX_AGE_MS: number;
  INTEREST_EMBEDDINGS_MAX_BYTES: number;
  INTEREST_EMBEDDINGS_MAX_AGE_MS: number;
  DEAD_LETTERS_MAX_BYTES: number;
  DEAD_LETTERS_MAX_AGE_MS: number;
  DEAD_LETTERS_PER_USER: number;
  CLICK_METRICS_MAX_BYTES: number;
  VISIBILITY_MAX_BYTES: number;
  STREAM_REPLICAS: number;
}): StreamLimits {
  return {
    clicksMaxBytes: config.CLICKS_MAX_BYTES,
    clicksMaxAgeMs: config.CLICKS_MAX_AGE_MS,
    contentMaxBytes: config.CONTENT_MAX_BYTES,
    contentMaxAgeMs: config.CONTENT_MAX_AGE_MS,
    embeddingsMaxBytes: config.EMBEDDINGS_MAX_BYTES,
    engagementMaxBytes: config.ENGAGEMENT_MAX_BYTES,
    engagementMaxAgeMs: config.ENGAGEMENT_MAX_AGE_MS,
    interestEmbeddingsMaxBytes: config.INTEREST_EMBEDDINGS_MAX_BYTES,
    interestEmbeddingsMaxAgeMs: config.INTEREST_EMBEDDINGS_MAX_AGE_MS,
    deadLettersMaxBytes: config.DEAD_LETTERS_MAX_BYTES,
    deadLettersMaxAgeMs: config.DEAD_LETTERS_MAX_AGE_MS,
    deadLettersPerUser: config.DEAD_LETTERS_PER_USER,
    clickMetricsMaxBytes: config.CLICK_METRICS_MAX_BYTES,
    visibilityMaxBytes: config.VISIBILITY_MAX_BYTES,
    replicas: config.STREAM_REPLICAS,
  };
}

/**
 * JetStream's own limit for a stream that refuses when full: the configured size plus headroom (1%, at least 8 MiB).
 * Publishers refuse at the configured size (StreamFill); this is a backstop, as NATS 2.9 can drop a stream's oldest message at it.
 */
export function serverMaxBytes(limit: number): number {
  return limit + Math.max(8 * 2 ** 20, Math.ceil(limit / 100));
}

/** The subject key of a url on the streams kept per url (EMBEDDINGS, VISIBILITY): the first 32 hex digits of its sha-256. */
export function urlKey(url: string): string {
  return createHash("sha256").update(url).digest("hex").slice(0, 32);
}

/**
 * Stream names and subjects of one namespace ("" in production; tests use their own). With `limits`, streams are kept at those sizes;
 * without (tools, tests of one part), they are created without limits and existing ones are left as the services set them.
 */
export class Topology {
  constructor(
    readonly namespace: string,
    readonly limits?: StreamLimits,
  ) {}

  private streamName(base: string): string {
    return this.namespace ? `${this.namespace.toUpperCase()}_${base}` : base;
  }
  private subject(base: string): string {
    return this.namespace ? `${this.namespace}.${base}` : base;
  }

  get clicksStream(): string {
    return this.streamName("CLICKS");
  }
  clicksSubject(partition: number): string {
    return this.subject(`clicks.${partition}`);
  }
  get clicksSubjects(): string {
    return this.subject("clicks.>");
  }
  get contentStream(): string {
    return this.streamName("CONTENT");
  }
  contentSubject(partition: number): string {
    return this.subject(`content.${partition}`);
  }
  get contentSubjects(): string {
    return this.subject("content.>");
  }
  get embeddingsStream(): string {
    return this.streamName("EMBEDDINGS");
  }
  /** One subject per url (a hash of it): the stream keeps the newest embedding of each url. */
  embeddingsSubject(urlHash: string): string {
    return this.subject(`embeddings.${urlHash}`);
  }
  get embeddingsSubjects(): string {
    return this.subject("embeddings.>");
  }
  get engagementStream(): string {
    return this.streamName("ENGAGEMENT");
  }
  /** Likes and unlikes, partitioned by user. */
  likesSubject(partition: number): string {
    return this.subject(`engagement.likes.${partition}`);
  }
  get likesSubjects(): string {
    return this.subject("engagement.likes.>");
  }
  /** Interests stated in words, partitioned by user; the embedder turns them into vectors. */
  statedInterestsSubject(partition: number): string {
    return this.subject(`engagement.interests.${partition}`);
  }
  get statedInterestsSubjects(): string {
    return this.subject("engagement.interests.>");
  }
  get interestEmbeddingsStream(): string {
    return this.streamName("INTEREST_EMBEDDINGS");
  }
  interestEmbeddingsSubject(partition: number): string {
    return this.subject(`interest-embeddings.${partition}`);
  }
  get interestEmbeddingsSubjects(): string {
    return this.subject("interest-embeddings.>");
  }
  get deadLetterStream(): string {
    return this.streamName("DEAD_LETTERS");
  }
  /**
   * Dead letters are filed by who filed them (dlq.clicks, dlq.content, …), then by whom they are about: `dlq.<source>.u<hash of
   * the userid>` for a user's, `dlq.<source>.m<sequence>` for the items of a message of no user. DEAD_LETTERS keeps at most
   * `deadLettersPerUser` letters per subject, so one user's letters only ever push out their own. Without `key`: the source's
   * prefix (letters filed before, under dlq.<source> alone, are read too).
   */
  deadLetterSubject(source: string, key?: { userid: string } | { sequence: number }): string {
    if (key === undefined) return this.subject(`dlq.${source}`);
    const k = "userid" in key ? `u${createHash("sha256").update(key.userid).digest("hex").slice(0, 24)}` : `m${key.sequence}`;
    return this.subject(`dlq.${source}.${k}`);
  }
  get deadLetterSubjects(): string {
    return this.subject("dlq.>");
  }
  /** Clicks per (userid, event, url) in hopping windows, emitted by analytics: the reference's `clickstream_aggregated` topic. */
  get clickMetricsStream(): string {
    return this.streamName("CLICK_METRICS");
  }
  get clickMetricsSubject(): string {
    return this.subject("click-metrics.windows");
  }
  get clickMetricsSubjects(): string {
    return this.subject("click-metrics.>");
  }
  /** Pages hidden from recommendations or shown again (PageVisibility): one subject per url (a hash of it), its latest state kept. */
  get visibilityStream(): string {
    return this.streamName("VISIBILITY");
  }
  visibilitySubject(urlHash: string): string {
    return this.subject(`visibility.${urlHash}`);
  }
  get visibilitySubjects(): string {
    return this.subject("visibility.>");
  }
  private refuseWhenFull(maxBytes: number | undefined): Partial<StreamConfig> {
    return { discard: DiscardPolicy.New, ...(maxBytes === undefined ? {} : { max_bytes: serverMaxBytes(maxBytes) }) };
  }

  /** Messages older than `maxAgeMs` are deleted (JetStream wants the duplicate window within the age). */
  private expiring(maxAgeMs: number | undefined): Partial<StreamConfig> {
    return maxAgeMs === undefined ? {} : { max_age: nanos(maxAgeMs), duplicate_window: nanos(Math.min(DUPLICATE_WINDOW_MS, maxAgeMs)) };
  }

  /** A file-backed stream kept by limits, on its own subjects, deduplicated within DUPLICATE_WINDOW_MS. */
  private stream(name: string, subjects: string, settings: Partial<StreamConfig>): Partial<StreamConfig> & { name: string } {
    return {
      name,
      subjects: [subjects],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
      ...(this.limits ? { num_replicas: this.limits.replicas } : {}),
      ...settings,
    };
  }

  streamConfigs(): Array<Partial<StreamConfig> & { name: string }> {
    const limits = this.limits;
    return [
      // Full, CLICKS refuses clicks; its oldest ones go past their age, kept by the archive. So do CONTENT's, ENGAGEMENT's and INTEREST_EMBEDDINGS':
      // their size bounds what comes in over the age, not all there ever was.
      this.stream(this.clicksStream, this.clicksSubjects, { ...this.refuseWhenFull(limits?.clicksMaxBytes), ...this.expiring(limits?.clicksMaxAgeMs) }),
      this.stream(this.contentStream, this.contentSubjects, { ...this.refuseWhenFull(limits?.contentMaxBytes), ...this.expiring(limits?.contentMaxAgeMs) }),
      // A compacted log: the newest embedding per url survives, older versions go.
      this.stream(this.embeddingsStream, this.embeddingsSubjects, { max_msgs_per_subject: 1, ...this.refuseWhenFull(limits?.embeddingsMaxBytes) }),
      this.stream(this.engagementStream, this.subject("engagement.>"), {
        ...this.refuseWhenFull(limits?.engagementMaxBytes),
        ...this.expiring(limits?.engagementMaxAgeMs),
      }),
      this.stream(this.interestEmbeddingsStream, this.interestEmbeddingsSubjects, {
        ...this.refuseWhenFull(limits?.interestEmbeddingsMaxBytes),
        ...this.expiring(limits?.interestEmbeddingsMaxAgeMs),
      }),
      // A compacted log like EMBEDDINGS: each url's latest visibility survives, so a consumer that starts over reads every hidden page.
      this.stream(this.visibilityStream, this.visibilitySubjects, { max_msgs_per_subject: 1, ...this.refuseWhenFull(limits?.visibilityMaxBytes) }),
      // Dead letters are a record, not a queue: the oldest make room for new ones.
      this.stream(this.deadLetterStream, this.deadLetterSubjects, {
        discard: DiscardPolicy.Old,
        ...(limits
          ? { max_bytes: limits.deadLettersMaxBytes, max_age: nanos(limits.deadLettersMaxAgeMs), max_msgs_per_subject: limits.deadLettersPerUser }
          : {}),
      }),
      // Derived from CLICKS (analytics can emit it again): the oldest rows make room, so a full stream never stops emission.
      this.stream(this.clickMetricsStream, this.clickMetricsSubjects, {
        discard: DiscardPolicy.Old,
        ...(limits ? { max_bytes: limits.clickMetricsMaxBytes } : {}),
      }),
    ];
  }
}

/**
 * Streams missing that this NATS user may not create: with NATS users (deploy/nats/nats.conf), only
 * ingest and the admin keep the streams, and the other services wait for them.
 */
export class StreamsMissingError extends Error {
  constructor(readonly streams: string[]) {
    super(`stream${streams.length > 1 ? "s" : ""} ${streams.join(", ")} missing, and this NATS user may not create streams: ingest (or an admin) creates them`);
  }
}

/**
 * Creates every stream of the topology, and updates existing ones when it carries limits; safe to run from every service at every start.
 * A size limit below what a stream holds is not applied (JetStream would delete its oldest messages); a user that may not create streams throws StreamsMissingError.
 */
export async function ensureStreams(jsm: JetStreamManager, topology: Topology, logger?: Logger): Promise<void> {
  const missing: string[] = [];
  const notUpdated: string[] = [];
  for (const cfg of topology.streamConfigs()) {
    try {
      const info = await jsm.streams.info(cfg.name);
      if (!topology.limits) continue;
      const update = { ...cfg };
      if (cfg.max_bytes !== undefined && cfg.max_bytes > 0 && info.state.bytes > cfg.max_bytes && cfg.discard === DiscardPolicy.New) {
        update.max_bytes = info.config.max_bytes;
        logger?.error(
          { stream: cfg.name, bytes: info.state.bytes, configured: cfg.max_bytes, kept: info.config.max_bytes },
          "the stream holds more than its configured size: keeping its limit, as a lower one would delete its oldest messages",
        );
      }
      if (cfg.discard === DiscardPolicy.Old && cfg.max_bytes !== undefined && cfg.max_bytes > 0 && info.state.bytes > cfg.max_bytes) {
        logger?.warn(
          { stream: cfg.name, bytes: info.state.bytes, limit: cfg.max_bytes },
          "the stream holds more than its size limit: its oldest messages are deleted to fit",
        );
      }
      if (cfg.max_age !== undefined && cfg.max_age > 0 && (info.config.max_age === 0 || cfg.max_age < info.config.max_age) && info.state.messages > 0) {
        logger?.warn(
          { stream: cfg.name, maxAgeMs: Number(cfg.max_age) / 1e6 },
          "the stream now keeps messages for a limited time: older ones are deleted now (the archive keeps those of CLICKS, CONTENT and ENGAGEMENT, not INTEREST_EMBEDDINGS')",
        );
      }
      const perSubject = cfg.max_msgs_per_subject;
      const before = info.config.max_msgs_per_subject;
      if (cfg.name === topology.deadLetterStream && perSubject !== undefined && perSubject > 0 && (before <= 0 || perSubject < before)) {
        // Letters filed before they were filed by user, all under dlq.<source>, would lose their oldest at once past the limit:
        // it is kept as it is until those are read and purged. (A user's letters past a lowered limit go, as configured.)
        const legacy = (await jsm.streams.info(cfg.name, { subjects_filter: `${topology.deadLetterSubject("")}*` })).state.subjects ?? {};
        const over = Object.entries(legacy).filter(([, n]) => n > perSubject);
        if (over.length > 0) {
          update.max_msgs_per_subject = before;
          logger?.error(
            { stream: cfg.name, subjects: Object.fromEntries(over), configured: perSubject },
            "dead letters filed under their source alone outnumber the limit per subject: keeping the stream's limit until they are purged, as it would delete their oldest",
          );
        }
      }
      await jsm.streams.update(cfg.name, update);
    } catch (err) {
      if (isPermissionDenied(err)) {
        notUpdated.push(cfg.name);
        continue;
      }
      if (!isNotFound(err)) throw err;
      try {
        await jsm.streams.add(cfg);
      } catch (addErr) {
        if (isPermissionDenied(addErr)) missing.push(cfg.name);
        // Another service created it between our info and add.
        else if (!isStreamNameInUse(addErr)) throw addErr;
      }
    }
  }
  if (notUpdated.length > 0)
    logger?.info({ streams: notUpdated }, "this NATS user may not update streams: they keep the configuration ingest (or an admin) gave them");
  if (missing.length > 0) throw new StreamsMissingError(missing);
}
