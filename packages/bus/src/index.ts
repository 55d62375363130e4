import { setTimeout as sleep } from "node:timers/promises";
import { connect, nanos, headers, type NatsConnection, type MsgHdrs } from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { Logger } from "@recsys/logging";
import { publishedMessages } from "@recsys/metrics";
import { injectInto } from "@recsys/tracing";
import pRetry from "p-retry";
import type { JetStreamPublishOptions, PubAck } from "@nats-io/jetstream";

export { headers, type MsgHdrs, type NatsConnection, type JetStreamClient, type JetStreamManager };
export type { JsMsg, Consumer } from "@nats-io/jetstream";
export { AckPolicy, DeliverPolicy, JetStreamApiError } from "@nats-io/jetstream";

/**
 * The size of every stream. A full CLICKS, CONTENT, EMBEDDINGS, ENGAGEMENT or INTEREST_EMBEDDINGS
 * refuses new messages (the publisher gets an error; ingest answers ResourceExhausted) and never
 * drops old ones: a rebuild needs them. DEAD_LETTERS drops its oldest letters instead (past the
 * size or the age): a consumer must never stall because its dead letters cannot be kept.
 */
export interface StreamLimits {
  clicksMaxBytes: number;
  contentMaxBytes: number;
  embeddingsMaxBytes: number;
  engagementMaxBytes: number;
  interestEmbeddingsMaxBytes: number;
  deadLettersMaxBytes: number;
  deadLettersMaxAgeMs: number;
}

/** The limits from the settings every service shares (see commonEnv). */
export function streamLimitsFrom(config: {
  CLICKS_MAX_BYTES: number;
  CONTENT_MAX_BYTES: number;
  EMBEDDINGS_MAX_BYTES: number;
  ENGAGEMENT_MAX_BYTES: number;
  INTEREST_EMBEDDINGS_MAX_BYTES: number;
  DEAD_LETTERS_MAX_BYTES: number;
  DEAD_LETTERS_MAX_AGE_MS: number;
}): StreamLimits {
  return {
    clicksMaxBytes: config.CLICKS_MAX_BYTES,
    contentMaxBytes: config.CONTENT_MAX_BYTES,
    embeddingsMaxBytes: config.EMBEDDINGS_MAX_BYTES,
    engagementMaxBytes: config.ENGAGEMENT_MAX_BYTES,
    interestEmbeddingsMaxBytes: config.INTEREST_EMBEDDINGS_MAX_BYTES,
    deadLettersMaxBytes: config.DEAD_LETTERS_MAX_BYTES,
    deadLettersMaxAgeMs: config.DEAD_LETTERS_MAX_AGE_MS,
  };
}

/**
 * JetStream's own limit for a stream that refuses when full: the configured size plus headroom
 * (1%, at least 8 MiB). Publishers refuse at the configured size; the server's limit is a backstop,
 * as NATS 2.9 can drop a stream's oldest message when a publish reaches it (see ingest's StreamFill).
 */
export function serverMaxBytes(limit: number): number {
  return limit + Math.max(8 * 2 ** 20, Math.ceil(limit / 100));
}

/** A publish refused because its stream is at its size limit. */
export function isStreamFull(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === 10077 && /maximum (bytes|messages)/i.test(err.message);
}

/**
 * Stream names and subjects of one namespace ("" in production; tests use their own). With
 * `limits`, the streams are created and kept at those sizes; without (tools, tests of one part),
 * streams are created without limits and existing ones are left as the services set them.
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
  /** Dead letters are filed by the stream they came from: dlq.clicks, dlq.content, … */
  deadLetterSubject(source: string): string {
    return this.subject(`dlq.${source}`);
  }
  get deadLetterSubjects(): string {
    return this.subject("dlq.>");
  }
  private refuseWhenFull(maxBytes: number | undefined): Partial<StreamConfig> {
    return { discard: DiscardPolicy.New, ...(maxBytes === undefined ? {} : { max_bytes: serverMaxBytes(maxBytes) }) };
  }

  streamConfigs(): Array<Partial<StreamConfig> & { name: string }> {
    return [
      {
        name: this.clicksStream,
        subjects: [this.clicksSubjects],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        ...this.refuseWhenFull(this.limits?.clicksMaxBytes),
        // Broker-side dedup on Nats-Msg-Id covers client retries within this window;
        // the consumers' own idempotency covers everything older.
        duplicate_window: nanos(10 * 60_000),
      },
      {
        name: this.contentStream,
        subjects: [this.contentSubjects],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        ...this.refuseWhenFull(this.limits?.contentMaxBytes),
        duplicate_window: nanos(10 * 60_000),
      },
      {
        name: this.embeddingsStream,
        subjects: [this.embeddingsSubjects],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        // A compacted log: the newest embedding per url survives, older versions go.
        max_msgs_per_subject: 1,
        ...this.refuseWhenFull(this.limits?.embeddingsMaxBytes),
        duplicate_window: nanos(10 * 60_000),
      },
      {
        name: this.engagementStream,
        subjects: [this.subject("engagement.>")],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        ...this.refuseWhenFull(this.limits?.engagementMaxBytes),
        duplicate_window: nanos(10 * 60_000),
      },
      {
        name: this.interestEmbeddingsStream,
        subjects: [this.interestEmbeddingsSubjects],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        ...this.refuseWhenFull(this.limits?.interestEmbeddingsMaxBytes),
        duplicate_window: nanos(10 * 60_000),
      },
      {
        name: this.deadLetterStream,
        subjects: [this.deadLetterSubjects],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        ...(this.limits ? { max_bytes: this.limits.deadLettersMaxBytes, max_age: nanos(this.limits.deadLettersMaxAgeMs) } : {}),
        duplicate_window: nanos(10 * 60_000),
      },
    ];
  }
}

export interface Bus {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  topology: Topology;
  /** How long a delivered message may go unacked before JetStream redelivers it. */
  ackWaitMs: number;
  /** Publishes and counts the message in `recsys_published_messages_total` once JetStream stored it. */
  publish(subject: string, data: Uint8Array, opts?: Partial<JetStreamPublishOptions>): Promise<PubAck>;
  connected(): boolean;
  close(): Promise<void>;
}

export const DEFAULT_ACK_WAIT_MS = 30_000;

/** Rejects with an error p-retry retries: it gives up at once on a TypeError (an invalid URL) or on a non-Error. */
const retriedAlways = (err: unknown) => Promise.reject(err instanceof Error && !(err instanceof TypeError) ? err : new Error(String(err), { cause: err }));

/** Connects for good: reconnects forever with backoff; callers watch `connected()` for health. */
export async function connectBus(opts: { url: string; name: string; namespace: string; logger: Logger; ackWaitMs?: number; limits?: StreamLimits }): Promise<Bus> {
  const conn = await pRetry(
    () =>
      connect({
        servers: opts.url,
        name: opts.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        pingInterval: 10_000,
        // Every publish is a request for its PubAck; with async traces on, each builds an Error
        // (a stack capture) in advance: 8% of covisit's CPU and 13% of ingest's in a replay profile.
        noAsyncTraces: true,
      }).catch(retriedAlways),
    {
      retries: Number.POSITIVE_INFINITY,
      // The wait grows linearly (200 ms more each attempt, at most 5 s), which p-retry's exponential
      // backoff cannot express: it is taken here, and p-retry adds none.
      minTimeout: 0,
      async onFailedAttempt({ error, attemptNumber }) {
        const waitMs = Math.min(5_000, 200 * attemptNumber);
        opts.logger.warn({ err: String(error), attempt: attemptNumber, waitMs }, "NATS not reachable, retrying");
        await sleep(waitMs);
      },
    },
  );
  let up = true;
  void (async () => {
    for await (const s of conn.status()) {
      if (s.type === "disconnect") up = false;
      if (s.type === "reconnect") up = true;
      if (s.type === "disconnect" || s.type === "reconnect") opts.logger.warn({ status: s.type }, "NATS connection");
    }
  })();
  const jsm = await jetstreamManager(conn);
  const topology = new Topology(opts.namespace, opts.limits);
  await ensureStreams(jsm, topology, opts.logger);
  const js = jetstream(conn);
  return {
    nc: conn,
    js,
    jsm,
    topology,
    ackWaitMs: opts.ackWaitMs ?? DEFAULT_ACK_WAIT_MS,
    async publish(subject, data, publishOpts) {
      const h = publishOpts?.headers ?? headers();
      injectInto(h);
      const ack = await js.publish(subject, data, { ...publishOpts, headers: h });
      publishedMessages.inc({ stream: ack.stream });
      return ack;
    },
    connected: () => up && !conn.isClosed(),
    close: () => conn.drain(),
  };
}

/**
 * Creates every stream of the topology, and updates existing ones when the topology carries limits;
 * safe to run from every service at every start. A size limit below what a stream holds is not
 * applied (JetStream would delete its oldest messages to fit): the stream keeps its limit and the
 * logger says so.
 */
export async function ensureStreams(jsm: JetStreamManager, topology: Topology, logger?: Logger): Promise<void> {
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
        logger?.warn({ stream: cfg.name, bytes: info.state.bytes, limit: cfg.max_bytes }, "the stream holds more than its size limit: its oldest messages are deleted to fit");
      }
      await jsm.streams.update(cfg.name, update);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await jsm.streams.add(cfg);
      } catch (addErr) {
        // Another service created it between our info and add.
        if (!String(addErr).includes("already in use")) throw addErr;
      }
    }
  }
}

/** A durable pull consumer with explicit acks, created or updated idempotently. */
export async function ensureDurableConsumer(
  jsm: JetStreamManager,
  stream: string,
  cfg: Partial<ConsumerConfig> & { durable_name: string },
): Promise<void> {
  const full: Partial<ConsumerConfig> = {
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: nanos(DEFAULT_ACK_WAIT_MS),
    ...cfg,
  };
  try {
    await jsm.consumers.info(stream, cfg.durable_name);
    // Where delivery starts is fixed at creation (a consumer may start past a sequence); the rest follows cfg.
    const { deliver_policy: _policy, opt_start_seq: _start, ...changeable } = full;
    await jsm.consumers.update(stream, cfg.durable_name, changeable);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    await jsm.consumers.add(stream, full);
  }
}

function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.status === 404;
  return /not found/i.test(String(err));
}

export { nanos };
export { PublishFailedError, StreamFill, StreamFullError } from "./stream-fill.js";
export { runDurableConsumer, PULL_EXPIRES_MS, deadLetter, consumerProgress, durablesOf, partitionDurable, retryBackoffMs, deadLettered, type Disposition, type DurableConsumerOptions, type ItemDeadLetter } from "./consume.js";
export { applicableClicks, clickDeadLetter, clicksOf, encodeClickBatch, readClicks, typedHeaders, CLICK_BATCH_CONTENT_TYPE, CLICK_CONTENT_TYPE, type Click, type ClickToApply, type ReadClicks } from "./clicks.js";
export { userEventMessageId, type UserEventKind } from "./message-ids.js";
