import { JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream";
import { NoRespondersError, PermissionViolationError, RequestError, TimeoutError } from "@nats-io/transport-node";

/** Codes NATS 2.9 answers with that nats.js does not name. */
const MoreApiCodes = {
  /** A stream add whose name is taken with another configuration. */
  StreamNameInUse: 10058,
  /** The stream could not store a message; its text says why (a limit reached, a disk failure). */
  StreamStoreFailed: 10077,
  /** JetStream has no leader for the request yet (a cluster electing one, or still forming). */
  JetStreamTemporarilyUnavailable: 10008,
} as const;

function hasCode(err: unknown, ...codes: number[]): err is JetStreamApiError {
  return err instanceof JetStreamApiError && codes.includes(err.code);
}

/** A publish refused because its stream is at its size limit. */
export function isStreamFull(err: unknown): boolean {
  // The code is shared by every store failure: only its text tells a limit from a failing disk.
  return hasCode(err, MoreApiCodes.StreamStoreFailed) && /maximum (bytes|messages)/i.test(err.message);
}

/** A stream or consumer that is not there. */
export function isNotFound(err: unknown): boolean {
  return hasCode(err, JetStreamApiCodes.StreamNotFound, JetStreamApiCodes.ConsumerNotFound);
}

/** A stream that is not there. */
export function isStreamNotFound(err: unknown): boolean {
  return hasCode(err, JetStreamApiCodes.StreamNotFound);
}

/** A stream add that lost the race to another service creating it. */
export function isStreamNameInUse(err: unknown): boolean {
  return hasCode(err, MoreApiCodes.StreamNameInUse);
}

/** A publish whose expected last sequence (of its stream or subject) is no longer the last. */
export function isWrongLastSequence(err: unknown): boolean {
  return hasCode(err, JetStreamApiCodes.StreamWrongLastSequence);
}

/** A request this NATS user may not publish (its subject is outside the user's permissions). */
export function isPermissionDenied(err: unknown): boolean {
  // A request's refusal comes as a RequestError caused by the violation.
  return err instanceof PermissionViolationError || (err instanceof Error && err.cause instanceof PermissionViolationError);
}

/**
 * A JetStream API call that may succeed if asked again: no answer in time, no server answering the API yet, or a cluster
 * without a leader for it (electing one after a server was lost, or forming at start).
 */
export function isTransientJetStreamError(err: unknown): boolean {
  const e = err instanceof RequestError && err.cause ? err.cause : err;
  return e instanceof TimeoutError || e instanceof NoRespondersError || hasCode(e, MoreApiCodes.JetStreamTemporarilyUnavailable);
}
