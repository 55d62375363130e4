import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { build as buildHistogram } from "hdr-histogram-js";
import { CovisitService } from "@recsys/contracts/covisit/v1/covisit";
import { ClickInputSchema, IngestService, type ClickInput } from "@recsys/contracts/ingest/v1/ingest";
import { create } from "@bufbuild/protobuf";
import { readClickFile, shiftTime, type FileClick } from "./click-file.js";

export interface ReplayOptions {
  file: string;
  /** Clicks per second; 0 sends as fast as ingest acks. */
  rate: number;
  target: string;
  covisit: string;
  wait: boolean;
  shiftTime: boolean;
  batchSize: number;
  concurrency: number;
  waitTimeoutMs: number;
  onProgress?: (p: { sent: number; accepted: number; elapsedMs: number }) => void;
}

export interface ReplaySummary {
  sent: number;
  accepted: number;
  rejected: number;
  duplicates: number;
  /** Clicks dead-lettered as too late while this replay ran; null without --wait. */
  late: number | null;
  retries: number;
  elapsedMs: number;
  clicksPerSecond: number;
  ackLatencyP50Ms: number;
  ackLatencyP99Ms: number;
  lastStreamSequence: string;
  rejections: Array<{ line: number; field: string; reason: string }>;
}

const RETRYABLE = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Internal, Code.Unknown, Code.Aborted, Code.ResourceExhausted]);

export async function replay(opts: ReplayOptions): Promise<ReplaySummary> {
  const transport = createGrpcTransport({ baseUrl: opts.target });
  const ingest = createClient(IngestService, transport);
  const covisit = createClient(CovisitService, createGrpcTransport({ baseUrl: opts.covisit }));
  const ackLatency = buildHistogram({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });

  const lateBefore = opts.wait ? await deadLetteredClicks(covisit) : 0n;
  const s: ReplaySummary = {
    sent: 0, accepted: 0, rejected: 0, duplicates: 0, late: null, retries: 0, elapsedMs: 0,
    clicksPerSecond: 0, ackLatencyP50Ms: 0, ackLatencyP99Ms: 0, lastStreamSequence: "0", rejections: [],
  };
  let lastSeq = 0n;
  const started = performance.now();

  /** Sends one batch until it is acked; the retry carries the same clicks, so the same ids. */
  async function send(batch: ClickInput[], firstLine: number): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const t0 = performance.now();
      try {
        const res = await ingest.publishClicks({ clicks: batch }, { timeoutMs: 30_000 });
        ackLatency.recordValueWithCount(Math.max(1, Math.round((performance.now() - t0) * 1000)), batch.length);
        res.results.forEach((r, i) => {
          if (r.outcome.case === "accepted") {
            s.accepted++;
            if (r.outcome.value.duplicate) s.duplicates++;
            if (r.outcome.value.streamSequence > lastSeq) lastSeq = r.outcome.value.streamSequence;
          } else if (r.outcome.case === "rejected") {
            s.rejected++;
            if (s.rejections.length < 100) s.rejections.push({ line: firstLine + i, field: r.outcome.value.field, reason: r.outcome.value.reason });
          }
        });
        return;
      } catch (err) {
        const ce = ConnectError.from(err);
        if (!RETRYABLE.has(ce.code) || attempt >= 50) throw ce;
        s.retries++;
        await sleep(Math.min(5_000, 100 * 2 ** Math.min(attempt, 6)));
      }
    }
  }

  const inFlight = new Set<Promise<void>>();
  let batch: ClickInput[] = [];
  let batchFirstLine = 1;
  let line = 0;
  let shift: ((c: FileClick) => FileClick) | undefined;
  const flush = async () => {
    if (batch.length === 0) return;
    // Pace by clicks handed to the wire: click k goes out no earlier than k / rate seconds in.
    if (opts.rate > 0) {
      const due = started + (s.sent / opts.rate) * 1000;
      const now = performance.now();
      if (due > now) await sleep(due - now);
    }
    const p = send(batch, batchFirstLine);
    s.sent += batch.length;
    batch = [];
    batchFirstLine = line + 1;
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p)).catch(() => undefined);
    if (inFlight.size >= opts.concurrency) await Promise.race(inFlight);
    opts.onProgress?.({ sent: s.sent, accepted: s.accepted, elapsedMs: performance.now() - started });
  };
  const batchSize = opts.rate > 0 ? Math.max(1, Math.min(opts.batchSize, Math.floor(opts.rate / 20))) : opts.batchSize;

  for await (const raw of readClickFile(opts.file)) {
    line++;
    let c = raw;
    if (opts.shiftTime) {
      shift ??= shiftTime(Date.parse(raw.event_time), Date.now());
      c = shift(raw);
    }
    batch.push(create(ClickInputSchema, { userid: c.userid, url: c.url, eventTime: c.event_time, eventId: c.event_id ?? "" }));
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  await Promise.all(inFlight);

  s.lastStreamSequence = lastSeq.toString();
  if (opts.wait) {
    await waitUntilApplied(covisit, lastSeq, opts.waitTimeoutMs);
    s.late = Number((await deadLetteredClicks(covisit)) - lateBefore);
  }
  s.elapsedMs = performance.now() - started;
  s.clicksPerSecond = s.sent / (s.elapsedMs / 1000);
  s.ackLatencyP50Ms = ackLatency.getValueAtPercentile(50) / 1000;
  s.ackLatencyP99Ms = ackLatency.getValueAtPercentile(99) / 1000;
  return s;
}

async function deadLetteredClicks(covisit: ReturnType<typeof createClient<typeof CovisitService>>): Promise<bigint> {
  return (await covisit.progress({})).deadLetteredClicks;
}

/** Every click up to `sequence` has been applied by covisit and acked: it is visible in Recommendation. */
async function waitUntilApplied(covisit: ReturnType<typeof createClient<typeof CovisitService>>, sequence: bigint, timeoutMs: number) {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const p = await covisit.progress({});
    if (p.ackFloorStreamSequence >= sequence) return;
    if (performance.now() > deadline) {
      throw new Error(`covisit has applied up to stream sequence ${p.ackFloorStreamSequence}, not ${sequence}, after ${timeoutMs} ms`);
    }
    await sleep(50);
  }
}

function sleep(ms: number) {
  return new Promise((r) => setTimeout(r, ms));
}

export function formatSummary(s: ReplaySummary): string {
  return [
    `sent=${s.sent}`,
    `accepted=${s.accepted}`,
    `rejected=${s.rejected}`,
    `duplicates=${s.duplicates}`,
    `late=${s.late ?? "n/a"}`,
    `retries=${s.retries}`,
    `elapsed=${(s.elapsedMs / 1000).toFixed(2)}s`,
    `clicks/s=${Math.round(s.clicksPerSecond)}`,
    `ack_p50=${s.ackLatencyP50Ms.toFixed(1)}ms`,
    `ack_p99=${s.ackLatencyP99Ms.toFixed(1)}ms`,
  ].join(" ");
}
