export { headers, nanos, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
export { AckPolicy, DeliverPolicy, JetStreamApiError, type Consumer, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
export { DUPLICATE_WINDOW_MS, ensureStreams, serverMaxBytes, streamLimitsFrom, StreamsMissingError, Topology, urlKey, type StreamLimits } from "./topology.js";
export { connectBus, DEFAULT_ACK_WAIT_MS, inboxPrefixOf, natsAuthFrom, natsServers, storedBytes, type Bus, type NatsAuth } from "./connection.js";
export { isNotFound, isPermissionDenied, isStreamFull, isStreamNotFound, isWrongLastSequence } from "./jetstream-errors.js";
export { allConsumerNames, consumerNames, type ConsumedBy, type ConsumerNames, type ConsumerService } from "./consumer-names.js";
export {
  consumerProgress,
  ConsumerRunningError,
  CrashAfterEffects,
  durablesOf,
  ensureDurableConsumer,
  firstHeldSequence,
  headGoneBeforeConsumer,
  warnIfHeadGone,
  idleConsumers,
  partitionDurable,
  PULL_EXPIRES_MS,
  retryBackoffMs,
  runDurableConsumer,
  subjectMatches,
  waitApplied,
  type Disposition,
  type DurableConsumerOptions,
} from "./consumer.js";
export { deadLetter, deadLettered, type DeadLetterCause, type DeadLetterWhy, type ItemDeadLetter } from "./dead-letters.js";
export { PublishFailedError, StreamFill, StreamFullError, StreamReadFailedError } from "./stream-fill.js";
export {
  applicableClicks,
  clickDeadLetter,
  clicksOf,
  encodeClickBatch,
  encodeUserDeleted,
  isUserDeleted,
  readClicks,
  typedHeaders,
  CLICK_BATCH_CONTENT_TYPE,
  CLICK_CONTENT_TYPE,
  USER_DELETED_CONTENT_TYPE,
  type UserDeletion,
  type Click,
  type ClickToApply,
  type ReadClicks,
} from "./clicks.js";
export { userEventMessageId, type UserEventKind } from "./message-ids.js";
export { interestEmbeddingMessage, publishInterestEmbedding } from "./interest-embeddings.js";
export { encodeVisibility, readVisibility, type Visibility } from "./visibility.js";
