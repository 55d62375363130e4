import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { build as buildHistogram } from "hdr-histogram-js";
import pRetry from "p-retry";

/** What one item of a batch came to, as ingest answered it. */
export type ItemResult = { accepted: true; duplicate: boolean; streamSequence: bigint } | { accepted: false; field: string; reason: string };

/** Ingest's per-item results (clicks and pages answer alike) as the sender counts them. */
export function itemResults(
  results: Array<{
    outcome:
      | { case: "accepted"; value: { duplicate: boolean; streamSequence: bigint } }
      | { case: "rejected"; value: { field: string; reason: string } }
      | { case: undefined; value?: undefined };
  }>,
): ItemResult[] {
  return results.map(({ outcome: o }) =>
    o.case === "accepted"
      ? { accepted: true, duplicate: o.value.duplicate, streamSequence: o.value.streamSequence }
      : { accepted: false, field: o.value?.field ?? "", reason: o.value?.reason ?? "no result" },
  );
}

/** What replay and content share: the file, its pace, where it goes and how long to wait for it to be applied. */
export interface LoadOptions {
  file: string;
  /** Items per second; 0 sends as fast as ingest acks. */
  rate: number;
  target: string;
  wait: boolean;
  batchSize: number;
  concurrency: number;
  waitTimeoutMs: number;
  onProgress?: (p: { sent: number; accepted: number; elapsedMs: number }) => void;
}

export interface SendSummary {
  sent: number;
  accepted: number;
  rejected: number;
  duplicates: number;
  retries: number;
  elapsedMs: number;
  perSecond: number;
  ackLatencyP50Ms: number;
  ackLatencyP99Ms: number;
  lastStreamSequence: bigint;
  rejections: Array<{ line: number; field: string; reason: string }>;
}

/**
 * Codes after which the batch's fate is unknown or it was refused for now: sending it again with the
 * same ids is safe. Canceled is how a server that died mid-call shows (its HTTP/2 stream is reset).
 */
const RETRYABLE = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown, Code.Aborted, Code.ResourceExhausted, Code.Canceled]);

/**
 * Sends items in batches at a rate (0 = as fast as acked), up to `concurrency` calls in flight; items of one `keyOf` share a lane,
 * one call at a time, so they arrive in file order. A retryable failure resends the batch unchanged: same ids, nothing counted twice.
 */
export async function sendPaced<T>(opts: {
  items: AsyncIterable<T>;
  rate: number;
  batchSize: number;
  concurrency: number;
  keyOf: (item: T) => string;
  send: (batch: T[]) => Promise<ItemResult[]>;
  onProgress?: (p: { sent: number; accepted: number; elapsedMs: number }) => void;
}): Promise<SendSummary> {
  const ackLatency = buildHistogram({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
  const s: SendSummary = {
    sent: 0,
    accepted: 0,
    rejected: 0,
    duplicates: 0,
    retries: 0,
    elapsedMs: 0,
    perSecond: 0,
    ackLatencyP50Ms: 0,
    ackLatencyP99Ms: 0,
    lastStreamSequence: 0n,
    rejections: [],
  };
  const started = performance.now();

  async function sendBatch(batch: T[], lines: number[]): Promise<void> {
    const attempt = async (attemptNumber: number) => {
      if (attemptNumber > 1) s.retries++;
      const t0 = performance.now();
      try {
        const results = await opts.send(batch);
        ackLatency.recordValueWithCount(Math.max(1, Math.round((performance.now() - t0) * 1000)), batch.length);
        results.forEach((r, i) => {
          if (r.accepted) {
            s.accepted++;
            if (r.duplicate) s.duplicates++;
            if (r.streamSequence > s.lastStreamSequence) s.lastStreamSequence = r.streamSequence;
          } else {
            s.rejected++;
            if (s.rejections.length < 100) s.rejections.push({ line: lines[i]!, field: r.field, reason: r.reason });
          }
        });
      } catch (err) {
        throw ConnectError.from(err);
      }
    };
    // 50 retries, waiting 100 ms, doubling up to 5 s.
    await pRetry(attempt, {
      retries: 50,
      minTimeout: 100,
      factor: 2,
      maxTimeout: 5_000,
      shouldRetry: ({ error }) => RETRYABLE.has((error as ConnectError).code),
    });
  }

  interface Lane {
    batch: T[];
    lines: number[];
    /** The lane's call in flight, if any. */
    busy: Promise<void> | undefined;
  }
  const lanes: Lane[] = Array.from({ length: opts.concurrency }, () => ({ batch: [], lines: [], busy: undefined }));
  let failure: unknown;
  // At a low rate, small batches keep the pacing smooth (about 20 calls a second).
  const batchSize = opts.rate > 0 ? Math.max(1, Math.min(opts.batchSize, Math.floor(opts.rate / 20))) : opts.batchSize;

  const flush = async (lane: Lane) => {
    if (lane.batch.length === 0) return;
    // One call at a time per lane: the next batch of these keys waits for the previous one's answer.
    if (lane.busy) await lane.busy;
    if (failure) throw failure;
    // Pace by items handed to the wire: item k goes out no earlier than k / rate seconds in.
    if (opts.rate > 0) {
      const due = started + (s.sent / opts.rate) * 1000;
      const now = performance.now();
      if (due > now) await sleep(due - now);
    }
    const { batch, lines } = lane;
    lane.batch = [];
    lane.lines = [];
    s.sent += batch.length;
    lane.busy = sendBatch(batch, lines).catch((err: unknown) => {
      failure ??= err;
    });
    opts.onProgress?.({ sent: s.sent, accepted: s.accepted, elapsedMs: performance.now() - started });
  };

  let line = 0;
  for await (const item of opts.items) {
    line++;
    const lane = lanes[laneIndex(opts.keyOf(item), lanes.length)]!;
    lane.batch.push(item);
    lane.lines.push(line);
    if (lane.batch.length >= batchSize) await flush(lane);
  }
  for (const lane of lanes) await flush(lane);
  await Promise.all(lanes.map((l) => l.busy));
  if (failure) throw failure;

  s.elapsedMs = performance.now() - started;
  s.perSecond = s.sent / Math.max(s.elapsedMs / 1000, 0.001);
  s.ackLatencyP50Ms = ackLatency.getValueAtPercentile(50) / 1000;
  s.ackLatencyP99Ms = ackLatency.getValueAtPercentile(99) / 1000;
  return s;
}

/** A key's lane: FNV-1a of its UTF-16 code units, so the same key always takes the same lane. */
export function laneIndex(key: string, lanes: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % lanes;
}

/** Polls until `done` is true, failing with `describe()` after the timeout. */
export async function waitFor(done: () => Promise<boolean>, timeoutMs: number, describe: () => Promise<string>): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await done())) {
    if (performance.now() > deadline) throw new Error(`${await describe()} after ${timeoutMs} ms`);
    await sleep(50);
  }
}
