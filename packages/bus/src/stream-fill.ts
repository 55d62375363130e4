import type { Bus } from "./connection.js";
import { isStreamNotFound } from "./jetstream-errors.js";
import type { Logger } from "@recsys/logging";
import { Counter, Gauge, registry } from "@recsys/metrics";

/** A publish that did not go through (NATS out of reach, a timeout): a consumer retries its message. */
export class PublishFailedError extends Error {
  constructor(
    readonly stream: string,
    cause: unknown,
  ) {
    super(`publishing to ${stream} failed: ${String(cause)}`);
  }
}

/** A read of a stream that did not go through (a timeout, the stream's leader away): a consumer retries its message. */
export class StreamReadFailedError extends Error {
  constructor(
    readonly stream: string,
    cause: unknown,
  ) {
    super(`reading ${stream} failed: ${String(cause)}`);
  }
}

/** A publish refused because the stream is at its size limit. */
export class StreamFullError extends Error {
  constructor(readonly stream: string) {
    super(`${stream} is full (its size limit is reached): nothing more is stored until space is freed or the limit raised`);
  }
}

const refusedFull = new Counter({
  name: "recsys_stream_full_refusals_total",
  help: "Publishes refused before they went out because their stream was at its size limit (ingest answers ResourceExhausted; the embedder waits)",
  labelNames: ["stream"] as const,
  registers: [registry],
});

const streamFull = new Gauge({
  name: "recsys_stream_full",
  help: "1 while a stream is at its size limit and ingest refuses its events",
  labelNames: ["stream"] as const,
  registers: [registry],
});

/**
 * How full each stream a service writes to is (its info every `pollMs`, plus what this process published since), to refuse at the
 * configured size: NATS 2.9 deletes a stream's oldest message when a publish fills it, even with discard "new" (top README, Reliability).
 */
export class StreamFill {
  private readonly streams = new Map<string, { limit: number; stored: number; sentSinceRead: number; full: boolean }>();
  private timer: NodeJS.Timeout | undefined;
  private reads = 0;

  constructor(
    private readonly bus: Bus,
    limits: Record<string, number>,
    private readonly logger: Logger,
    private readonly pollMs = 500,
  ) {
    for (const [stream, limit] of Object.entries(limits)) this.streams.set(stream, { limit, stored: 0, sentSinceRead: 0, full: false });
  }

  start(): void {
    const tick = async () => {
      await this.read();
      this.timer = setTimeout(() => void tick(), this.pollMs);
      this.timer.unref();
    };
    void tick();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private async read(): Promise<void> {
    this.reads++;
    for (const [name, s] of this.streams) {
      try {
        const info = await this.bus.jsm.streams.info(name);
        s.stored = info.state.bytes;
        s.sentSinceRead = 0;
        this.mark(name, s.stored >= s.limit);
      } catch (err) {
        // A stream not there yet (it is created at the first publish) holds nothing.
        if (!isStreamNotFound(err)) this.logger.warn({ err: String(err), stream: name }, "cannot read the stream's size");
      }
    }
  }

  private mark(stream: string, full: boolean): void {
    const s = this.streams.get(stream);
    if (!s || s.full === full) return;
    s.full = full;
    streamFull.set({ stream }, full ? 1 : 0);
    this.logger.warn({ stream, bytes: s.stored + s.sentSinceRead, limit: s.limit }, full ? "stream full: refusing its events" : "stream has room again");
  }

  /**
   * Takes room for `bytes` about to be published, or throws StreamFullError; the returned function gives it back when the publish failed.
   * Counted at once, so that calls in flight together cannot all pass.
   */
  take(stream: string, bytes: number): () => void {
    const s = this.streams.get(stream);
    if (!s) return () => {};
    if (s.stored + s.sentSinceRead >= s.limit) this.mark(stream, true);
    this.refuseIfFull(stream);
    s.sentSinceRead += bytes;
    const readsBefore = this.reads;
    return () => {
      // A read since then has measured the stream itself.
      if (this.reads === readsBefore) s.sentSinceRead -= bytes;
    };
  }

  /**
   * Throws StreamFullError while `stream` is at its size limit, taking no room: for a stream another service writes what these
   * events make (the embedder's EMBEDDINGS for pages), so that they are refused where the client hears of it instead of being
   * accepted and then waiting in that service until there is room.
   */
  refuseIfFull(stream: string): void {
    if (!this.streams.get(stream)?.full) return;
    refusedFull.inc({ stream });
    throw new StreamFullError(stream);
  }

  /** The bytes a publish of these messages takes in a stream, about: payload, subject, id and headers. */
  static sizeOf(messages: Array<{ subject: string; payload: Uint8Array; msgID: string }>): number {
    return messages.reduce((n, o) => n + o.payload.length + o.subject.length + o.msgID.length + 128, 0);
  }

  /** JetStream itself refused for size (its headroom is spent: other replicas, or a limit lowered). */
  refusedByServer(stream: string): void {
    this.mark(stream, true);
    refusedFull.inc({ stream });
  }

  /** For health: one line per full stream. */
  problems(): string[] {
    return [...this.streams].filter(([, s]) => s.full).map(([name]) => `${name} is full: its events are refused with ResourceExhausted`);
  }
}
