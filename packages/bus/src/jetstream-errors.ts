import { JetStreamApiError } from "@nats-io/jetstream";

/** A publish refused because its stream is at its size limit. */
export function isStreamFull(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === 10077 && /maximum (bytes|messages)/i.test(err.message);
}

/** A stream or consumer that is not there. */
export function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.status === 404;
  return /not found/i.test(String(err));
}
